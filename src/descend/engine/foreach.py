"""The engine's multi-tensor path: the tensors of a param group that the fused kernel cannot run (any device but the
CPU, or every tensor under ``backend="foreach"``), updated together by the algorithm's own ``reference_update``.

The engine gathers such tensors per group into sets that share a device, dtypes and per-step scalars (tensors at
different steps have different scalars, so they fall into different sets), and hands each set to
:func:`group_step`. Its ``compute()`` runs ``reference_update`` once on :class:`~descend.engine.tensorlist.TensorList`
arrays, so every line of the rule is one ``torch._foreach_*`` call for the whole set, and returns the write to make
later. As in the per-tensor reference, float32 and float64 are computed in their own dtype, and bfloat16 and float16
storage is loaded into float32 and rounded to nearest even when stored; complex tensors are updated as the pairs of
reals they hold, and a DTensor through its local shard.

The rule never writes the caller's tensors (see :mod:`descend.engine.tensorlist`): it computes into new tensors, and
only the engine's write stage copies them back (one ``_foreach_copy_`` per destination dtype). So a step that raises
while computing leaves every parameter and state tensor as it was, and an array the rule did not change (a borrowed
list never written to) is not copied at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import torch

from descend.algorithms._spec import AlgorithmSpec, Hyperparams, cast_scalars
from descend.engine.memory import check_overlaps, check_state, check_writable, check_written
from descend.engine.step import Item, Prepared
from descend.engine.tensorlist import XP, TensorList
from descend.engine.torch_arrays import local

__all__ = ["group_key", "group_step", "prefers", "steady_state", "store"]

_PLAIN = (torch.Tensor, torch.nn.Parameter)


def prefers(p: Any, g: Any, arrays: Mapping[str, Any]) -> bool:
    """Whether ``backend="auto"`` runs this parameter on the multi-tensor path rather than the per-tensor reference:
    it is not on the CPU, and its gradient and state are on its device."""
    device = local(p).device
    if device.type == "cpu":
        return False
    return local(g).device == device and all(local(a).device == device for a in arrays.values())


def group_key(p: Any, arrays: Mapping[str, Any]) -> tuple:
    """What the tensors of one set share besides the scalars: the device and every dtype."""
    return (local(p).device, p.dtype, tuple(a.dtype for a in arrays.values()))


def group_step(
    spec: AlgorithmSpec,
    params: Sequence[Any],
    grads: Sequence[Any],
    arrays: Mapping[str, Sequence[Any]],
    scalars: NamedTuple,
    dtype_name: str,
    caster: Callable[[float], Any],
) -> Callable[[], Callable[[], None]]:
    """The step of one set of parameters, to run at the engine's compute stage.

    Args:
        spec: the algorithm.
        params, grads: the parameters and their gradients; one device, one dtype.
        arrays: state slot -> the parameters' arrays of that slot, each slot of one dtype.
        scalars: the per-step scalars they share, in float64.
        dtype_name: the storage dtype's name (``"float32"``, ``"bfloat16"``, ...), which sets the compute dtype.
        caster: rounds a float64 host scalar to the compute dtype.

    Returns:
        ``compute()``, which runs the rule on new tensors and returns the write that stores them.
    """
    compute_dtype = torch.float64 if dtype_name == "float64" else torch.float32

    def compute() -> Callable[[], None]:
        s = cast_scalars(scalars, caster)
        writes: list[tuple[list, list]] = []
        with torch.no_grad():
            columns = [[local(t) for t in column] for column in (params, grads, *arrays.values())]
            for lo, hi in _chunks(columns[0]):
                targets = [column[lo:hi] for column in columns]
                param, grad = _load(targets[0], compute_dtype), _load(targets[1], compute_dtype)
                state = {k: _load(t, compute_dtype) for k, t in zip(arrays, targets[2:])}
                spec.reference_update(XP, param, grad, state, s)
                results = [param, *(state[k] for k in arrays)]
                writes += [(dst, tl.tensors) for dst, tl in zip(targets[:1] + targets[2:], results) if tl.dirty]
        return lambda: store(writes)

    return compute


#: On the CPU a set is computed in runs of tensors of about this many elements, so that the temporaries of one
#: operation stay in the caches and reuse the memory of the last run's (a GPU computes the set in one run).
CPU_RUN = 1 << 18


def _chunks(params: list[torch.Tensor]) -> list[tuple[int, int]]:
    """``(start, stop)`` of the runs of ``params`` computed together: one run off the CPU, runs of about
    :data:`CPU_RUN` elements on it."""
    if not params or params[0].device.type != "cpu":
        return [(0, len(params))]
    runs, start, size = [], 0, 0
    for k, p in enumerate(params):
        if size and size + p.numel() > CPU_RUN:
            runs.append((start, k))
            start, size = k, 0
        size += p.numel()
    return [*runs, (start, len(params))]


def _borrowable(t: torch.Tensor, dtype: torch.dtype) -> bool:
    return t.dtype == dtype and not (t.is_neg() or t.is_conj() or t._is_zerotensor())


def _load(tensors: list[torch.Tensor], dtype: torch.dtype) -> TensorList:
    """The tensors as a list the rule reads: borrowed as they are where they hold ``dtype`` values plainly, else
    copied into new ``dtype`` tensors (bfloat16 and float16 storage loaded into float32)."""
    if all(_borrowable(t, dtype) for t in tensors):
        return TensorList(tensors, owned=False)
    copies = [torch.empty_like(t, dtype=dtype) for t in tensors]
    torch._foreach_copy_(copies, tensors)
    return TensorList(copies)


def store(writes: Sequence[tuple[list[torch.Tensor], list[torch.Tensor]]]) -> None:
    """Copy each list of results into its destinations, rounding to their dtype: one ``_foreach_copy_`` per
    destination dtype and device. It stores values computed before, so it can be run twice."""
    batches: dict[tuple, tuple[list, list]] = {}
    for dsts, srcs in writes:
        if dsts:
            batch = batches.setdefault((dsts[0].dtype, dsts[0].device), ([], []))
            batch[0].extend(dsts)
            batch[1].extend(srcs)
    with torch.no_grad():
        for dsts, srcs in batches.values():
            torch._foreach_copy_(dsts, srcs)


def steady_state(
    engine: Any, hp: Hyperparams, backend: str, items: Sequence[Item], spec: AlgorithmSpec | None = None
) -> Prepared | None:
    """A group's step with little Python per parameter, where every parameter with a gradient goes to the
    multi-tensor path and is in its steady state: all its state, one step count and host scalars shared by all, one
    device and one dtype per array. None where that does not hold, or where the general path might refuse something
    (it then runs, and raises where it must); the step is the general path's, bit for bit.

    Args:
        engine: the :class:`~descend.engine.step.Engine`.
        hp, backend: the group's hyperparameters and backend (``"auto"`` or ``"foreach"``).
        items: the parameters with a gradient.
        spec: the group's algorithm, if not the engine's.
    """
    spec, kind = spec or engine.spec, engine.kind
    slots, host_keys = spec.state_slots(hp), tuple(spec.host_slots(hp))
    stateless = not slots and not host_keys and not spec.has_step  # SGD without momentum keeps no state at all
    if not items or (not stateless and any(item.state is None for item in items)):
        return None
    params = [item.param for item in items]
    if params[0].dtype.is_complex or not all(type(p) in _PLAIN for p in params):
        params = [local(p) for p in params]
    device, dtype = params[0].device, params[0].dtype
    if (backend == "auto" and device.type == "cpu") or backend not in ("auto", "foreach"):
        return None
    states = [item.state for item in items]
    try:
        arrays = {k: [st[k] for st in states] for k in slots}
        counters = {k: [st[k] for st in states] for k in (("step",) if spec.has_step else ()) + host_keys}
    except KeyError:
        return None
    grads = [item.grad for item in items]
    if not all(p.device == device and p.dtype is dtype for p in params) or not _on(device, grads, params):
        return None
    if not all(_on(device, column, params) for column in arrays.values()) or not all(map(_one, counters.values())):
        return None
    if device.type == "cpu":  # the general path's memory checks (they find nothing to check elsewhere)
        check_overlaps(kind, [item.param for item in items], [item.index for item in items])
        for k, item in enumerate(items):
            shapes = spec.slots_for(hp, kind.shape(item.param))  # the parameter's own: not a whole-tensor rule
            check_state(kind, item, {key: column[k] for key, column in arrays.items()}, shapes)
            check_writable(kind, item)
        check_written(
            kind, [(item, {key: column[k] for key, column in arrays.items()}) for k, item in enumerate(items)]
        )
    step = kind.next_step(states[0]) if spec.has_step else None
    count = kind.count(step) if step is not None else 0
    host_now = {key: kind.read_host(states[0], key, value) for key, value in spec.host_slots(hp).items()}
    host = spec.advance_host(hp, count, host_now) if host_now else {}
    seen = host_now if spec.host_for_scalars == "before" else host
    scalars = spec.scalars(hp, count, {key: float(v) for key, v in seen.items()}, False)
    name = kind.dtype_name(items[0].param) or "float64"
    out = Prepared()
    out.reference.append((None, group_step(spec, params, grads, arrays, scalars, name, kind.scalar_caster(name))))
    if engine.nan_policy != "propagate":
        out.checks = [(item.index, g, kind.nonfinite_address(g)) for item, g in zip(items, grads)]
    new = {"step": step, **host}
    in_place = all(new[k].dtype == c[0].dtype and new[k].shape == c[0].shape for k, c in counters.items())

    def commit() -> None:
        if not in_place:
            for st in states:
                kind.store_counters(st, step, host)
            return
        with torch.no_grad():  # what store_counters does for each state: the counters copied in place
            for key, column in counters.items():
                torch._foreach_copy_(column, [new[key]] * len(column))

    out.commits.append(commit)
    return out


def _on(device: torch.device, tensors: list, params: list) -> bool:
    """Whether ``tensors`` are tensors of one dtype on ``device``, each shaped as its (local) parameter."""
    if not tensors or not isinstance(tensors[0], torch.Tensor):
        return False
    dtype = tensors[0].dtype
    if dtype.is_complex or not all(type(t) in _PLAIN for t in tensors):  # DTensors and complex: their local view
        if not all(isinstance(t, torch.Tensor) and t.dtype is dtype for t in tensors):
            return False
        return all(t.shape == p.shape and t.device == device for t, p in zip(map(local, tensors), params))
    return all(t.dtype is dtype and t.shape == p.shape and t.device == device for t, p in zip(tensors, params))


def _one(counters: list) -> bool:
    """Whether the counters (``step``, a host scalar) are 0-d tensors of one dtype, all holding one value."""
    first = counters[0]
    if not isinstance(first, torch.Tensor) or first.ndim != 0:
        return False
    if not all(isinstance(c, torch.Tensor) and c.ndim == 0 and c.dtype is first.dtype for c in counters):
        return False
    values = torch.stack([c.detach() for c in counters]) if len(counters) > 1 else first
    return bool((values == first).all())
