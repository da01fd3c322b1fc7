"""The fused CPU kernels: one multi-threaded, vectorised pass updates every tensor of a param group.

The compiled module ``descend.kernels._fused`` (C11 + OpenMP, built with the package) holds one loop per algorithm,
compiled for AVX-512, AVX2 and the x86-64 baseline; the best one the CPU supports is picked when it loads. The loops
restate each algorithm's ``reference_update`` operation by operation, with the host scalars rounded once to the
compute dtype, so for float32 and float64 the result is bit-identical to the reference. bfloat16 and float16 are
loaded into float32, updated there and rounded to nearest even on store.

:func:`step` is the one entry point the fronts call. If the extension is missing, :func:`available` says why, one
warning said so at import, and the fronts run the reference.
"""

from __future__ import annotations

import array
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from descend.kernels._layout import COMBOS, KERNELS, interface

__all__ = [
    "available",
    "get_num_threads",
    "isa",
    "job",
    "roofline",
    "run",
    "set_num_threads",
    "shaped",
    "step",
    "supports",
]

try:
    from descend.kernels import _fused
except ImportError as exc:  # pragma: no cover - depends on the build
    _fused = None
    _WHY = f"the compiled extension descend.kernels._fused could not be imported ({exc})"
    warnings.warn(f"descend's fused kernels are unavailable: {_WHY}; the reference path runs", stacklevel=2)
else:
    _WHY = ""
    if dict(_fused.INTERFACE) != interface():  # a build from another version of _layout.py's table
        _WHY = "the compiled kernels were built for another kernel interface; reinstall descend to rebuild them"
        warnings.warn(f"descend's fused kernels are unavailable: {_WHY}; the reference path runs", stacklevel=2)
        _fused = None

_KERNEL_IDS: dict[str, int] = {name: i for i, name in enumerate(_fused.ALGORITHMS)} if _fused else {}
DTYPES = ("float32", "float64", "bfloat16", "float16")


def available() -> tuple[bool, str]:
    """Whether the compiled kernels can run, and if not, why."""
    if _fused is None:
        return False, _WHY
    return True, f"compiled kernels loaded, running with {_fused.isa()}"


def supports(name: str, dtype: str, state_dtype: str | None = None) -> bool:
    """Whether :func:`step` can run algorithm ``name`` for params of ``dtype`` with state of ``state_dtype``."""
    return _fused is not None and name in KERNELS and (dtype, state_dtype or dtype) in COMBOS


def shaped(name: str) -> bool:
    """Whether algorithm ``name``'s kernel updates whole tensors (its rule reduces over them, as Adafactor's means):
    its calls then carry each tensor's shape (:func:`job`'s ``shapes``), and its state may be shaped otherwise."""
    layout = KERNELS.get(name)
    return layout is not None and layout.shaped


# Low-bit storage (descend.lowbit): the state formats and param modes as the kernels number them, and the float32-state
# combination of each param dtype, whose body the low-bit range function runs.
_STATE_FORMATS = {"float32": 0, "bfloat16": 1, "blockwise8": 2}
_PARAM_MODES = {"nearest": 0, "stochastic": 1, "kahan": 2}
LOWBIT_PARAMS = ("float32", "bfloat16", "float16")


def format_refusal(name: str, dtype: str, fmt: Any) -> str:
    """Why :func:`job` cannot run algorithm ``name`` for params of ``dtype`` with low-bit storage ``fmt``
    (a :class:`descend.lowbit.StateFormat`), or "" if it can."""
    if _fused is None:
        return f"descend's fused kernels are unavailable: {_WHY}"
    if name not in KERNELS:
        return f"no fused kernel for algorithm {name!r}"
    if KERNELS[name].shaped:
        return f"{name} keeps no low-bit state: its kernel updates whole tensors and stores its state as it is"
    if dtype not in LOWBIT_PARAMS:
        return f"a state format applies to float32, bfloat16 and float16 params, not {dtype}"
    if fmt.params != "nearest" and dtype == "float32":
        return f"params={fmt.params!r} applies to 16-bit params; float32 params are stored as they are"
    if fmt.params == "stochastic" and dtype != "bfloat16":
        return f"params='stochastic' applies to bfloat16 params, not {dtype}"
    return ""


def isa() -> str | None:
    """The instruction set the kernels run with (``"avx512"``, ``"avx2"`` or ``"baseline"``), or None if unbuilt."""
    return _fused.isa() if _fused is not None else None


def set_num_threads(n: int | None) -> None:
    """Set the number of threads a step uses when its caller does not say (``None`` or 0: OpenMP's default).

    Raises:
        ValueError: ``n`` is negative, not an int, or the kernels are not built.
    """
    if n is None:
        n = 0
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"the thread count must be a non-negative int or None, got {n!r}")
    _require()
    _fused.set_num_threads(n)


_FINITE_KINDS = {"float64": 0, "float32": 1, "bfloat16": 2, "float16": 3}


def first_nonfinite(addresses: list[int], sizes: list[int], dtype: str, num_threads: int | None = None) -> int:
    """The index of the first tensor (by address and element count) that holds a NaN or an infinity, or -1.

    Each tensor is read once, testing exponent bits; large tensors are split across threads, and the GIL is released.

    Raises:
        ValueError: ``dtype`` is not float64, float32, bfloat16 or float16, or the kernels are not built.
    """
    if dtype not in _FINITE_KINDS:
        raise ValueError(f"first_nonfinite reads float64, float32, bfloat16 or float16 tensors, not {dtype!r}")
    _require()
    return int(_fused.first_nonfinite(addresses, sizes, _FINITE_KINDS[dtype], num_threads or 0))


def compile_plan(
    planned: list,
    entries: list,
    keys: tuple,
    nslots: int,
    reader: int | None = None,
    hints: list | None = None,
    shim: tuple[int, ...] | None = None,
) -> Any:
    """A torch param group's plan (see :mod:`descend.engine.plan`) compiled into one C array, for :func:`gather`.

    Args:
        planned: the group's parameters.
        entries: per parameter, None (no state yet) or ``(state dict or None, param address, shape, state tensors,
            their dtypes, their addresses)``, the last three in the order of ``keys``.
        keys: the state keys the plan checks: first the ``nslots`` tensors of the parameter's shape, then scalars.
        nslots: how many of ``keys`` are tensors of the parameter's shape.
        reader: the address of torch's C function that reads a tensor's data pointer from its Python object
            (``torch._C._dynamo.guards._torchinductor_pyobject_tensor_data_ptr``), or None to call ``data_ptr()``.
        hints: None, or per parameter None or a tuple of addresses that checking it will read (torch's objects
            behind the tensors), which gather() starts fetching a few parameters ahead. Never dereferenced.
        shim: None, or ``(offset, data_ptr, dtype, layout, dim, sizes, is_contiguous[, is_neg])``: where a tensor's
            at::Tensor lies in its Python object, and the addresses of torch's C functions ``aoti_torch_get_data_ptr``,
            ``aoti_torch_get_dtype``, ``aoti_torch_get_layout``, ``aoti_torch_get_dim``, ``aoti_torch_get_sizes`` and
            ``aoti_torch_is_contiguous``, which gather() then reads the tensors' metadata with, and optionally that of
            ``at::native::is_neg`` (0: call ``is_neg()``). The plan confirms the offset on every tensor it records and
            goes without the shim where it does not hold.

    Raises:
        ValueError, TypeError: a malformed entry.
    """
    _require()
    return _fused.compile_plan(planned, entries, keys, nslots, reader, hints, shim)


def plan_uses_shim(plan: Any) -> bool:
    """Whether a plan from :func:`compile_plan` reads the tensors' metadata with torch's C functions (its ``shim``,
    confirmed on every tensor it records) rather than their Python attributes."""
    _require()
    return bool(_fused.plan_uses_shim(plan))


def gather(params: list, plan: Any, state: dict, dtype: Any, layout: Any, types: tuple) -> tuple | None:
    """Check a torch param group against its compiled plan and read its gradients (see ``gather.c``).

    Returns:
        ``(addresses, grads)``: per parameter, its gradient's address and the gradient itself (None where it has
        none; hold the gradients while a kernel reads them), or None, having changed nothing, if the group no longer
        matches the plan or a gradient is not a dense contiguous tensor of ``types``, ``dtype`` and the parameter's
        shape.
    """
    _require()
    return _fused.gather(params, plan, state, dtype, layout, types)


def common_value(addresses: list[int], is_double: bool) -> float | None:
    """The value every float32 (or float64) scalar at ``addresses`` holds, or None if they differ."""
    _require()
    return _fused.scalar_op(addresses, is_double, 0, 0.0)


def fill_value(addresses: list[int], value: float, is_double: bool) -> None:
    """Store ``value`` (rounded to float32 unless ``is_double``) in the scalar at each of ``addresses``."""
    _require()
    _fused.scalar_op(addresses, is_double, 2, value)


def bump_versions(tensors: list, function: int, offset: int, types: tuple) -> int:
    """Advance the autograd version of each tensor in ``tensors`` through torch's bump function at address
    ``function`` (its at::Tensor ``offset`` bytes into the Python object), as long as they are of one of ``types``;
    returns how many were handled."""
    _require()
    return int(_fused.bump_versions(tensors, function, offset, types))


def address(buffer: Any) -> int:
    """Where the first element of ``buffer`` (any object with the buffer protocol, strided or read-only) is."""
    _require()
    return _fused.address(buffer)


def get_num_threads() -> int:
    """The number of threads a step uses when its caller does not say."""
    _require()
    return int(_fused.get_num_threads())


def _require() -> None:
    if _fused is None:
        raise RuntimeError(f"descend's fused kernels are unavailable: {_WHY}")


def _rounded(scalars: NamedTuple, compute: str) -> NamedTuple:
    """The scalars with every float field rounded once to the compute dtype (float32 for every storage but float64);
    rounding a value that is already rounded changes nothing."""
    if compute == "float64":
        return scalars
    at = [i for i, v in enumerate(scalars) if type(v) is float]
    fields = list(scalars)
    for i, v in zip(at, array.array("f", [fields[i] for i in at])):  # C float: round to nearest, as np.float32
        fields[i] = v
    return type(scalars)(*fields)


def job(
    name: str,
    scalars: NamedTuple,
    params: Sequence[Any],
    grads: Sequence[Any],
    states: Mapping[str, Sequence[Any]],
    *,
    dtype: str,
    state_dtype: str | None = None,
    sizes: Sequence[int] | None = None,
    shapes: Sequence[tuple[int, ...]] | None = None,
    fmt: Any = None,
    step: int = 0,
    ids: Sequence[int] | None = None,
    comps: Sequence[Any] | None = None,
) -> tuple:
    """One kernel call over the tensors of a group that share dtypes and scalars, ready for :func:`run`.

    Args:
        name: the registry name of the algorithm (``"adam"``, ``"adamw"``, ...).
        scalars: ``spec.scalars(hp, step, host, first)``, the same for every tensor of the call; float fields are
            rounded here to the compute dtype (rounding a value that is already rounded changes nothing).
        params: per tensor, a C-contiguous writable buffer (a NumPy array) or an address (an int, e.g. torch's
            ``data_ptr()``).
        grads: per tensor, the gradient, in the same form and dtype as the params; it is only read.
        states: slot name -> per-tensor buffers or addresses, for the slots ``spec.state_slots(hp)`` names.
        dtype: the storage dtype of params and grads: ``"float32"``, ``"float64"``, ``"bfloat16"`` or ``"float16"``.
        state_dtype: the storage dtype of the state (default: ``dtype``); float32 state is allowed for 16-bit params.
        sizes: per tensor, the number of elements; required where addresses are given.
        shapes: per tensor, the parameter's shape; required for a :func:`shaped` kernel (which checks each state
            slot against the shape the body gives it), not taken by the others. The tensors of one call keep the
            same slots (Adafactor's factored matrices and its vectors are two calls).
        fmt: a :class:`descend.lowbit.StateFormat` for low-bit storage (``state_dtype`` is then ignored): the state
            slots hold the format's arrays (bfloat16 bits, or 8-bit codes with their scales under
            ``slot + "_scale"`` in ``states``), and the update runs as :func:`descend.lowbit.update` computes it.
        step, ids: with ``fmt``, the random stream's position: the step, and per tensor its parameter's number.
        comps: with ``fmt.params == "kahan"``, per tensor the compensation buffer (the param's dtype).

    Raises:
        RuntimeError: the kernels are not built.
        ValueError: an unknown algorithm or dtype pair, a missing state slot, shapes missing or not wanted, or
            low-bit storage for a :func:`shaped` kernel (which keeps none).
    """
    _require()
    layout = KERNELS.get(name)
    if layout is None:
        raise ValueError(f"no fused kernel for algorithm {name!r}; kernels exist for {', '.join(KERNELS)}")
    if fmt is not None:
        return _lowbit_job(name, scalars, params, grads, states, dtype, sizes, fmt, step, ids, comps)
    combo = COMBOS.get((dtype, state_dtype or dtype))
    if combo is None:
        pairs = ", ".join(f"{p}/{s}" for p, s in COMBOS)
        raise ValueError(f"no fused kernel for {dtype} params with {state_dtype or dtype} state; supported: {pairs}")
    compute = "float64" if dtype == "float64" else "float32"
    rounded = _rounded(scalars, compute)
    values = [float(getattr(rounded, field)) for field in layout.values]
    flags = sum(1 << bit for bit, on in enumerate(layout.flags(rounded)) if on)
    slot_lists = [states.get(slot) for slot in layout.slot_names]
    if layout.shaped != (shapes is not None):
        raise ValueError(f"the {name} kernel {'needs' if layout.shaped else 'takes no'} shapes")
    if layout.shaped:  # the body checks each tensor's slots against its shape
        return (_KERNEL_IDS[layout.body], combo, flags, values, params, grads, slot_lists, sizes, None, list(shapes))
    for slot, need, given in zip(layout.slot_names, layout.needed(rounded), slot_lists):
        if need and given is None:  # the kernel would otherwise read a missing array
            raise ValueError(f"{name} with these settings needs the state slot {slot!r}, which was not given")
    return (_KERNEL_IDS[layout.body], combo, flags, values, params, grads, slot_lists, sizes)


def _lowbit_job(
    name: str,
    scalars: NamedTuple,
    params: Sequence[Any],
    grads: Sequence[Any],
    states: Mapping[str, Sequence[Any]],
    dtype: str,
    sizes: Sequence[int] | None,
    fmt: Any,
    step: int,
    ids: Sequence[int] | None,
    comps: Sequence[Any] | None,
) -> tuple:
    why = format_refusal(name, dtype, fmt)
    if why:
        raise ValueError(why)
    layout = KERNELS[name]
    rounded = _rounded(scalars, "float32")
    values = [float(getattr(rounded, field)) for field in layout.values]
    flags = sum(1 << bit for bit, on in enumerate(layout.flags(rounded)) if on)
    slot_lists = [states.get(slot) for slot in layout.slot_names]
    for slot, need, given in zip(layout.slot_names, layout.needed(rounded), slot_lists):
        if need and given is None:
            raise ValueError(f"{name} with these settings needs the state slot {slot!r}, which was not given")
    blockwise = fmt.dtype == "blockwise8"
    scale_lists = (
        [
            states.get(slot + "_scale") if given is not None else None
            for slot, given in zip(layout.slot_names, slot_lists)
        ]
        if blockwise
        else None
    )
    nonneg = sum(1 << s for s, slot in enumerate(layout.slot_names) if slot in layout.nonneg)
    stochastic = int(fmt.stochastic_rounding and fmt.dtype != "float32")
    if ids is None:
        ids = range(len(params))
    lowbit = (
        _STATE_FORMATS[fmt.dtype],
        stochastic,
        _PARAM_MODES[fmt.params],
        nonneg,
        fmt.seed,
        int(step),
        list(ids),
        scale_lists,
        comps if fmt.params == "kahan" else None,
    )
    combo = COMBOS[(dtype, "float32")]
    return (_KERNEL_IDS[layout.body], combo, flags, values, params, grads, slot_lists, sizes, lowbit)


def run(jobs: Sequence[tuple], num_threads: int = 0, ran: list | None = None) -> None:
    """Run the calls of :func:`job`, in place. Every call is checked (buffers C-contiguous, writable, of the right
    dtype and size) before the first one runs, so a refusal changes nothing. The GIL is released while they run.

    Args:
        jobs: what :func:`job` returned, for every call of a step.
        num_threads: threads to use; 0 uses :func:`set_num_threads`'s value, else OpenMP's default.
        ran: a list that gets True appended once the calls have run, before control returns to Python code (so a
            caller interrupted by a signal's exception on the way back knows whether they ran).

    Raises:
        ValueError, TypeError: a buffer was refused; nothing was changed.
    """
    if not jobs:
        return
    _require()
    if ran is None:
        _fused.run(jobs, num_threads)
    else:
        _fused.run(jobs, num_threads, ran)


def step(
    name: str,
    scalars: NamedTuple,
    params: Sequence[Any],
    grads: Sequence[Any],
    states: Mapping[str, Sequence[Any]],
    *,
    dtype: str,
    state_dtype: str | None = None,
    sizes: Sequence[int] | None = None,
    shapes: Sequence[tuple[int, ...]] | None = None,
    num_threads: int = 0,
) -> None:
    """One kernel call, run at once: :func:`job` then :func:`run` (arguments as theirs)."""
    one = job(name, scalars, params, grads, states, dtype=dtype, state_dtype=state_dtype, sizes=sizes, shapes=shapes)
    run([one], num_threads)


def roofline(
    params: Sequence[Any],
    grads: Sequence[Any],
    states: Sequence[Sequence[Any]],
    *,
    dtype: str = "float32",
    sizes: Sequence[int] | None = None,
    num_threads: int = 0,
) -> None:
    """The memory roofline: the loads and stores of a step with trivial math (``x += grad`` for the param and each
    of up to three state slots). Arguments as for :func:`step`; the arrays are modified."""
    _require()
    if len(states) > 3:
        raise ValueError(f"the roofline kernel takes up to 3 state slots, got {len(states)}")
    combo = COMBOS.get((dtype, dtype))
    if combo is None:
        raise ValueError(f"no roofline kernel for dtype {dtype!r}; supported: {', '.join(DTYPES)}")
    flags = len(states) << 1
    slot_lists = list(states) + [None] * (3 - len(states))
    _fused.run([(_KERNEL_IDS["roofline"], combo, flags, [], params, grads, slot_lists, sizes)], num_threads)


def _set_isa(name: str) -> None:
    """Run with another instruction set the CPU supports (``"avx512"``, ``"avx2"``, ``"baseline"``); for tests."""
    _require()
    _fused.set_isa(name)


def _supported_isas() -> tuple[str, ...]:
    return tuple(_fused.SUPPORTED_ISAS) if _fused is not None else ()
