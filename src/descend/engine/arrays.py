"""The array kinds the engine updates, behind one small interface: NumPy here, torch in :mod:`.torch_arrays`.

A kind answers the few questions a step asks of an array: its dtype name, whether the fused kernel can take it and in
what form (the array itself or its address), how to make a working copy for the reference rule and write it back, how
to create state, and how the step counter and host scalars are stored in a state dict. The engine
(:mod:`descend.engine.step`) asks nothing else, so it never tests for NumPy or torch itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from descend import kernels
from descend.algorithms._spec import AlgorithmSpec, Hyperparams

__all__ = ["ArrayKind", "NumpyKind", "ranges_overlap"]


def ranges_overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Whether the byte ranges ``[start, end)`` a and b share a byte (empty ranges share none)."""
    return a[0] < a[1] and b[0] < b[1] and a[0] < b[1] and b[0] < a[1]


def operand_refusal(kind: ArrayKind, p: Any, g: Any, arrays: Mapping[str, Any], dtype: str | None) -> tuple[str, bool]:
    """Whether the kernel can take a parameter of ``dtype``, its gradient and its state arrays as they are: why not
    ("" if it can), and whether it reads the gradient from a contiguous copy (strided, a lazy view, all zeros
    without memory, or sharing memory with what is written; the copy gives the same bits)."""
    if kind.dtype_name(g) != dtype:
        return f"its gradient has dtype {kind.dtype_name(g)}, the parameter {dtype}", False
    for what, a in [("the parameter", p)] + [(f"its state {k!r}", a) for k, a in arrays.items()]:
        if kind.operand(a, True) is None:
            return f"{what} {kind.why_not(a, True)}", False
    copy = kind.operand(g, False) is None or any(
        ranges_overlap(kind.span(g), kind.span(a)) for a in (p, *arrays.values())
    )
    if copy and not kind.copyable(g, p):
        return f"its gradient {kind.why_not(g, False)}", copy
    return "", copy


def fused_refusal(kind: ArrayKind, title: str, index: int, p: Any, why: str) -> ValueError:
    """The error of ``backend="fused"`` for a parameter the kernel cannot update, ``why`` saying what stands in the
    way."""
    return ValueError(
        f"backend='fused' cannot update parameter {index} of {title} ({kind.describe(p)}): {why}; use "
        "backend='auto' to run the reference for it"
    )


class ArrayKind:
    """What the engine needs to know about one kind of array. Subclasses implement every method."""

    #: the namespace ``reference_update`` runs with (NumPy, or torch with a correctly rounded square root)
    xp: Any
    #: a name for messages ("array", "tensor")
    noun: str = "array"
    #: whether the kernel checks this kind's arrays itself (buffers), so a group may be tried without checks first
    kernel_checks: bool = False

    def dtype_name(self, a: Any) -> str | None:
        """``"float32"``, ``"float64"``, ``"bfloat16"`` or ``"float16"``, or None for any other dtype."""
        raise NotImplementedError

    def all_of_dtype(self, arrays: Sequence[Any], like: Any) -> bool:
        """Whether every array has ``like``'s dtype."""
        return all(self.dtype_name(a) == self.dtype_name(like) for a in arrays)

    def resolved(self, a: Any) -> Any:
        """``a`` as plain memory holding the values it reads as: a copy where it is a lazily negated or conjugated
        view (torch's ``is_neg()``, ``is_conj()``), else ``a`` itself. For arrays that are only read."""
        return a

    def steady_operands(
        self, p: Any, g: Any, arrays: Mapping[str, Any], storages: Mapping[str, str], block: int
    ) -> tuple[Any, Any, list[Any]] | None:
        """For a kind whose arrays the kernel does not check itself: what the kernel reads and writes for a
        parameter, its gradient and its low-bit state ``arrays`` (each of storage ``storages[key]``, a scale array
        one value per ``block`` elements), checked here in one pass; None where the general path must look at them.
        A kind without such a pass returns None."""
        return None

    def operand(self, a: Any, writable: bool) -> Any | None:
        """What the kernel reads or writes for ``a`` (the array, or its address), or None if it cannot take it: not
        dense and contiguous, misaligned, on another device, or read-only where ``writable``."""
        raise NotImplementedError

    def why_not(self, a: Any, writable: bool) -> str:
        """Why :meth:`operand` refuses ``a``, as the end of a sentence ("is not C-contiguous ...")."""
        raise NotImplementedError

    def copyable(self, g: Any, p: Any) -> bool:
        """Whether :meth:`contiguous_copy` of gradient ``g`` is an operand the kernel takes beside ``p``."""
        raise NotImplementedError

    def contiguous_copy(self, g: Any) -> Any:
        """A new dense, contiguous array holding ``g``'s values, in its dtype."""
        raise NotImplementedError

    def size(self, a: Any) -> int:
        raise NotImplementedError

    def span(self, a: Any) -> tuple[int, int]:
        """The byte range ``[start, end)`` that ``a``'s elements occupy (start == end for an empty array)."""
        raise NotImplementedError

    def same_layout(self, a: Any, b: Any, shape: tuple[int, ...] | None = None) -> bool:
        """Whether a has ``shape`` (by default b's shape) and b's placement (device)."""
        raise NotImplementedError

    def not_whole(self, a: Any) -> str:
        """Why the engine would update only a piece of ``a`` (a DTensor's local shard, a complex tensor's pairs of
        reals), as the end of a sentence, or "" if it updates ``a`` whole; a rule over whole tensors needs it
        whole."""
        return ""

    def shares_memory(self, a: Any, b: Any) -> bool:
        """Whether a and b, whose byte ranges overlap, have an element in common (True where unsure)."""
        return True

    def new_state(self, spec: AlgorithmSpec, p: Any, hp: Hyperparams, keys: list[str], state_dtype: Any) -> dict:
        """Fresh state slots ``keys`` for parameter ``p``."""
        raise NotImplementedError

    def work_copy(self, a: Any, dtype_name: str) -> Any:
        """A copy of ``a`` in the compute dtype of ``dtype_name`` storage (float32 or float64)."""
        raise NotImplementedError

    def mark_written(self, arrays: Sequence[Any]) -> None:
        """Record that a kernel wrote the parameters ``arrays`` in place (nothing to record for NumPy arrays)."""

    def write_back(self, dst: Any, src: Any) -> None:
        """Store ``src`` into ``dst`` in place, rounding to ``dst``'s dtype."""
        raise NotImplementedError

    def scalar_caster(self, dtype_name: str) -> Any:
        """The function rounding a float64 host scalar to the compute dtype of ``dtype_name`` storage."""
        return float if dtype_name == "float64" else _round_to_float32

    def next_step(self, state: Mapping[str, Any]) -> Any:
        """The step counter after this step, in the form the state dict keeps it, computed without writing."""
        raise NotImplementedError

    def count(self, step: Any) -> int:
        """The step number a counter of :meth:`next_step` stands for."""
        raise NotImplementedError

    def read_host(self, state: Mapping[str, Any], key: str, initial: float) -> Any:
        """A host scalar of the state dict (NAdam's ``mu_product``) in the form ``advance_host`` computes with."""
        raise NotImplementedError

    def store_counters(self, state: dict, step: Any, host: Mapping[str, Any]) -> None:
        """Store the new ``step`` (None: the algorithm keeps none) and host scalars in the state dict."""
        raise NotImplementedError

    def shape(self, a: Any) -> tuple[int, ...]:
        raise NotImplementedError

    def describe(self, a: Any) -> str:
        """A short description for messages: type, shape and dtype."""
        raise NotImplementedError

    def check_param(self, p: Any, where: str) -> None:
        """Raise if ``p`` cannot be updated in place (read-only)."""

    def writable(self, a: Any) -> bool:
        """Whether the step can write ``a`` (a parameter or a state value) in place where the reference writes it
        (NumPy's read-only arrays are :meth:`check_param`'s and the kernel's to refuse)."""
        return True

    def check_writable(self, a: Any, where: str) -> None:
        """Raise, before anything is written, where :meth:`writable` says ``a`` cannot be written."""

    def nonfinite_address(self, g: Any) -> tuple[int, int, str] | None:
        """Where the kernels' finite check reads ``g`` directly, or None."""
        raise NotImplementedError

    def has_nonfinite(self, g: Any) -> bool:
        raise NotImplementedError

    #: whether the kind has a multi-tensor path (:mod:`descend.engine.foreach`) beside the kernel and the reference
    multi_tensor: bool = False

    def prefers_multi_tensor(self, p: Any, g: Any, arrays: Mapping[str, Any]) -> bool:
        """Whether ``backend="auto"`` runs a parameter the kernel does not take on the multi-tensor path rather than
        the per-tensor reference."""
        return False

    def multi_tensor_key(self, p: Any, arrays: Mapping[str, Any]) -> tuple:
        """What the parameters run together by one multi-tensor call share, besides their scalars."""
        raise NotImplementedError

    def multi_tensor_step(
        self, spec: AlgorithmSpec, members: Sequence[tuple[Any, Any, Mapping[str, Any]]], scalars: NamedTuple
    ) -> Callable[[], Callable[[], None]]:
        """The multi-tensor step of ``members`` (``(param, gradient, state arrays)`` sharing a key and scalars):
        a ``compute()`` that writes nothing and returns the write that stores its results."""
        raise NotImplementedError

    def multi_tensor_steady(
        self, engine: Any, hp: Hyperparams, backend: str, items: Sequence[Any], spec: AlgorithmSpec | None = None
    ) -> Any:
        """A group's step prepared with little Python per parameter where all of them are on the multi-tensor path
        in their steady state (a :class:`~descend.engine.step.Prepared`), else None. ``spec``: the group's algorithm,
        if not the engine's."""
        return None

    # -- low-bit storage (descend.lowbit) ---------------------------------------------------------------------------

    def storage(self, a: Any) -> str | None:
        """What ``a`` stores: ``"float32"``, ``"float64"``, ``"float16"``, ``"bfloat16"`` (bits) or ``"uint8"``, or
        None for anything else."""
        raise NotImplementedError

    def raw(self, a: Any) -> np.ndarray | None:
        """A NumPy view of ``a``'s memory as stored (bfloat16 as uint16 bits), or None where it has no such view
        (another device)."""
        raise NotImplementedError

    def new_raw(self, like: Any, shape: tuple[int, ...], storage: str, values: np.ndarray) -> Any:
        """A new array of this kind beside ``like`` (same device), of ``storage`` and ``shape``, holding ``values``
        (a NumPy array of the same bytes: uint16 bits for bfloat16)."""
        raise NotImplementedError


def _round_to_float32(value: float) -> float:
    return float(np.float32(value))


def _interface_address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


# Where an array's first element is: through the buffer protocol where the kernels are built (``a.ctypes`` keeps a new
# object alive on the array every time, ``__array_interface__`` builds a dict).
_address = kernels.address if kernels.available()[0] else _interface_address


_NP_FLOATS = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}


class NumpyKind(ArrayKind):
    """NumPy arrays: float32 and float64, updated in place; the kernel takes C-contiguous aligned arrays."""

    xp = np
    noun = "array"
    kernel_checks = True

    def dtype_name(self, a: Any) -> str | None:
        return _NP_FLOATS.get(a.dtype) if isinstance(a, np.ndarray) else None

    def all_of_dtype(self, arrays: Sequence[Any], like: Any) -> bool:
        dtype = like.dtype
        return all(a.dtype == dtype for a in arrays)

    def operand(self, a: Any, writable: bool) -> Any | None:
        flags = a.flags
        if type(a) is not np.ndarray or not flags.c_contiguous or not flags.aligned:
            return None
        if writable and not flags.writeable:
            return None
        return a

    def why_not(self, a: Any, writable: bool) -> str:
        if type(a) is not np.ndarray:
            return f"is a {type(a).__name__}, not a plain NumPy array"
        if not a.flags.c_contiguous:
            return f"is not C-contiguous (strides {a.strides})"
        if not a.flags.aligned:
            return "is not aligned to its item size"
        return "is read-only" if writable and not a.flags.writeable else "is accepted"

    def copyable(self, g: Any, p: Any) -> bool:
        return isinstance(g, np.ndarray) and g.dtype == p.dtype

    def contiguous_copy(self, g: Any) -> Any:
        return np.array(g, order="C", copy=True, subok=False)

    def size(self, a: Any) -> int:
        return a.size

    def span(self, a: Any) -> tuple[int, int]:
        if not isinstance(a, np.ndarray) or a.size == 0:
            return 0, 0
        lo = hi = _address(a)
        for n, stride in zip(a.shape, a.strides):
            if stride < 0:
                lo += (n - 1) * stride
            else:
                hi += (n - 1) * stride
        return lo, hi + a.itemsize

    def same_layout(self, a: Any, b: Any, shape: tuple[int, ...] | None = None) -> bool:
        return isinstance(a, np.ndarray) and a.shape == (b.shape if shape is None else tuple(shape))

    def shares_memory(self, a: Any, b: Any) -> bool:
        try:
            return bool(np.shares_memory(a, b, max_work=100_000))
        except np.exceptions.TooHardError:
            return True

    def new_state(self, spec: AlgorithmSpec, p: Any, hp: Hyperparams, keys: list[str], state_dtype: Any) -> dict:
        fresh = spec.init_state(np, np.zeros(p.shape, dtype=p.dtype), hp)
        return {k: fresh[k] for k in keys}

    def work_copy(self, a: Any, dtype_name: str) -> Any:
        return np.array(a, dtype=np.float64 if dtype_name == "float64" else np.float32, order="C", copy=True)

    def write_back(self, dst: Any, src: Any) -> None:
        # through a plain view: a subclass's __array_function__ cannot refuse (or half do) a write
        np.copyto(np.ndarray.view(dst, np.ndarray), src, casting="unsafe")

    def next_step(self, state: Mapping[str, Any]) -> Any:
        return int(state.get("step", 0)) + 1

    def count(self, step: Any) -> int:
        return step

    def read_host(self, state: Mapping[str, Any], key: str, initial: float) -> Any:
        return float(state.get(key, initial))

    def store_counters(self, state: dict, step: Any, host: Mapping[str, Any]) -> None:
        if step is not None:
            state["step"] = step
        for key, value in host.items():
            state[key] = float(value)

    def shape(self, a: Any) -> tuple[int, ...]:
        return tuple(a.shape)

    def describe(self, a: Any) -> str:
        if not isinstance(a, np.ndarray):
            return f"a {type(a).__name__}"
        return f"shape {a.shape}, dtype {a.dtype}"

    def check_param(self, p: Any, where: str) -> None:
        if not p.flags.writeable:
            raise ValueError(f"{where} is read-only; the optimizer updates parameters in place")

    def nonfinite_address(self, g: Any) -> tuple[int, int, str] | None:
        name = _NP_FLOATS.get(g.dtype)
        if name and g.flags.c_contiguous and g.flags.aligned:
            return _address(g), g.size, name
        return None

    def has_nonfinite(self, g: Any) -> bool:
        return not bool(np.isfinite(g).all())

    def storage(self, a: Any) -> str | None:
        return _NP_STORAGE.get(a.dtype) if isinstance(a, np.ndarray) else None

    def raw(self, a: Any) -> np.ndarray | None:
        return np.ndarray.view(a, np.ndarray) if isinstance(a, np.ndarray) else None

    def new_raw(self, like: Any, shape: tuple[int, ...], storage: str, values: np.ndarray) -> Any:
        return np.array(values, dtype=_NP_OF_STORAGE[storage], order="C", copy=True).reshape(shape)


# NumPy has no bfloat16: its bits are kept in uint16 arrays.
_NP_STORAGE = {
    np.dtype(np.float32): "float32",
    np.dtype(np.float64): "float64",
    np.dtype(np.float16): "float16",
    np.dtype(np.uint16): "bfloat16",
    np.dtype(np.uint8): "uint8",
}
_NP_OF_STORAGE = {name: dtype for dtype, name in _NP_STORAGE.items()}
