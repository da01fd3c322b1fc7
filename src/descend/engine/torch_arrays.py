"""torch tensors as an array kind of the engine: CPU tensors for the kernel, anything else for the reference rule.

- A dense, contiguous CPU tensor of float32, float64, bfloat16 or float16 whose memory holds its values as they read
  (no lazy negation or conjugation) goes to the kernel by address.
- A ``DTensor`` (FSDP2, tensor parallelism) is updated through its local shard: an elementwise rule lets each rank
  update the elements it holds, with the kernel where the shard is a plain CPU tensor. A rule that reduces over the
  tensor (Adafactor) refuses a sharded one.
- A complex tensor is updated as the pairs of reals it holds (``view_as_real``), as torch.optim does.
- Tensors on other devices run the rule as torch's multi-tensor operations, a group at a time
  (:mod:`descend.engine.foreach`); CPU tensors in layouts the kernel does not take run the reference rule in torch
  ops, one tensor at a time.

The step counter is kept as torch keeps it: a 0-d float32 tensor (float64 where torch's default dtype is), advanced
in that dtype, so a float32 count stops at 2**24 exactly as torch's does.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.optim.optimizer import _get_scalar_dtype

from descend import kernels
from descend.algorithms._spec import AlgorithmSpec, Hyperparams
from descend.engine import torch_xp as _xp
from descend.engine.arrays import ArrayKind
from descend.engine.torch_memory import in_huge_pages
from descend.lowbit import SCALE_SUFFIX

__all__ = ["COMPLEX_DTYPES", "DTYPE_NAMES", "FLOAT_DTYPES", "HALF_DTYPES", "TorchKind", "local", "plain"]

DTYPE_NAMES: dict[torch.dtype, str] = {
    torch.float32: "float32",
    torch.float64: "float64",
    torch.bfloat16: "bfloat16",
    torch.float16: "float16",
}
FLOAT_DTYPES: tuple[torch.dtype, ...] = tuple(DTYPE_NAMES)
HALF_DTYPES = (torch.bfloat16, torch.float16)
COMPLEX_DTYPES = (torch.complex64, torch.complex128)
_PLAIN_TYPES = (torch.Tensor, torch.nn.Parameter)

try:
    from torch.distributed.tensor import DTensor
except ImportError:  # pragma: no cover - a torch built without distributed
    DTensor = None


_COMPLEX = {torch.complex64: "float32", torch.complex128: "float64"}
# Where a tensor's at::Tensor lies in its Python object: right after the object's header, as
# torch/csrc/autograd/python_variable.h declares THPVariable (the plan confirms it on each tensor it records).
TENSOR_OFFSET = object.__basicsize__


def torch_library() -> ctypes.CDLL | None:
    """The torch library this process has loaded (libtorch_cpu), for the C functions it exports; None where it is
    not found."""
    folder = os.path.join(os.path.dirname(torch.__file__), "lib")
    for name in ("libtorch_cpu.so", "libtorch_cpu.dylib", "torch_cpu.dll"):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            try:
                return ctypes.CDLL(path)  # already loaded by torch: the same handle
            except OSError:
                return None
    return None


def _find_bump() -> int | None:
    """The address of torch::autograd::impl::bump_version (what an in-place op calls to advance a tensor's autograd
    version) where the loaded torch exports it and it advances a probe's version by one through the kernels'
    wrapper; else None (:meth:`TorchKind.mark_written` then calls torch's ``_increment_version``)."""
    library = torch_library()
    if library is None or not kernels.available()[0]:
        return None
    try:
        address = ctypes.cast(library["_ZN5torch8autograd4impl12bump_versionERKN2at6TensorE"], ctypes.c_void_p).value
    except (AttributeError, OSError):
        return None
    probe = torch.zeros(1)
    before = probe._version
    try:
        done = kernels.bump_versions([probe], address, TENSOR_OFFSET, _PLAIN_TYPES)
    except (AttributeError, TypeError, ValueError):  # kernels built before they had it
        return None
    return address if done == 1 and probe._version == before + 1 else None


_BUMP = _find_bump()


def local(t: Any) -> Any:
    """The real tensor holding ``t``'s elements on this process: its local shard for a DTensor, and a complex tensor
    seen as pairs of reals (``view_as_real``, as torch.optim does; every rule is elementwise)."""
    if DTensor is not None and isinstance(t, DTensor):
        t = t.to_local()
    if t.dtype in _COMPLEX:
        return torch.view_as_real(t)
    return t


def plain(t: torch.Tensor) -> bool:
    """A dense, contiguous CPU tensor whose memory holds its values as they read (no lazy negation or conjugation)."""
    return (
        type(t) in _PLAIN_TYPES
        and t.device.type == "cpu"
        and t.layout == torch.strided
        and t.is_contiguous()
        and not t.is_neg()
        and not t.is_conj()
        and not t._is_zerotensor()
    )


_SAME_SIZE_INTS = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _numpy_view(t: torch.Tensor) -> np.ndarray | None:
    """A NumPy view of a CPU tensor's elements (as integers of their size, so any dtype), or None."""
    if t.device.type != "cpu" or t.layout != torch.strided or type(t) not in _PLAIN_TYPES:
        return None
    as_int = _SAME_SIZE_INTS.get(t.element_size())
    return t.detach().view(as_int).numpy() if as_int is not None else None


class TorchKind(ArrayKind):
    """torch tensors (see the module docstring)."""

    xp = _xp
    noun = "tensor"

    def dtype_name(self, a: Any) -> str | None:
        if not isinstance(a, torch.Tensor):
            return None
        return DTYPE_NAMES.get(a.dtype) or _COMPLEX.get(a.dtype)

    def operand(self, a: Any, writable: bool) -> Any | None:
        t = local(a)
        if not plain(t):
            return None
        address = t.data_ptr()
        if address % t.element_size():
            return None
        return address

    def why_not(self, a: Any, writable: bool) -> str:
        t = local(a)
        if t.device.type != "cpu":
            return f"is on {t.device}; the kernel takes CPU tensors"
        if t.layout != torch.strided:
            return f"has layout {t.layout}"
        if not t.is_contiguous():
            return f"is not contiguous (strides {t.stride()})"
        if t.is_neg() or t.is_conj():
            return "is a lazily negated or conjugated view"
        if t._is_zerotensor():
            return "is an all-zeros tensor without memory"
        if type(t) not in _PLAIN_TYPES:
            return f"is a {type(t).__name__}"
        return "is not aligned to its item size" if t.data_ptr() % t.element_size() else "is accepted"

    def copyable(self, g: Any, p: Any) -> bool:
        t = local(g)
        return t.device.type == "cpu" and t.dtype == p.dtype and t.layout == torch.strided

    def contiguous_copy(self, g: Any) -> Any:
        t = local(g).detach()
        out = torch.empty(t.shape, dtype=t.dtype)
        out.copy_(t)  # materialises a lazy negation, a conjugation or an all-zeros tensor without memory
        return out

    def size(self, a: Any) -> int:
        return local(a).numel()

    def steady_operands(
        self, p: Any, g: Any, arrays: Mapping[str, Any], storages: Mapping[str, str], block: int
    ) -> tuple[int, int, list[int]] | None:
        """For a steady low-bit step: the addresses of ``p``, ``g`` and ``arrays``, or None where any of them is not
        a plain dense CPU tensor (see :func:`plain`) aligned to its item size, ``g`` not of ``p``'s dtype and shape,
        an array not of its storage (``storages``) and of ``p``'s shape, or a scale array (``..._scale``) not one
        value per ``block`` elements. What they share in memory is left to the kernel, which refuses it."""
        tensors = (p, g, *arrays.values())
        if not all(plain(t) and self.writable(t) for t in (p, *arrays.values())) or not plain(g):
            return None
        shape = p.shape
        if g.dtype is not p.dtype or g.shape != shape or p.dtype not in DTYPE_NAMES:
            return None
        blocks = -(-p.numel() // block)
        for key, a in arrays.items():
            if _STORAGE.get(a.dtype) != storages[key]:
                return None
            if key.endswith(SCALE_SUFFIX):
                if a.dim() != 1 or a.numel() != blocks:
                    return None
            elif a.shape != shape:
                return None
        addresses = [t.data_ptr() for t in tensors]
        if any(address % t.element_size() for address, t in zip(addresses, tensors)):
            return None
        return addresses[0], addresses[1], addresses[2:]

    def span(self, a: Any) -> tuple[int, int]:
        t = local(a)
        if t.device.type != "cpu" or t.numel() == 0 or t.layout != torch.strided:
            return 0, 0
        if t.is_contiguous():
            start = t.data_ptr()
            return start, start + t.numel() * t.element_size()
        storage = t.untyped_storage()
        return storage.data_ptr(), storage.data_ptr() + storage.nbytes()

    def shares_memory(self, a: Any, b: Any) -> bool:
        views = [_numpy_view(local(t)) for t in (a, b)]
        if views[0] is None or views[1] is None:
            return True
        try:
            return bool(np.shares_memory(views[0], views[1], max_work=100_000))
        except np.exceptions.TooHardError:
            return True

    def same_layout(self, a: Any, b: Any, shape: tuple[int, ...] | None = None) -> bool:
        want = b.shape if shape is None else tuple(shape)
        return isinstance(a, torch.Tensor) and tuple(a.shape) == tuple(want) and a.device == b.device

    def not_whole(self, a: Any) -> str:
        if DTensor is not None and isinstance(a, DTensor):
            piece = any(p.is_partial() for p in a.placements) or tuple(a.to_local().shape) != tuple(a.shape)
            if piece:  # (sharded over one process, the shard is the whole tensor)
                return f"is a DTensor placed as {tuple(a.placements)}, of which this process holds only a piece"
        if a.dtype in _COMPLEX:
            return f"is complex ({a.dtype}), which would be updated as pairs of reals"
        return ""

    def new_state(self, spec: AlgorithmSpec, p: Any, hp: Hyperparams, keys: list[str], state_dtype: Any) -> dict:
        with torch.no_grad():
            if state_dtype is not None and p.dtype in HALF_DTYPES:
                fresh = spec.init_state(self.xp, torch.empty_like(p, dtype=state_dtype), hp)
            else:
                fresh = spec.init_state(self.xp, p.detach(), hp)
        return {k: in_huge_pages(fresh[k]) for k in keys}

    def work_copy(self, a: Any, dtype_name: str) -> Any:
        t = local(a).detach()
        return t.to(dtype=torch.float64 if dtype_name == "float64" else torch.float32, copy=True)

    def writable(self, a: Any) -> bool:
        return not (isinstance(a, torch.Tensor) and a.is_inference() and not torch.is_inference_mode_enabled())

    def check_writable(self, a: Any, where: str) -> None:
        if not self.writable(a):
            raise RuntimeError(
                f"{where} is an inference tensor (made under torch.inference_mode()): Inplace update to inference "
                "tensor outside InferenceMode is not allowed; replace it with a clone, or step inside inference mode"
            )

    def mark_written(self, arrays: Sequence[Any]) -> None:
        """Advance the autograd version of each parameter a kernel wrote in place, as torch's in-place ops do, so
        that a backward pass through a graph that saved one before the step raises instead of using the new values
        (tensors made under inference mode have no version and are passed over)."""
        arrays = arrays if type(arrays) is list else list(arrays)
        done = 0 if _BUMP is None else kernels.bump_versions(arrays, _BUMP, TENSOR_OFFSET, _PLAIN_TYPES)
        if done < len(arrays):  # the rest, one not a plain tensor onwards
            torch._C._increment_version(arrays[done:])

    def write_back(self, dst: Any, src: Any) -> None:
        with torch.no_grad():
            local(dst).copy_(src)

    def next_step(self, state: Mapping[str, Any]) -> Any:
        old = state.get("step", 0.0)
        if not isinstance(old, torch.Tensor):
            old = torch.tensor(float(old), dtype=_get_scalar_dtype())
        with torch.no_grad():
            return old.detach() + 1

    def count(self, step: Any) -> int:
        return int(step.item())

    def read_host(self, state: Mapping[str, Any], key: str, initial: float) -> Any:
        value = state.get(key, initial)
        if isinstance(value, torch.Tensor):
            return value.detach()
        return torch.tensor(float(value), dtype=_get_scalar_dtype())

    def store_counters(self, state: dict, step: Any, host: Mapping[str, Any]) -> None:
        values = dict(host) if step is None else {"step": step, **host}
        with torch.no_grad():
            for key, value in values.items():
                old = state.get(key)
                if isinstance(old, torch.Tensor) and old.dtype == value.dtype and old.shape == value.shape:
                    old.copy_(value)  # in place, as torch advances its counters
                else:
                    state[key] = value

    def shape(self, a: Any) -> tuple[int, ...]:
        return tuple(a.shape)

    def describe(self, a: Any) -> str:
        if not isinstance(a, torch.Tensor):
            return f"a {type(a).__name__}"
        return f"shape {tuple(a.shape)}, dtype {a.dtype}, device {a.device}"

    def nonfinite_address(self, g: Any) -> tuple[int, int, str] | None:
        t = local(g)
        name = DTYPE_NAMES.get(t.dtype)
        if name and plain(t):
            return t.data_ptr(), t.numel(), name
        return None

    def has_nonfinite(self, g: Any) -> bool:
        return not bool(torch.isfinite(local(g)).all())

    multi_tensor = True

    def prefers_multi_tensor(self, p: Any, g: Any, arrays: Mapping[str, Any]) -> bool:
        from descend.engine import foreach

        return foreach.prefers(p, g, arrays)

    def multi_tensor_key(self, p: Any, arrays: Mapping[str, Any]) -> tuple:
        from descend.engine import foreach

        return foreach.group_key(p, arrays)

    def multi_tensor_step(
        self, spec: AlgorithmSpec, members: Sequence[tuple[Any, Any, Mapping[str, Any]]], scalars: NamedTuple
    ) -> Callable[[], Callable[[], None]]:
        from descend.engine import foreach

        name = self.dtype_name(members[0][0]) or "float64"
        params, grads = [m[0] for m in members], [m[1] for m in members]
        arrays = {k: [m[2][k] for m in members] for k in members[0][2]}
        return foreach.group_step(spec, params, grads, arrays, scalars, name, self.scalar_caster(name))

    def multi_tensor_steady(
        self, engine: Any, hp: Hyperparams, backend: str, items: Sequence[Any], spec: AlgorithmSpec | None = None
    ) -> Any:
        from descend.engine import foreach

        return foreach.steady_state(engine, hp, backend, items, spec)

    def storage(self, a: Any) -> str | None:
        if not isinstance(a, torch.Tensor):
            return None
        return _STORAGE.get(local(a).dtype)

    def resolved(self, a: Any) -> Any:
        t = local(a)
        if isinstance(t, torch.Tensor) and (t.is_neg() or t.is_conj()):
            return t.resolve_neg().resolve_conj()
        return a

    def raw(self, a: Any) -> np.ndarray | None:
        t = local(a)
        view = _numpy_view(t)
        if view is None:
            return None
        return view.view(_RAW.get(t.dtype, view.dtype))

    def new_raw(self, like: Any, shape: tuple[int, ...], storage: str, values: np.ndarray) -> Any:
        dtype = _TORCH_OF_STORAGE[storage]
        host = torch.from_numpy(np.array(values, order="C", copy=True).reshape(shape).view(_RAW_INT[storage]))
        out = host.view(dtype)
        device = local(like).device
        return in_huge_pages(out) if device.type == "cpu" else out.to(device)


_STORAGE = {
    torch.float32: "float32",
    torch.float64: "float64",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
    torch.uint8: "uint8",
}
_TORCH_OF_STORAGE = {name: dtype for dtype, name in _STORAGE.items()}
# How raw() sees each dtype's bytes (the unsigned integers of their size where NumPy has no such float).
_RAW = {
    torch.bfloat16: np.uint16,
    torch.float32: np.float32,
    torch.float16: np.float16,
    torch.uint8: np.uint8,
    torch.float64: np.float64,
}
_RAW_INT = {
    "bfloat16": np.int16,
    "float32": np.float32,
    "float16": np.float16,
    "uint8": np.uint8,
    "float64": np.float64,
}
