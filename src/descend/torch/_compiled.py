"""``torch.compile`` of a ``descend.torch`` step: the whole step as one custom operator, ``descend::step``.

Under ``torch.compile`` (``torch.compile(lambda: opt.step())``, as torch's docs suggest for an optimizer step) the
front's :meth:`~descend.torch.Optimizer.step` does not trace the engine, which runs compiled C on tensors it reads by
address. It gathers what the step reads and writes, and calls one operator that Dynamo, AOTAutograd and Inductor see
as a node of the graph, so the step compiles with ``fullgraph=True`` and no graph break:

``descend::step(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] state, int optimizer, int[] layout,
float[] values, Tensor[] tensors) -> ()``

- ``params``: every parameter that has a gradient, group after group; ``grads``: their gradients.
- ``state``: every tensor of their state dicts (moments, ``step``, host scalars such as NAdam's ``mu_product``), in
  each dict's order. The operator writes ``params`` and ``state`` in place and returns nothing; its fake
  implementation does nothing.
- ``optimizer``: the optimizer's ``id``, by which the operator finds it (:func:`register`).
- ``layout``, ``values``, ``tensors``: the groups' sizes, the number of state tensors of each parameter, and every
  group's hyperparameters as the trace read them: numbers in ``values`` (so Dynamo guards on them, and a new float
  ``lr`` compiles the step again, as it does for torch's optimizers), tensors (a tensor ``lr``, tensor ``betas``) in
  ``tensors`` (a scheduler filling a tensor ``lr`` recompiles nothing).

The operator runs the eager step: the checks before any write (a step that raises changes nothing), ``nan_policy``,
the step counters and host scalars, the kernel or the reference by the engine's rule, and the group's plan in its
steady state, so the bits are the eager step's. Two things differ from eager, both only under ``torch.compile``:

- The first step, or any step where a parameter has no state yet, creates that state inside the operator (the graph
  holds no state tensors then). The state dict then changes, so Dynamo's guards fail on the next call and the step is
  compiled once more with the state in place: one recompile, after which the graph is stable.
- A step that Dynamo cannot hand to the operator runs as it does eagerly, through a graph break (``fullgraph=True``
  then fails): sparse gradients, DTensor parameters, a state value that is not a tensor, or a hyperparameter of a type
  the operator cannot carry.

The operator receives the optimizer's own tensors when Inductor writes them in place, which it does for this graph;
with a backend that works on copies instead (``aot_eager``) it updates the copies, which the backend then stores,
with the same bits.
"""

from __future__ import annotations

import operator
import weakref
from typing import TYPE_CHECKING, Any

import torch

from descend.engine import GroupWork, Item
from descend.torch._options import group_backend

if TYPE_CHECKING:
    from descend.torch._optimizer import Optimizer

__all__ = ["register", "step"]

_LIVE: weakref.WeakValueDictionary[int, Optimizer] = weakref.WeakValueDictionary()

_LIB = torch.library.Library("descend", "FRAGMENT")
_LIB.define(
    "step(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] state, int optimizer, int[] layout, int[] counts, "
    "Tensor values, Tensor[] tensors) -> ()"
)

# Codes for the hyperparameter values in ``layout`` (each followed by what it needs) and ``values``.
_ABSENT, _BOOL, _INT, _FLOAT, _TENSOR, _NONE, _STR, _TUPLE, _LIST = range(9)
_PLAIN = (bool, int, float)


_NAMES: dict[type, tuple[str, ...]] = {}  # hyperparameter class -> its names, read by the trace


def register(opt: Optimizer) -> None:
    """Make ``opt`` reachable by the operator through its ``id`` (held weakly)."""
    _LIVE[id(opt)] = opt
    _NAMES.setdefault(opt.spec.hyperparams, opt.spec.hyperparams.names())


# -- the trace's side -------------------------------------------------------------------------------------------------


def _encode(value: Any, layout: list[int], values: list[float], tensors: list[torch.Tensor]) -> bool:
    """Append ``value``'s codes; False if the operator cannot carry it."""
    if isinstance(value, torch.Tensor):
        layout.append(_TENSOR)
        tensors.append(value)
    elif value is None:
        layout.append(_NONE)
    elif isinstance(value, bool):
        layout.append(_BOOL)
        values.append(1.0 if value else 0.0)
    elif isinstance(value, int) and abs(value) < 2**53:
        layout.append(_INT)
        values.append(float(value))
    elif isinstance(value, float):
        layout.append(_FLOAT)
        values.append(value)
    elif isinstance(value, str):
        layout += [_STR, len(value), *(ord(c) for c in value)]
    elif isinstance(value, (tuple, list)):
        layout += [_TUPLE if isinstance(value, tuple) else _LIST, len(value)]
        for v in value:
            if not _encode(v, layout, values, tensors):
                return False
    else:
        return False
    return True


def step(opt: Optimizer) -> bool:
    """Under tracing: call ``descend::step`` for the whole step of ``opt``; False, having traced nothing, where the
    step cannot go through the operator (see the module docstring)."""
    params: list[torch.Tensor] = []
    grads: list[torch.Tensor] = []
    state: list[torch.Tensor] = []
    layout: list[int] = [len(opt.param_groups)]
    counts: list[int] = []
    values: list[float] = []
    tensors: list[torch.Tensor] = []
    names = _NAMES[opt.spec.hyperparams]
    dtensor = _dtensor_type()
    for group in opt.param_groups:
        for name in names:
            if name not in group:
                layout.append(_ABSENT)
            elif not _encode(group[name], layout, values, tensors):
                return False
        members = [p for p in group["params"] if p.grad is not None]
        layout.append(len(members))
        for p in members:
            if p.grad.is_sparse or (dtensor is not None and isinstance(p, dtensor)):
                return False
            st = opt.state.get(p)
            own = [] if st is None else list(st.values())
            if not all(isinstance(v, torch.Tensor) for v in own):
                return False
            params.append(p)
            grads.append(p.grad)
            state += own
            counts.append(len(own))
    with torch.no_grad():
        numbers = torch.tensor(values, dtype=torch.float64)
        torch.ops.descend.step(params, grads, state, id(opt), layout, counts, numbers, tensors)
    return True


def _dtensor_type() -> Any:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover - a torch built without distributed
        return None
    return DTensor


# -- the operator -----------------------------------------------------------------------------------------------------


class _Reader:
    """Reads back what :func:`_encode` wrote."""

    def __init__(self, layout: list[int], values: list[float], tensors: list[torch.Tensor]) -> None:
        self.layout, self.values, self.tensors = layout, values, tensors
        self.at = self.value_at = self.tensor_at = 0

    def code(self) -> int:
        self.at += 1
        return self.layout[self.at - 1]

    def value(self) -> Any:
        code = self.code()
        if code in (_BOOL, _INT, _FLOAT):
            self.value_at += 1
            number = self.values[self.value_at - 1]
            return bool(number) if code == _BOOL else int(number) if code == _INT else number
        if code == _TENSOR:
            self.tensor_at += 1
            return self.tensors[self.tensor_at - 1]
        if code == _NONE:
            return None
        if code == _STR:
            return "".join(chr(self.code()) for _ in range(self.code()))
        items = [self.value() for _ in range(self.code())]
        return tuple(items) if code == _TUPLE else items


_VALIDATED: dict[tuple, list] = {}  # (class, codes, numbers) -> validated hyperparameters, for values without tensors


def _decode(opt: Optimizer, layout: list[int], values: list[float], tensors: list[torch.Tensor]) -> tuple[list, list]:
    """Every group's validated hyperparameters (validated once for each set of values that holds no tensor) and its
    number of parameters with a gradient, as the trace read them."""
    key = (opt.spec.hyperparams, tuple(layout), tuple(values)) if not tensors else None
    known = _VALIDATED.get(key) if key is not None else None
    if known is not None:
        return known
    reader = _Reader(layout, values, tensors)
    hps, sizes = [], []
    for _ in range(reader.code()):
        found = {}
        for name in _NAMES[opt.spec.hyperparams]:
            if reader.layout[reader.at] == _ABSENT:
                reader.at += 1
            else:
                found[name] = reader.value()
        hps.append(opt.spec.hyperparams.from_group(found))
        sizes.append(reader.code())
    if key is not None:
        if len(_VALIDATED) >= 256:  # a float lr that changes every step compiles a graph for each value anyway
            _VALIDATED.clear()
        _VALIDATED[key] = [hps, sizes]
    return [hps, sizes]


class _Seen:
    """The tensors a compiled step of an optimizer was last called with, found to be its own, and the versions of its
    state tensors after that step (see :func:`_run`)."""

    __slots__ = ("bumped", "params", "state", "versions")

    def __init__(self, params: list[torch.Tensor], state: list[torch.Tensor]) -> None:
        self.params, self.state = params, state
        self.versions: list[int] | None = None
        self.bumped: list[int] | None = None


_SEEN: weakref.WeakKeyDictionary[Optimizer, _Seen] = weakref.WeakKeyDictionary()


_VALIDATED: dict[tuple, list] = {}  # (class, codes, numbers) -> validated hyperparameters, for values without tensors


def _decode(opt: Optimizer, layout: list[int], values: list[float], tensors: list[torch.Tensor]) -> tuple[list, list]:
    """Every group's validated hyperparameters (validated once for each set of values that holds no tensor) and its
    number of parameters with a gradient, as the trace read them."""
    key = (opt.spec.hyperparams, tuple(layout), tuple(values)) if not tensors else None
    known = _VALIDATED.get(key) if key is not None else None
    if known is not None:
        return known
    reader = _Reader(layout, values, tensors)
    hps, sizes = [], []
    for _ in range(reader.code()):
        found = {}
        for name in _NAMES[opt.spec.hyperparams]:
            if reader.layout[reader.at] == _ABSENT:
                reader.at += 1
            else:
                found[name] = reader.value()
        hps.append(opt.spec.hyperparams.from_group(found))
        sizes.append(reader.code())
    if key is not None:
        if len(_VALIDATED) >= 256:  # a float lr that changes every step compiles a graph for each value anyway
            _VALIDATED.clear()
        _VALIDATED[key] = [hps, sizes]
    return [hps, sizes]


class _Seen:
    """The tensors a compiled step of an optimizer was last called with, found to be its own, and the versions of its
    state tensors after that step (see :func:`_run`)."""

    __slots__ = ("bumped", "params", "state", "versions")

    def __init__(self, params: list[torch.Tensor], state: list[torch.Tensor]) -> None:
        self.params, self.state = params, state
        self.versions: list[int] | None = None
        self.bumped: list[int] | None = None


_SEEN: weakref.WeakKeyDictionary[Optimizer, _Seen] = weakref.WeakKeyDictionary()


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """``a`` is ``b``, or a tensor over the same memory with the same layout."""
    return a is b or (
        type(a) is type(b)
        and a.device == b.device
        and a.dtype == b.dtype
        and a.shape == b.shape
        and a.stride() == b.stride()
        and a.data_ptr() == b.data_ptr()
    )


def _impl(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    state: list[torch.Tensor],
    optimizer: int,
    layout: list[int],
    counts: list[int],
    values: torch.Tensor,
    tensors: list[torch.Tensor],
) -> None:
    opt = _LIVE.get(optimizer)
    if opt is None:
        raise RuntimeError(f"descend::step was called for optimizer {optimizer}, which no longer exists")
    with opt._engine.lock:
        hps, sizes = _decode(opt, layout, values.tolist(), tensors)
        seen = _SEEN.get(opt)
        if (
            seen is None
            or len(params) != len(seen.params)
            or len(state) != len(seen.state)
            or not all(map(operator.is_, params, seen.params))
            or not all(map(operator.is_, state, seen.state))
        ):
            members = _members(opt, sizes, counts, len(params))
            own = [p for now in members for p in now]
            flat = [t for p in own if p in opt.state for t in opt.state[p].values()]
            if not (all(map(_same, params, own)) and all(map(_same, state, flat))):
                _step_on(opt, hps, members, params, grads, state)
                _mark_static(opt, own)
                return
            seen = _SEEN[opt] = _Seen(params, state)
            _run(opt, hps, seen)
            _mark_static(opt, own)
        else:
            _run(opt, hps, seen)


def _mark_static(opt: Optimizer, params: list[torch.Tensor]) -> None:
    """Mark the state tensors of ``params`` as tensors at a fixed address, as Dynamo marks the state of torch's own
    optimizers: the next trace guards on their identity, and the compiled step reads them with less work per call."""
    for p in params:
        for value in opt.state[p].values() if p in opt.state else ():
            if isinstance(value, torch.Tensor) and not hasattr(value, "_dynamo_static_input_type"):
                torch._dynamo.mark_static_address(value, guard=True)


def _members(opt: Optimizer, sizes: list[int], counts: list[int], total: int) -> list[list[torch.Tensor]]:
    """Each group's parameters with a gradient, checked against the layout the operator was called with."""
    members = [[p for p in group["params"] if p.grad is not None] for group in opt.param_groups]
    own = [p for now in members for p in now]
    if (
        [len(now) for now in members] != sizes
        or len(own) != total
        or [len(opt.state[p]) if p in opt.state else 0 for p in own] != counts
    ):
        raise RuntimeError(
            f"descend::step was called with a layout of {type(opt).__name__}'s param groups, gradients or state that "
            "is not the optimizer's current one; the compiled graph is out of date"
        )
    return members


def _run(opt: Optimizer, hps: list[Any], seen: _Seen) -> None:
    """The eager step on the optimizer's own tensors.

    The compiled graph counts the operator's writes in the version counter of every tensor it writes, after the
    operator returns, where the eager step's kernel does not count its own. A group's plan records its state tensors'
    versions and takes a changed version for a changed tensor, so the one count the graph added since the last step
    is taken back first: only when every state tensor is exactly one count past the version it had when the last
    compiled step ended, so that a change made between steps is still seen.
    """
    state = seen.state
    if seen.bumped is not None and [t._version for t in state] == seen.bumped:
        torch._C._autograd._unsafe_set_version_counter(state, seen.versions)
    plans = list(opt._plans.values())
    opt._engine_step(hps)
    if seen.versions is None or list(opt._plans.values()) != plans:  # a step off the plan may have counted writes
        seen.versions = [t._version for t in state]
        seen.bumped = [v + 1 for v in seen.versions]


def _step_on(
    opt: Optimizer,
    hps: list[Any],
    members: list[list[torch.Tensor]],
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    state: list[torch.Tensor],
) -> None:
    """The eager step on tensors that stand for the optimizer's own (copies a backend made), writing into them; state
    created for a parameter that had none goes to the optimizer, as the eager step's does."""
    from descend.torch._optimizer import _by_occurrence

    engine = opt._engine
    with engine.lock, torch.no_grad():
        rounds: list[list[GroupWork]] = [[]]
        made: list[tuple[dict, dict]] = []
        at = at_state = offset = 0
        for group, hp, now in zip(opt.param_groups, hps, members):
            positions = {id(p): k for k, p in enumerate(group["params"])}
            items = []
            for p in now:
                keys = list(opt.state[p]) if p in opt.state else []
                st = dict(zip(keys, state[at_state : at_state + len(keys)])) if keys else None
                opt._checked_grad(p)  # the copies have the metadata of the optimizer's own tensors
                if st is not None:
                    made.append((opt.state[p], st))
                items.append(Item(p, params[at], grads[at], st, offset + positions[id(p)]))
                at, at_state = at + 1, at_state + len(keys)
            backend = group_backend(opt.backend, group)
            parts = _by_occurrence(items)
            rounds += [[] for _ in range(len(parts) - len(rounds))]
            for r, part in enumerate(parts):
                rounds[r].append(GroupWork(hp, backend, part))
            offset += len(group["params"])
        for work in rounds:
            engine.step(work)
        for own, st in made:  # a slot the step added (AMSGrad switched on): the optimizer keeps it
            for key, value in st.items():
                own.setdefault(key, value)


_LIB.impl("step", _impl, "CompositeExplicitAutograd")


@torch.library.register_fake("descend::step", lib=_LIB)
def _fake(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    state: list[torch.Tensor],
    optimizer: int,
    layout: list[int],
    counts: list[int],
    values: torch.Tensor,
    tensors: list[torch.Tensor],
) -> None:
    return None
