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

from descend.algorithms._spec import AlgorithmSpec, cast_scalars
from descend.engine.tensorlist import XP, TensorList
from descend.engine.torch_arrays import local

__all__ = ["group_key", "group_step", "prefers"]


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
    members: Sequence[tuple[Any, Any, Mapping[str, Any]]],
    scalars: NamedTuple,
    dtype_name: str,
    caster: Callable[[float], Any],
) -> Callable[[], Callable[[], None]]:
    """The step of one set of parameters, to run at the engine's compute stage.

    Args:
        spec: the algorithm.
        members: per parameter, ``(param, gradient, state arrays)``; one device, one dtype per array, one step.
        scalars: the per-step scalars they share, in float64.
        dtype_name: the storage dtype's name (``"float32"``, ``"bfloat16"``, ...), which sets the compute dtype.
        caster: rounds a float64 host scalar to the compute dtype.

    Returns:
        ``compute()``, which runs the rule on new tensors and returns the write that stores them.
    """
    slots = list(members[0][2]) if members else []
    compute_dtype = torch.float64 if dtype_name == "float64" else torch.float32

    def compute() -> Callable[[], None]:
        with torch.no_grad():
            targets = [[local(p) for p, _, _ in members]] + [[local(a[k]) for _, _, a in members] for k in slots]
            param = _load(targets[0], compute_dtype)
            grad = _load([local(g) for _, g, _ in members], compute_dtype)
            state = {k: _load(t, compute_dtype) for k, t in zip(slots, targets[1:])}
            spec.reference_update(XP, param, grad, state, cast_scalars(scalars, caster))
            results = [param, *(state[k] for k in slots)]
            writes = [(dst, tl.tensors) for dst, tl in zip(targets, results) if tl.dirty]
        return lambda: store(writes)

    return compute


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
