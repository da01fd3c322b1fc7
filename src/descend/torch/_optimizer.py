"""The ``torch.optim.Optimizer`` subclass every ``descend.torch`` class derives from.

Everything torch.optim's base class does (param groups, ``zero_grad``, ``state_dict``, hooks, schedulers, GradScaler,
ZeroRedundancyOptimizer) is inherited. This class adds the hyperparameters of an algorithm spec, their validation,
the step (handed to :class:`descend.engine.Engine`, with a recorded plan per param group in its steady state, see
:mod:`descend.engine.plan`; under ``torch.compile``, one custom operator, see :mod:`descend.torch._compiled`), a
checked ``load_state_dict`` and ``describe()``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch.optim.optimizer import _get_scalar_dtype

from descend.algorithms._spec import AlgorithmSpec, Hyperparams, HyperparamsCache
from descend.algorithms.conventions import check_convention
from descend.backends import check_backend
from descend.engine import Engine, GroupWork, Item, lowbit_step
from descend.engine.plan import build as build_plan
from descend.engine.torch_arrays import COMPLEX_DTYPES, FLOAT_DTYPES, TorchKind
from descend.lowbit import StateFormat
from descend.nonfinite import check_nan_policy
from descend.torch import _differentiable as torch_ops
from descend.torch import _formats
from descend.torch._compiled import gather as compiled_gather
from descend.torch._compiled import register as register_compiled
from descend.torch._compiled import step as compiled_step
from descend.torch._options import (
    HALF_DTYPES,
    SPARSE_GRADIENTS,
    TENSOR_BETAS,
    check_options,
    check_state_dtype,
    group_backend,
    signature_for,
)
from descend.torch._state_check import check_state_dict, identity_keys

__all__ = ["Optimizer"]


def _check_tensor_hyperparams(title: str, values: dict[str, Any], tensor_betas: bool) -> None:
    """torch's rules for ``lr`` and ``betas`` given as tensors, with its messages.

    A tensor ``lr`` (or beta) must have one element. Where torch's class takes tensor betas (Adam, AdamW:
    ``tensor_betas``), both betas are floats or both are tensors, and neither a tensor ``lr`` nor tensor betas go with
    ``foreach=True`` unless ``capturable=True`` (which descend refuses anyway), as in torch.

    Raises:
        ValueError: one of those rules is broken; the message is torch's, followed by the value.
    """
    lr = values.get("lr")
    betas = values.get("betas")
    foreach = values.get("foreach") and not values.get("capturable")
    items = [("lr", lr)]
    if isinstance(betas, (tuple, list)):
        items += [(f"betas[{i}]", b) for i, b in enumerate(betas)]
    for name, value in items:
        if not isinstance(value, torch.Tensor):
            continue
        if tensor_betas and foreach:
            raise ValueError(
                f"{title}: {name} as a Tensor is not supported for capturable=False and foreach=True; pass a float "
                f"{name}, or foreach=None or False (got {name}={value!r})"
            )
        if value.numel() != 1:
            raise ValueError(f"{title}: Tensor {name} must be 1-element, got one of shape {tuple(value.shape)}")
    if tensor_betas and isinstance(betas, (tuple, list)) and len(betas) == 2:
        if len({isinstance(b, torch.Tensor) for b in betas}) == 2:
            raise ValueError(
                f"{title}: betas must be either both floats or both Tensors, got ({betas[0]!r}, {betas[1]!r})"
            )


_TORCH = TorchKind()


class _SparseStep(Exception):
    """A sparse gradient reached an algorithm that takes it in torch operations: nothing was written yet."""


def _by_occurrence(items: list[Item]) -> list[list[Item]]:
    """The items in rounds: a tensor listed twice in a group (which torch.optim warns about and updates twice, one
    update after the other) has its second update in a second round. Usually one round, all the items."""
    if len({id(item.param) for item in items}) == len(items):
        return [items]
    rounds: list[list[Item]] = []
    seen: dict[int, int] = {}
    for item in items:
        r = seen.get(id(item.param), 0)
        seen[id(item.param)] = r + 1
        rounds += [[] for _ in range(r + 1 - len(rounds))]
        # the state of a later round is the one the earlier round stores, so it is read when that round runs
        rounds[r].append(item)
    return rounds


class Optimizer(torch.optim.Optimizer):
    """Base of the ``descend.torch`` optimizers. A subclass names its spec and, where torch.optim has the same rule,
    torch's argument order (``torch_order``); its signature follows (see :func:`descend.torch._options.signature_for`).

    Args:
        params: an iterable of tensors, of ``(name, tensor)`` pairs, or of param-group dicts, as in torch.optim.
        *args: the algorithm's hyperparameters and torch's ``foreach``/``fused``/``capturable``/``differentiable``,
            in the positions torch.optim's class takes them (see the class signature).
        **kwargs: the same by name, then descend's extra flags (keyword-only), and two more keywords:
            ``convention``, a preset of defaults and flags (``"torch"``, ``"optax"``, ``"keras"``, ``"paper"``,
            ``"article"``) that arguments given explicitly override; ``backend``, ``"auto"``, ``"reference"``,
            ``"fused"`` or ``"foreach"`` (see :mod:`descend.backends`, and :mod:`descend.torch._options` for how
            ``foreach`` and ``fused`` refine it); ``nan_policy`` (see :mod:`descend.nonfinite`); and
            ``state_dtype``, None (the state takes each parameter's dtype, as in torch), ``torch.float32`` (bfloat16
            and float16 parameters keep their state in float32; the update is computed in float32 either way), or a
            low-bit format for float32, bfloat16 and float16 parameters: ``torch.bfloat16``, ``"bfloat16"``,
            ``"blockwise8"`` or a :class:`descend.StateFormat` (see :mod:`descend.lowbit`).
    """

    spec: ClassVar[AlgorithmSpec]
    __signature__: ClassVar[inspect.Signature]
    _options: ClassVar[dict[str, Any]] = {}  # torch's compatibility options and their defaults
    _fixed: ClassVar[dict[str, Any]] = {}  # group keys torch sets regardless of arguments (AdamW's decoupling)
    _identity: ClassVar[tuple[frozenset[str], frozenset[str]]] = (frozenset(), frozenset())
    _eager_state: ClassVar[bool] = False  # torch's Adagrad creates its state in the constructor
    torch_order: ClassVar[tuple[str, ...] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        spec = cls.__dict__.get("spec")
        if spec is None:
            return
        signature, options = signature_for(spec, cls.torch_order)
        positional = tuple(
            p.name for p in signature.parameters.values() if p.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD
        )
        cls.__signature__ = signature
        cls._options = options
        cls._identity = identity_keys(spec, positional, tuple(cls._fixed))
        if not cls.__doc__:
            kinship = (
                f"A ``torch.optim.Optimizer`` with the signature, state and state_dict layout of "
                f"``torch.optim.{spec.torch_name}``."
                if spec.torch_name
                else "A ``torch.optim.Optimizer`` with no torch.optim counterpart: its signature comes from its "
                "hyperparameters, and its state_dict uses torch's layout with its own state keys."
            )
            cls.__doc__ = (
                f"{spec.title} for torch tensors: {spec.summary}.\n\n{kinship} The rule, its flags and references "
                f"are documented in :mod:`{spec.module.__name__}`; ``describe()`` prints the rule in force. See "
                ":class:`descend.torch.Optimizer` for the arguments shared by every optimizer."
            )

    def __init__(self, params: Any, *args: Any, **kwargs: Any) -> None:
        try:
            bound = type(self).__signature__.bind(params, *args, **kwargs)
        except TypeError as exc:
            names = ", ".join(p for p in type(self).__signature__.parameters if p != "params")
            raise TypeError(f"{type(self).__name__}: {exc}; its arguments are {names}") from None
        explicit = dict(bound.arguments)
        explicit.pop("params")
        self.convention = check_convention(explicit.pop("convention", "torch"))
        self.backend = check_backend(explicit.pop("backend", "auto"))
        self.nan_policy = check_nan_policy(explicit.pop("nan_policy", "propagate"))
        self.state_dtype = check_state_dtype(type(self).__name__, explicit.pop("state_dtype", None))
        self._hps = HyperparamsCache(self.spec.hyperparams)
        self._engine = self._new_engine()
        options = {name: explicit.pop(name, default) for name, default in self._options.items()}
        check_options(type(self).__name__, options)
        group_backend(self.backend, options)
        _check_tensor_hyperparams(type(self).__name__, {**explicit, **options}, self.spec.torch_name in TENSOR_BETAS)
        self.spec.make(self.convention, **explicit)  # validates; the raw values are kept, as torch keeps them
        defaults = {**self.spec.defaults(self.convention), **explicit, **options, **self._fixed}
        if isinstance(self.state_dtype, StateFormat):
            defaults[_formats.GROUP_KEY] = _formats.record(self.state_dtype)
        super().__init__(params, defaults)

    # -- groups ---------------------------------------------------------------------------------------------------

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group, as torch.optim does, after checking its hyperparameters and options.

        Raises:
            ValueError, TypeError: a hyperparameter or option of the group is invalid; the group is not added.
        """
        title = type(self).__name__
        if isinstance(param_group, dict):
            merged = {**self.defaults, **param_group}
            check_options(title, {k: merged.get(k) for k in self._options})
            group_backend(self.backend, merged)
            _check_tensor_hyperparams(title, merged, self.spec.torch_name in TENSOR_BETAS)
            self.spec.hyperparams.from_group(merged)
        super().add_param_group(param_group)
        self._check_shapes(self.spec, self.param_groups[-1])
        if self._eager_state:
            self._init_state(self.param_groups[-1])

    def _check_shapes(self, spec: AlgorithmSpec, group: dict[str, Any]) -> None:
        """Refuse the group just added if a parameter has a shape ``spec`` does not take (Muon's 2-D, with torch's
        message); the group is removed again first."""
        try:
            for p in group["params"]:
                spec.check_shape(tuple(p.shape), p.size())
        except ValueError:
            self.param_groups.remove(group)
            raise

    _rule_per_group = False  # True where _group_rule is overridden: the step under torch.compile is then eager
    _eager_under_compile = False  # True where the step is the class's own (SparseAdam's rows): eager under compile
    dense_gradients: ClassVar[bool] = True  # False: step() takes sparse gradients only (SparseAdam, as torch's)

    def _group_rule(self, group: dict[str, Any]) -> tuple[AlgorithmSpec | None, Hyperparams]:
        """The algorithm a param group runs, None for the class's own (the engine's), and its validated
        hyperparameters. An optimizer that runs different algorithms on different groups overrides this."""
        return None, self._hps.get(group)

    def _reset_caches(self) -> None:
        self._hps = HyperparamsCache(self.spec.hyperparams)

    @property
    def _format(self) -> StateFormat | None:
        return self.state_dtype if isinstance(self.state_dtype, StateFormat) else None

    def _new_engine(self) -> Engine:
        self._plans: dict[int, Any] = {}
        register_compiled(self)
        return Engine(
            self.spec,
            _TORCH,
            lambda: self.state,
            nan_policy=self.nan_policy,
            state_dtype=None if self._format else self.state_dtype,
            fmt=self._format,
            threads=torch.get_num_threads,
        )

    @property
    def skipped_steps(self) -> int:
        """How many steps ``nan_policy="skip"`` skipped."""
        return self._engine.skipped_steps

    @skipped_steps.setter
    def skipped_steps(self, value: int) -> None:
        self._engine.skipped_steps = value

    def _init_state(self, group: dict[str, Any]) -> None:
        hp = self.spec.hyperparams.from_group(group)
        fmt = self._format
        for p in group["params"]:
            state = self.state[p]
            if not state:
                state["step"] = torch.tensor(0.0, dtype=_get_scalar_dtype())
                if fmt is not None and lowbit_step.applies(_TORCH, p):
                    keys = list(lowbit_step.expected_keys(self.spec, hp, fmt, _TORCH.dtype_name(p)))
                    state.update(lowbit_step.new_state(_TORCH, self.spec, p, hp, fmt, keys))
                    continue
                slots = list(self.spec.slots_for(hp, tuple(p.shape)))
                state.update(_TORCH.new_state(self.spec, p, hp, slots, None if fmt else self.state_dtype))

    # -- the step -------------------------------------------------------------------------------------------------

    def _checked_grad(self, p: torch.Tensor, spec: AlgorithmSpec) -> torch.Tensor:
        g = p.grad
        title = type(self).__name__
        if g.is_sparse and spec.name in SPARSE_GRADIENTS:
            raise _SparseStep
        if g.is_sparse:
            raise RuntimeError(
                f"{title} does not support sparse gradients; "
                + (
                    "use torch.optim.SparseAdam or dense ones"
                    if spec.name not in SPARSE_GRADIENTS
                    else "a sparse gradient takes the step in torch operations, which this one did not reach"
                )
            )
        # a rule that reads each parameter whole has no real view of a complex one (torch's words); a DTensor of which
        # this process holds only a piece is refused by the engine, which names the parameter and its placements
        if spec.whole_tensor and p.dtype in COMPLEX_DTYPES:
            raise RuntimeError(f"{spec.title} does not support complex parameters")
        if p.dtype not in FLOAT_DTYPES and p.dtype not in COMPLEX_DTYPES:
            raise TypeError(
                f"{title} updates float32, float64, bfloat16, float16, complex64 and complex128 parameters; got one of "
                f"dtype {p.dtype}"
            )
        if g.dtype != p.dtype or g.shape != p.shape:
            raise ValueError(
                f"a gradient of dtype {g.dtype} and shape {tuple(g.shape)} was found for a parameter of dtype "
                f"{p.dtype} and shape {tuple(p.shape)}; they must match"
            )
        return g

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient, and return the closure's loss (or None).

        Everything that can be refused (hyperparameters, gradients, state) is checked before any tensor changes, so
        a step that raises changes nothing. A group in its steady state runs from its plan
        (:mod:`descend.engine.plan`); any other takes the engine's general path, which then records a plan for the
        next step. Two threads stepping the same optimizer run one after the other. A step with a group of
        ``differentiable=True``, or with a sparse gradient for SGD or Adagrad, runs in torch operations instead (see
        :mod:`descend.torch._differentiable`). Under ``torch.compile`` the step is one custom operator in the graph,
        which runs this same step (see :mod:`descend.torch._compiled`).
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        differentiable = "differentiable" in self._options  # a class without torch's option ignores the key, as torch
        if differentiable and any(group.get("differentiable") for group in self.param_groups):  # _differentiable
            self._refuse_format("differentiable=True")
            with self._engine.lock:
                torch_ops.step(self)
            return loss
        if not torch.compiler.is_compiling():
            self._eager_step()
        elif not compiled_step(self):  # under torch.compile: one custom operator, see descend.torch._compiled
            self._untraced_step()
        return loss

    def _eager_step(self) -> None:
        try:
            self._engine_step()
        except _SparseStep:  # SGD and Adagrad take sparse gradients in torch operations, as torch does
            self._refuse_format("a sparse gradient")
            with self._engine.lock:
                torch_ops.step(self)

    def _refuse_format(self, what: str) -> None:
        if self._format is not None:
            raise ValueError(
                f"{type(self).__name__} with state_dtype={self._format!r} cannot take {what}: a low-bit state "
                "format runs in descend's own step; use state_dtype=None for this optimizer"
            )

    def _init_group(self, group: dict[str, Any], *lists: list) -> bool:
        """Under torch.compile: what the custom operator reads and writes for ``group``, put in ``lists``. Dynamo runs
        this method eagerly for any ``torch.optim.Optimizer``, as it does torch's own (see descend.torch._compiled)."""
        return compiled_gather(self, group, *lists)

    # A step the custom operator cannot take runs as it is under torch.compile (a graph break), instead of Dynamo
    # tracing into the engine's C calls.
    _untraced_step = torch.compiler.disable(_eager_step)

    def _engine_step(self, hps: list[Any] | None = None) -> None:
        """The engine's step of every group, with each group's validated hyperparameters (``hps``, as the compiled
        step read them) or, by default, those its param group holds now."""
        engine = self._engine
        checks = self.nan_policy != "propagate"
        with engine.lock, torch.no_grad():
            rounds: list[list[GroupWork]] = [[]]
            offset = 0
            for i, group in enumerate(self.param_groups):
                # the compiled step runs only optimizers with one rule for every group (see descend.torch._compiled)
                rule, hp = self._group_rule(group) if hps is None else (None, hps[i])
                spec = rule or self.spec
                backend = group_backend(self.backend, group)
                plan = self._plans.get(id(group))
                prepared = plan.prepare(self.state, group, hp, offset, checks) if plan is not None else None
                if prepared is not None:
                    rounds[0].append(GroupWork(hp, backend, prepared=prepared, spec=rule))
                else:
                    self._plans.pop(id(group), None)
                    items = [
                        Item(p, p, self._checked_grad(p, spec), self.state.get(p), offset + k)
                        for k, p in enumerate(group["params"])
                        if p.grad is not None
                    ]
                    parts = _by_occurrence(items)
                    if self._format is not None and items and len(parts) == 1:  # low-bit state: its steady step
                        prepared = engine.prepare_uniform(
                            hp,
                            backend,
                            [item.param for item in items],
                            [item.grad for item in items],
                            [item.state for item in items],
                            [item.index for item in items],
                            rule,
                        )
                        if prepared is not None:
                            rounds[0].append(GroupWork(hp, backend, items, prepared=prepared, spec=rule))
                            offset += len(group["params"])
                            continue
                    rounds += [[] for _ in range(len(parts) - len(rounds))]
                    for r, part in enumerate(parts):
                        done = self._planner(group, hp, backend, spec) if r == len(parts) - 1 else None
                        rounds[r].append(GroupWork(hp, backend, part, on_done=done, spec=rule))
                offset += len(group["params"])
            for work in rounds:
                if not engine.step(work):
                    break  # nan_policy="skip": a later round holds second occurrences of this one's parameters only

    def _planner(self, group: dict[str, Any], hp: Any, backend: str, spec: AlgorithmSpec) -> Callable[[], None] | None:
        if self._format is not None:  # a plan records float state of the kernels' own combinations
            return None

        def record() -> None:
            plan = build_plan(self.state, spec, hp, group, backend)
            if plan is not None:
                self._plans[id(group)] = plan

        return record

    # -- inspection and persistence -------------------------------------------------------------------------------

    def describe(self) -> str:
        """The rule in force for each param group, with its current hyperparameters, as plain text."""
        texts = []
        for i, group in enumerate(self.param_groups):
            rule, hp = self._group_rule(group)
            text = (rule or self.spec).describe(hp, self.convention)
            texts.append(text if len(self.param_groups) == 1 else f"param group {i}:\n{text}")
        return "\n\n".join(texts)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state_dict saved by this class or by the torch.optim class with the same rule.

        The state_dict is checked whole first; a state_dict of another optimizer class, with other group sizes or
        with state of other shapes is refused with a ValueError and nothing changes. Keys a saved group lacks (descend's
        extra flags, in a state_dict saved by torch.optim) keep this optimizer's current values, and so do torch's
        implementation options (``foreach``, ``fused``, ``capturable``, ``differentiable``): they choose how this
        optimizer runs, not what it computes, so a state_dict saved by a fused or capturable torch optimizer loads.
        """
        if not isinstance(state_dict, dict) or not isinstance(state_dict.get("param_groups"), list):
            raise ValueError(f"a state_dict must be a dict with 'state' and 'param_groups' keys, got {state_dict!r}")
        filled = []
        for mine, theirs in zip(self.param_groups, state_dict["param_groups"]):
            if not isinstance(theirs, dict):
                raise ValueError(f"a saved param group must be a dict, got {type(theirs).__name__}")
            own = {k: v for k, v in mine.items() if k != "params"}
            options = {k: mine[k] for k in self._options if k in mine}
            filled.append({**own, **theirs, **options, **self._fixed})
        fmt = self._check_loadable(state_dict, filled)
        super().load_state_dict({**state_dict, "param_groups": filled})
        if fmt is not None:
            self.state_dtype = fmt
            self._engine.fmt = fmt
            for group in self.param_groups:
                group[_formats.GROUP_KEY] = _formats.record(fmt)
            self.defaults[_formats.GROUP_KEY] = _formats.record(fmt)
            _formats.restore(self, state_dict, fmt)
        elif self.state_dtype is not None:
            self._restore_state_dtype(state_dict)

    def _check_loadable(self, state_dict: dict[str, Any], filled: list[dict[str, Any]]) -> StateFormat | None:
        """Raise a ValueError if ``state_dict`` (its groups completed as ``filled``) does not fit this optimizer;
        return the low-bit state format it was saved with (None: float state)."""
        title = type(self).__name__
        fmt = _formats.check_saved_format(title, self._format, state_dict["param_groups"])
        check_state_dict(self.spec, title, self.param_groups, state_dict, self._identity, filled=filled, fmt=fmt)
        return fmt

    def _restore_state_dtype(self, state_dict: dict[str, Any]) -> None:
        """torch's loader casts every floating state tensor to its parameter's dtype; with ``state_dtype`` the state
        of bfloat16 and float16 parameters is taken again from the saved tensors, in float32 and unrounded."""
        saved_ids = [i for group in state_dict["param_groups"] for i in group["params"]]
        params = [p for group in self.param_groups for p in group["params"]]
        for saved_id, p in zip(saved_ids, params):
            saved = state_dict["state"].get(saved_id)
            if p.dtype not in HALF_DTYPES or not isinstance(saved, dict):
                continue
            for key, value in saved.items():
                if key != "step" and isinstance(value, torch.Tensor) and value.is_floating_point():
                    self.state[p][key] = value.to(device=p.device, dtype=self.state_dtype, copy=True)

    def __getstate__(self) -> dict[str, Any]:
        extra = {
            "convention": self.convention,
            "backend": self.backend,
            "nan_policy": self.nan_policy,
            "state_dtype": self.state_dtype,
        }
        state = {**super().__getstate__(), **extra, "skipped_steps": self.skipped_steps}
        state.pop("_engine", None)
        state.pop("_plans", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("convention", getattr(self, "convention", "torch"))
        state.setdefault("backend", getattr(self, "backend", "auto"))
        state.setdefault("nan_policy", getattr(self, "nan_policy", "propagate"))
        state.setdefault("state_dtype", getattr(self, "state_dtype", None))
        skipped = state.pop("skipped_steps", 0)
        super().__setstate__(state)
        self._reset_caches()
        self._engine = self._new_engine()
        self._engine.skipped_steps = skipped
        for group in self.param_groups:
            for key, value in self._group_defaults(group).items():
                group.setdefault(key, value)
            group.update(self._fixed)

    def _group_defaults(self, group: dict[str, Any]) -> dict[str, Any]:
        """The keys a param group has by default (filled into a group unpickled from an older version)."""
        return {**self.defaults, **self._fixed}
