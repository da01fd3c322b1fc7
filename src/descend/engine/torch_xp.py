"""torch as the array namespace of ``reference_update``, with a correctly rounded square root on the CPU.

The rules use functions besides arithmetic, indexing and ``reshape``: the elementwise rules ``sqrt``, ``maximum``,
``abs``, ``divide``, ``sign`` and ``zeros_like``; Adafactor's also ``concatenate``; Muon's also ``asarray``,
``full_like``, ``where``, the dtypes ``float32``, ``float64`` and ``int32``, and ``@``. All are torch's, with three
exceptions. ``zeros_like`` takes NumPy's ``shape=`` (Adafactor's row and column averages are not shaped like their
parameter). On CPU float32/float64 tensors ``sqrt`` runs NumPy's on the same memory: torch's vectorised CPU square
root is not correctly rounded (it is off by one ulp on a sizeable share of float32 inputs), while IEEE arithmetic,
NumPy's square root and the fused kernels are. ``sign`` keeps NaN as NaN, as NumPy's and the kernels' do (torch's
gives 0). With them, the torch front's reference gives the kernels' bits.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "abs",
    "asarray",
    "concatenate",
    "divide",
    "float32",
    "float64",
    "full_like",
    "int32",
    "maximum",
    "sign",
    "sqrt",
    "where",
    "zeros_like",
]

abs = torch.abs  # noqa: A001 - the namespace mirrors torch's names
asarray = torch.asarray
concatenate = torch.concatenate
divide = torch.divide
full_like = torch.full_like
maximum = torch.maximum
where = torch.where
float32, float64, int32 = torch.float32, torch.float64, torch.int32


def zeros_like(x: torch.Tensor, *, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """Zeros of ``x``'s dtype and device, of ``x``'s shape or of ``shape`` (as NumPy's ``zeros_like``)."""
    if shape is None:
        return torch.zeros_like(x)
    return torch.zeros(shape, dtype=x.dtype, device=x.device)


_EXACT = (torch.float32, torch.float64)


def sqrt(x: torch.Tensor) -> torch.Tensor:
    """The correctly rounded square root of ``x``, elementwise, as a new tensor."""
    if x.device.type != "cpu" or x.dtype not in _EXACT or x.is_neg() or x.is_conj() or x.layout != torch.strided:
        return torch.sqrt(x)
    out = torch.empty_like(x)
    np.sqrt(x.detach().numpy(), out=out.numpy())
    return out


def sign(x: torch.Tensor) -> torch.Tensor:
    """-1, 0 or 1 elementwise, and NaN where ``x`` is NaN."""
    return torch.where(torch.isnan(x), x, torch.sign(x))
