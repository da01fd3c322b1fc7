"""The ``torch.optim.Optimizer`` subclass every ``descend.torch`` class is made from.

Everything torch.optim's base class does (param groups, ``zero_grad``, ``state_dict``, hooks, schedulers, GradScaler,
ZeroRedundancyOptimizer) is inherited. This class adds the hyperparameters of an algorithm spec, their validation,
the step (which computes the host scalars and hands each group to :func:`descend.torch._dispatch.run_group`), a
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
from descend.nonfinite import check_nan_policy, first_nonfinite, refusal
from descend.torch._dispatch import DTYPE_NAMES, FLOAT_DTYPES, plain, run_group
from descend.torch._memory import in_huge_pages
from descend.torch._options import HALF_DTYPES, check_options, check_state_dtype, group_backend
from descend.torch._plan import build as build_plan
from descend.torch._state_check import check_state_dict

__all__ = ["Optimizer"]


def _check_tensor_hyperparams(title: str, values: dict[str, Any]) -> None:
    """torch accepts ``lr`` and ``betas`` as tensors of one element; anything bigger is a ValueError, as in torch."""
    items = [("lr", values.get("lr"))]
    betas = values.get("betas")
    if isinstance(betas, (tuple, list)):
        items += [(f"betas[{i}]", b) for i, b in enumerate(betas)]
    for name, value in items:
        if isinstance(value, torch.Tensor) and value.numel() != 1:
            raise ValueError(f"{title}: Tensor {name} must have one element, got shape {tuple(value.shape)}")


def _grad_address(g: torch.Tensor | tuple[int, int, str]) -> tuple[int, int, str] | None:
    """Where the finite check can read ``g`` directly: a dense contiguous CPU float tensor (or a group plan's
    address of it, given as it is)."""
    if type(g) is tuple:
        return g
    name = DTYPE_NAMES.get(g.dtype)
    if name and plain(g):
        return g.data_ptr(), g.numel(), name
    return None


class Optimizer(torch.optim.Optimizer):
    """Base of the ``descend.torch`` optimizers. A subclass names its spec; its signature is made from torch's.

    Args:
        params: an iterable of tensors, of ``(name, tensor)`` pairs, or of param-group dicts, as in torch.optim.
        *args: the algorithm's hyperparameters and torch's ``foreach``/``fused``/``capturable``/``differentiable``,
            in the positions torch.optim's class takes them (see the class signature).
        **kwargs: the same by name, then descend's extra flags (keyword-only), and two more keywords:
            ``convention``, a preset of defaults and flags (``"torch"``, ``"optax"``, ``"keras"``, ``"paper"``,
            ``"article"``) that arguments given explicitly override; ``backend``, ``"auto"``, ``"reference"``
            or ``"fused"`` (see :mod:`descend.backends`, and :mod:`descend.torch._options` for how ``foreach`` and
            ``fused`` refine it); ``nan_policy`` (see :mod:`descend.nonfinite`); and ``state_dtype``, None (the
            state takes each parameter's dtype, as in torch) or ``torch.float32`` (bfloat16 and float16 parameters
            keep their state in float32; the update is computed in float32 either way).
    """

    spec: ClassVar[AlgorithmSpec]
    __signature__: ClassVar[inspect.Signature]
    _options: ClassVar[dict[str, Any]] = {}  # torch's compatibility options and their defaults
    _fixed: ClassVar[dict[str, Any]] = {}  # group keys torch sets regardless of arguments (AdamW's decoupling)
    _identity: ClassVar[tuple[frozenset[str], frozenset[str]]] = (frozenset(), frozenset())
    _eager_state: ClassVar[bool] = False  # torch's Adagrad creates its state in the constructor

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
        self.skipped_steps = 0
        options = {name: explicit.pop(name, default) for name, default in self._options.items()}
        check_options(type(self).__name__, options)
        group_backend(self.backend, options)
        _check_tensor_hyperparams(type(self).__name__, explicit)
        self.spec.make(self.convention, **explicit)  # validates; the raw values are kept, as torch keeps them
        defaults = {**self.spec.defaults(self.convention), **explicit, **options, **self._fixed}
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
            _check_tensor_hyperparams(title, merged)
            self.spec.hyperparams.from_group(merged)
        super().add_param_group(param_group)
        if self._eager_state:
            self._init_state(self.param_groups[-1])

    def _init_state(self, group: dict[str, Any]) -> None:
        hp = self.spec.hyperparams.from_group(group)
        for p in group["params"]:
            state = self.state[p]
            if not state:
                state["step"] = torch.tensor(0.0, dtype=_get_scalar_dtype())
                state.update(self._fresh_state(p, hp))

    # -- the step -------------------------------------------------------------------------------------------------

    def _checked_grad(self, p: torch.Tensor) -> torch.Tensor:
        g = p.grad
        title = type(self).__name__
        if g.is_sparse:
            raise RuntimeError(f"{title} does not support sparse gradients; use torch.optim.SparseAdam or dense ones")
        if p.dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"{title} updates real float32, float64, bfloat16 and float16 parameters; got one of dtype {p.dtype}"
            )
        if g.dtype != p.dtype or g.shape != p.shape:
            raise ValueError(
                f"a gradient of dtype {g.dtype} and shape {tuple(g.shape)} was found for a parameter of dtype "
                f"{p.dtype} and shape {tuple(p.shape)}; they must match"
            )
        return g

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient, and return the closure's loss (or None).

        The hyperparameters of every group and every gradient are checked before any tensor changes. A group in its
        steady state runs from its plan (:mod:`descend.torch._plan`); any other takes the general path, which then
        records a plan for the next step.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        group_plans = self.__dict__.setdefault("_plans", {})
        work = []
        for group in self.param_groups:
            hp = self._hps.get(group)
            backend = group_backend(self.backend, group)
            plan = group_plans.get(id(group))
            grads = plan.gather(self.state, group, hp) if plan is not None else None
            if grads is None:
                group_plans.pop(id(group), None)
                live = [(p, self._checked_grad(p)) for p in group["params"] if p.grad is not None]
                work.append((group, hp, backend, live, None))
            else:
                work.append((group, hp, backend, None, (plan, grads)))
        if self.nan_policy != "propagate" and not self._all_finite(work):
            return loss
        for group, hp, backend, live, planned in work:
            if planned is not None:
                planned[0].run(hp, planned[1])
                continue
            if not live:
                continue
            scalars, slot_dicts = [], []
            for p, _ in live:
                step, host, slots = self._advance(p, hp)
                scalars.append(self.spec.scalars(hp, step, host))
                slot_dicts.append(slots)
            run_group(self.spec, hp, scalars, [p for p, _ in live], [g for _, g in live], slot_dicts, backend)
            plan = build_plan(self.state, self.spec, hp, group, backend)
            if plan is not None:
                group_plans[id(group)] = plan
        return loss

    def _all_finite(self, work: list) -> bool:
        """Apply ``nan_policy`` "skip" or "raise": False (and one more skipped step) if some gradient is not finite."""
        grads: list[Any] = []
        for group, _, _, live, planned in work:
            if planned is not None:
                grads += planned[0].addresses(planned[1])
                continue
            by_param = {id(p): g for p, g in live}
            grads += [by_param.get(id(p)) for p in group["params"]]
        bad = first_nonfinite(grads, _grad_address, lambda g: not bool(torch.isfinite(g).all()))
        if bad is None:
            return True
        if self.nan_policy == "raise":
            params = [p for group in self.param_groups for p in group["params"]]
            raise refusal(bad, tuple(params[bad].shape))
        self.skipped_steps += 1
        return False

    def _fresh_state(self, p: torch.Tensor, hp: Hyperparams) -> dict[str, torch.Tensor]:
        """The initial state slots of ``p``, in ``state_dtype`` where it applies, in huge-page memory if large."""
        with torch.no_grad():
            if self.state_dtype is not None and p.dtype in HALF_DTYPES:
                fresh = self.spec.init_state(torch, torch.empty_like(p, dtype=self.state_dtype), hp)
            else:
                fresh = self.spec.init_state(torch, p.detach(), hp)
            return {key: in_huge_pages(value) for key, value in fresh.items()}

    def _advance(self, p: torch.Tensor, hp: Hyperparams) -> tuple[int, dict[str, float], dict[str, torch.Tensor]]:
        """Create the missing state of ``p`` and advance its step and host scalars.

        Returns:
            The step number, the host scalars for this step, and the array-valued state slots.
        """
        spec = self.spec
        names = spec.state_slots(hp)
        if not (names or spec.has_step or spec.host_slots(hp)):
            return 2, {}, {}  # SGD without momentum keeps no state, as in torch
        state = self.state[p]
        missing = [k for k in names if k not in state]
        scalar_dtype = _get_scalar_dtype()
        if spec.has_step:  # created first, so the state lists its keys in torch's order
            if not isinstance(state.get("step"), torch.Tensor):
                state["step"] = torch.tensor(float(state.get("step", 0.0)), dtype=scalar_dtype)
            state["step"] += 1
            step = int(state["step"].item())
        else:
            step = 1 if missing else 2
        initial = spec.host_slots(hp)
        for key, value in initial.items():
            if not isinstance(state.get(key), torch.Tensor):
                state[key] = torch.tensor(float(state.get(key, value)), dtype=scalar_dtype)
        if missing:
            fresh = self._fresh_state(p, hp)
            state.update({k: fresh[k] for k in missing})
        slots = {k: state[k] for k in names}
        if not initial:
            return step, {}, slots
        # The host state is kept as torch keeps it, in 0-d tensors, and advanced in them (NAdam's mu_product is a
        # float32 product, as in torch); the scalars then read it as stored, so a run resumed from a state_dict
        # follows the same path as one that never stopped.
        with torch.no_grad():
            host = spec.advance_host(hp, step, {k: state[k] for k in initial})
            for key, value in host.items():
                state[key].copy_(torch.as_tensor(value))
        return step, {k: state[k].item() for k in initial}, slots

    # -- inspection and persistence -------------------------------------------------------------------------------

    def describe(self) -> str:
        """The rule in force for each param group, with its current hyperparameters, as plain text."""
        texts = []
        for i, group in enumerate(self.param_groups):
            text = self.spec.describe(self.spec.hyperparams.from_group(group))
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
        title = type(self).__name__
        if not isinstance(state_dict, dict) or not isinstance(state_dict.get("param_groups"), list):
            raise ValueError(f"a state_dict must be a dict with 'state' and 'param_groups' keys, got {state_dict!r}")
        filled = []
        for mine, theirs in zip(self.param_groups, state_dict["param_groups"]):
            if not isinstance(theirs, dict):
                raise ValueError(f"a saved param group must be a dict, got {type(theirs).__name__}")
            own = {k: v for k, v in mine.items() if k != "params"}
            options = {k: mine[k] for k in self._options if k in mine}
            filled.append({**own, **theirs, **options, **self._fixed})
        check_state_dict(self.spec, title, self.param_groups, state_dict, self._identity, filled=filled)
        super().load_state_dict({**state_dict, "param_groups": filled})
        if self.state_dtype is not None:
            self._restore_state_dtype(state_dict)

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
        return {**super().__getstate__(), **extra, "skipped_steps": self.skipped_steps}

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("convention", getattr(self, "convention", "torch"))
        state.setdefault("backend", getattr(self, "backend", "auto"))
        state.setdefault("nan_policy", getattr(self, "nan_policy", "propagate"))
        state.setdefault("state_dtype", getattr(self, "state_dtype", None))
        state.setdefault("skipped_steps", getattr(self, "skipped_steps", 0))
        super().__setstate__(state)
        self._hps = HyperparamsCache(self.spec.hyperparams)
        for group in self.param_groups:
            for key, value in {**self.defaults, **self._fixed}.items():
                group.setdefault(key, value)
            group.update(self._fixed)
