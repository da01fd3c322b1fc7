"""The memory checks of a step: every array written must be a parameter's or its state's own, and a gradient that
shares memory with what a step writes is read from a copy. Used by :class:`descend.engine.step.Engine`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from descend.engine.arrays import ArrayKind, ranges_overlap

__all__ = ["check_overlaps", "check_state", "check_written"]


def check_writable(kind: ArrayKind, item: Any) -> None:
    """The parameter and every value of its state must be writable in place (a torch tensor made under inference
    mode is not, outside it): refused before anything is written, where the reference would fail half way."""
    kind.check_writable(item.param, f"parameter {item.index}")
    for key, value in (item.state or {}).items():
        kind.check_writable(value, f"the state {key!r} of parameter {item.index}")


def check_state(kind: ArrayKind, item: Any, arrays: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Every state array must fit its parameter: the shape the spec gives it (``shapes``, from ``slots_for``; the
    parameter's own for an elementwise rule), a float dtype, apart from the parameter."""
    p = item.param
    for key, a in arrays.items():
        if kind.dtype_name(a) is None or not kind.same_layout(a, p, shapes[key]):
            own = tuple(shapes[key]) == kind.shape(p)
            raise ValueError(
                f"the state {key!r} of parameter {item.index} has {kind.describe(a)}; it must be a float "
                + (
                    f"{kind.noun} of the parameter's shape ({kind.describe(p)})"
                    if own
                    else f"{kind.noun} of shape {tuple(shapes[key])} for a parameter of {kind.describe(p)}"
                )
            )
        if ranges_overlap(kind.span(a), kind.span(p)):
            raise ValueError(f"the state {key!r} of parameter {item.index} shares memory with the parameter")


def check_written(kind: ArrayKind, arrays: list[tuple[Any, Mapping[str, Any]]]) -> set[int]:
    """Refuse memory written twice (a state array shared by two parameters or by two slots of one, or one parameter's
    state being another parameter), which would give bits that depend on the order of the writes; and find the items
    whose gradient shares memory with what is written for another parameter (the kernel then reads a copy taken
    before anything is written, as the reference reads it).

    Args:
        arrays: per item, the state arrays it already has (new state has memory of its own).

    Returns:
        The positions (in ``arrays``) of the items whose gradient must be copied.

    Raises:
        ValueError: naming the two parameters and state slots that share memory.
    """
    spans = [
        (kind.span(a), k, name, a)
        for k, (item, slots) in enumerate(arrays)
        for name, a in [("", item.param), *slots.items(), ("grad", item.grad)]
    ]
    spans = sorted((s for s in spans if s[0][0] != s[0][1]), key=lambda s: s[0])
    copies: set[int] = set()
    reach: list[tuple[tuple[int, int], int, str, Any]] = []  # spans that may still overlap the next ones
    for span, k, name, a in spans:
        reach = [r for r in reach if r[0][1] > span[0]]
        for _, m, other, b in reach:
            if (name == "grad" and other == "grad") or not kind.shares_memory(a, b):
                continue
            if m == k:
                if {name, other} & {"", "grad"}:
                    continue  # a parameter with its own state or gradient: check_state, and the gradient's copy
            elif name == "grad" or other == "grad":
                copies.add(k if name == "grad" else m)
                continue
            first, second = sorted([(arrays[k][0].index, name), (arrays[m][0].index, other)])
            what = [f"the state {n!r} of parameter {i}" if n else f"parameter {i}" for i, n in (first, second)]
            raise ValueError(
                f"{what[0]} and {what[1]} share memory; each parameter and state array must have memory of its own"
            )
        reach.append((span, k, name, a))
    return copies


def check_overlaps(kind: ArrayKind, params: Sequence[Any], indices: Sequence[int]) -> None:
    """Two parameters that share memory would be updated in an order-dependent way: refuse them.

    Raises:
        ValueError: naming the first two parameters (by ``indices``) whose memory overlaps.
    """
    spans = sorted((kind.span(p), i, k) for k, (p, i) in enumerate(zip(params, indices)))
    active: list[tuple[tuple[int, int], int, int]] = []  # spans that may still overlap the next ones
    for span, i, k in spans:
        if span[0] == span[1]:
            continue
        active = [a for a in active if a[0][1] > span[0]]
        for _, j, m in active:  # bounds overlap; interleaved views (w[::2], w[1::2]) do not share an element
            if kind.shares_memory(params[k], params[m]):
                raise ValueError(
                    f"parameters {min(i, j)} and {max(i, j)} share memory; each parameter must have memory of its own"
                )
        active.append((span, i, k))
