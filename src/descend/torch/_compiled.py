"""``torch.compile`` of a ``descend.torch`` step: the whole step as one custom operator, ``descend::step``.

Under ``torch.compile`` (``torch.compile(lambda: opt.step())``, as torch's docs suggest for an optimizer step) the
front's :meth:`~descend.torch.Optimizer.step` does not trace the engine, which runs compiled C on tensors it reads by
address. It gathers what the step reads and writes and calls one operator, which Dynamo, AOTAutograd and Inductor see
as a node of the graph, so the step compiles with ``fullgraph=True`` and no graph break:

``descend::step(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] state, int optimizer, int[] layout, int[] counts,
Tensor values, Tensor[] tensors, bool grad_mode) -> ()``

- ``params``: every parameter with a gradient, group after group; ``grads``: their gradients; ``state``: every tensor
  of their state dicts (moments, ``step``, host scalars such as NAdam's ``mu_product``) in each dict's order, and
  ``counts`` how many each parameter has. The operator writes ``params`` and ``state`` in place and returns nothing;
  its fake implementation does nothing. The lists are filled by the optimizer's ``_init_group``, which Dynamo runs
  eagerly, as it runs torch's own optimizers' (it then marks the state tensors as static inputs and guards on the
  state's structure).
- ``optimizer``: the optimizer's ``id``, by which the operator finds it (:func:`register`).
- ``layout``, ``values``, ``tensors``: every group's hyperparameters as the trace read them, and its number of
  parameters with a gradient (see :mod:`descend.torch._op_values`).
- ``grad_mode``: whether gradients were enabled around the step. The operator runs under ``torch.no_grad()`` in the
  graph; a step that raises sets the mode back before the exception leaves it, which Dynamo's plain ``eager``
  backend would not do.

The operator covers every param group, so the step stays atomic and ``nan_policy="skip"`` skips every group. It runs
the eager step: the checks before any write, ``nan_policy``, the step counters and host scalars, the kernel or the
reference by the engine's rule, and each group's plan in its steady state, so the bits are the eager step's. Under
``torch.compile`` only:

- The first step, or any step where a parameter has no state yet, creates that state inside the operator (the graph
  holds no state tensors then). The state dict then changes, so Dynamo's guards fail on the next call and the step is
  compiled once more with the state as inputs, after which the graph is stable.
- A step that cannot be handed to the operator runs the eager step behind a graph break (``fullgraph=True`` refuses
  it): sparse gradients, DTensor parameters, a state value that is not a tensor, a hyperparameter value the operator
  cannot carry, an optimizer that runs a rule per group (MuonWithAdamW) or keeps low-bit state (``state_dtype``).
- The state tensors' version counters do not count a compiled step, as they do not count an eager kernel step (see
  :func:`_run`); the parameters' do, as AOTAutograd counts them.

Inductor hands the operator the optimizer's own tensors (it writes them in place); a backend that works on copies
(``aot_eager``) hands it copies, which the operator updates (:func:`_step_on`) and the backend then stores, with the
same bits.
"""

from __future__ import annotations

import operator
import weakref
from typing import TYPE_CHECKING, Any

import torch

from descend.engine import GroupWork, Item
from descend.torch._op_values import decode, encode
from descend.torch._options import group_backend

if TYPE_CHECKING:
    from descend.torch._optimizer import Optimizer

__all__ = ["gather", "register", "step"]

_LIVE: weakref.WeakValueDictionary[int, Optimizer] = weakref.WeakValueDictionary()

_LIB = torch.library.Library("descend", "FRAGMENT")
_LIB.define(
    "step(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] state, int optimizer, int[] layout, int[] counts, "
    "Tensor values, Tensor[] tensors, bool grad_mode) -> ()"
)

_NAMES: dict[type, tuple[str, ...]] = {}  # hyperparameter class -> its names, read by the trace


def register(opt: Optimizer) -> None:
    """Make ``opt`` reachable by the operator through its ``id`` (held weakly)."""
    _LIVE[id(opt)] = opt
    _NAMES.setdefault(opt.spec.hyperparams, opt.spec.hyperparams.names())


# -- the trace's side -------------------------------------------------------------------------------------------------


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
    # MuonWithAdamW's two rules, SparseAdam's gathered rows, low-bit state: the eager step
    if opt._rule_per_group or opt._eager_under_compile or opt._format is not None:
        return False
    names = _NAMES[opt.spec.hyperparams]
    for group in opt.param_groups:
        if not encode(group, names, layout, values, tensors):
            return False
        # Dynamo runs _init_group itself, eagerly, as for torch's optimizers (it then marks the state tensors as
        # tensors at fixed addresses and guards on the state), and takes what it put in the lists as graph inputs.
        group_params: list[torch.Tensor] = []
        group_grads: list[torch.Tensor] = []
        group_state: list[torch.Tensor] = []
        group_counts: list[int] = []
        if not opt._init_group(group, group_params, group_grads, group_state, group_counts):
            return False
        layout.append(len(group_params))
        params += group_params
        grads += group_grads
        state += group_state
        counts += group_counts
    grad_mode = torch.is_grad_enabled()
    with torch.no_grad():  # an inference graph, whose input mutations Inductor writes in place
        numbers = torch.tensor(values, dtype=torch.float64)
        torch.ops.descend.step(params, grads, state, id(opt), layout, counts, numbers, tensors, grad_mode)
    return True


def gather(
    opt: Optimizer,
    group: dict[str, Any],
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    state: list[torch.Tensor],
    counts: list[int],
) -> bool:
    """Put in the lists what ``descend::step`` reads and writes for ``group``: each parameter with a gradient, its
    gradient, its state tensors (in its state dict's order) and their number; False, with the lists empty, where the
    step cannot go through the operator (a sparse gradient, a DTensor parameter, a state value that is not a tensor).
    """
    dtensor = _dtensor_type()
    for p in group["params"]:
        g = p.grad
        if g is None:
            continue
        st = opt.state.get(p)
        own = [] if st is None else list(st.values())
        if (
            g.is_sparse
            or (dtensor is not None and isinstance(p, dtensor))
            or not all(isinstance(v, torch.Tensor) for v in own)
        ):
            del params[:], grads[:], state[:], counts[:]
            return False
        params.append(p)
        grads.append(g)
        state += own
        counts.append(len(own))
    return True


def _dtensor_type() -> Any:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover - a torch built without distributed
        return None
    return DTensor


# -- the operator -----------------------------------------------------------------------------------------------------


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
    grad_mode: bool,
) -> None:
    try:
        _step(params, grads, state, optimizer, layout, counts, values, tensors)
    except BaseException:
        torch.set_grad_enabled(grad_mode)
        raise


def _step(
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
        cls = opt.spec.hyperparams
        hps, sizes = decode(cls, _NAMES[cls], layout, values.tolist(), tensors)
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
                return
            seen = _SEEN[opt] = _Seen(params, state)
        _run(opt, hps, seen)


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


def _set_versions(tensors: list[torch.Tensor], versions: list[int]) -> None:
    try:
        torch._C._autograd._unsafe_set_version_counter(tensors, versions)
    except TypeError:  # torch before 2.6 sets one tensor's counter at a time
        for t, v in zip(tensors, versions):
            torch._C._autograd._unsafe_set_version_counter(t, v)


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
        _set_versions(state, seen.versions)
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
                opt._checked_grad(p, opt.spec)  # the copies have the metadata of the optimizer's own tensors
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
    grad_mode: bool,
) -> None:
    return None
