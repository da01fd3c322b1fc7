r"""Sums in one fixed order, written with elementwise operations only, so that a kernel can give the same bits.

A reduction's result depends on the order of its additions, and ``xp.sum`` leaves the order to the library (NumPy
and torch differ, and each differs between its vectorised and strided loops). The reductions of a rule that must be
reproduced bit for bit are written here as trees of elementwise additions, whose order is the same in every array
namespace and which a multi-threaded kernel can evaluate in pieces:

- :func:`pair_sum` sums over axis -2 by **adjacent pairs**, level by level: ``x[0::2] + x[1::2]``, with a zero
  appended to a level of odd length. Any aligned block of :math:`2^k` consecutive items is a subtree, so a thread can
  sum one block and the blocks are then summed by the same tree; a block holds the items it needs (and nothing is
  stacked beyond :math:`\log_2` levels), so the kernel reads the data once, in order.
- :func:`row_sum` sums over the last axis: the axis is cut into blocks of ``LANES`` (zero-padded), the blocks are
  summed by :func:`pair_sum` as vectors (lane by lane, as a SIMD register adds them), and the lanes of the result are
  summed by **halves**: lanes :math:`[0, 8) + [8, 16)`, then :math:`[0, 4) + [4, 8)`, down to one.
- :func:`total` sums a ``(B, m, n)`` array: :func:`row_sum` of each row, :func:`pair_sum` over the ``m`` rows of
  each batch, then :func:`pair_sum` over the ``B`` batches.

The additions of zero are part of the order (``-0 + 0`` is ``+0``): the kernels add them where these functions do.
The accumulation is in the array's own dtype; with pairwise trees the rounding error of a sum of :math:`N` terms
grows as :math:`\log_2 N`, not :math:`N`, so float32 sums stay within a few units in the last place of the float64
sum for the sizes of a model's tensors.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LANES", "pair_sum", "row_sum", "total"]

#: The lanes of a row sum's blocks: one AVX-512 register of float32, two of AVX2.
LANES = 16


def pair_sum(xp: Any, x: Any) -> Any:
    """The sum over axis -2 (kept, with length 1) by adjacent pairs; the axis must not be empty."""
    while x.shape[-2] > 1:
        if x.shape[-2] % 2:
            x = xp.concatenate([x, xp.zeros_like(x[..., :1, :])], axis=-2)
        x = x[..., 0::2, :] + x[..., 1::2, :]
    return x


def row_sum(xp: Any, x: Any) -> Any:
    """The sum over the last axis (kept, with length 1): blocks of ``LANES`` by :func:`pair_sum`, then the lanes by
    halves. The axis must not be empty."""
    pad = -x.shape[-1] % LANES
    if pad:
        x = xp.concatenate([x] + [xp.zeros_like(x[..., :1])] * pad, axis=-1)
    x = pair_sum(xp, x.reshape(tuple(x.shape[:-1]) + (-1, LANES)))
    half = LANES // 2
    while half:
        x = x[..., :half] + x[..., half : 2 * half]
        half //= 2
    return x.reshape(tuple(x.shape[:-2]) + (1,))


def total(xp: Any, x: Any) -> Any:
    """The sum of a non-empty ``(B, m, n)`` array, shaped ``(1, 1, 1)``: rows, then each batch's rows, then batches."""
    per_batch = pair_sum(xp, row_sum(xp, x))
    return pair_sum(xp, per_batch.reshape(1, -1, 1))
