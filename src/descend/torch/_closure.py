"""The ``torch.optim.Optimizer`` subclass of the closure-driven algorithms (:class:`descend.algorithms.ClosureSpec`,
L-BFGS): torch's signature, defaults, messages and state layout, the step written once in
:mod:`descend.algorithms.lbfgs` with torch's tensor operations underneath.

A closure-driven step does not go through the engine: it treats every parameter as one flat vector, calls the closure
as often as it needs, and keeps its state on the first parameter, as torch's ``LBFGS`` does. Its tensor operations are
torch's own, in torch's order, so the parameters and state follow ``torch.optim.LBFGS`` bit for bit.

A step that raises (the closure raised, or returned something that is not a loss) puts the parameters back to their
values before the step and leaves the state as it was: the failed step's closure calls are not counted. What the
closure itself changed stays as the failed call left it: the ``.grad`` it wrote, a model's buffers, random draws.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch

from descend.algorithms._spec import ClosureSpec, HyperparamsCache
from descend.algorithms.conventions import check_convention
from descend.torch._state_check import identity_keys

__all__ = ["ClosureOptimizer", "TorchFlat"]

_P = inspect.Parameter


class TorchFlat:
    """The parameters of a closure-driven step as one flat vector, with torch's operations (see
    :class:`descend.algorithms.lbfgs.Flat`). Gradients are gathered and steps applied as torch's ``LBFGS`` does:
    a parameter without ``.grad`` counts as a zero gradient, a sparse one is made dense, a complex one is a pair of
    reals."""

    def __init__(self, title: str, params: list[torch.Tensor], closure: Callable[[], Any] | None = None) -> None:
        self.title = title
        self.params = params
        self.closure = closure
        self.numel = sum(2 * p.numel() if torch.is_complex(p) else p.numel() for p in params)

    # -- the closure ----------------------------------------------------------------------------------------------

    def _loss(self) -> tuple[Any, float]:
        with torch.enable_grad():
            loss = self.closure()
        try:  # detached: the same number, without torch's warning about converting a tensor that requires grad
            return loss, float(loss.detach() if isinstance(loss, torch.Tensor) else loss)
        except (TypeError, ValueError, RuntimeError):
            shape = f" of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else ""
            raise TypeError(
                f"{self.title}: the closure must return the loss, a number or a one-element tensor, after filling in "
                f"the gradients; it returned {type(loss).__name__}{shape}"
            ) from None

    def gather(self) -> torch.Tensor:
        views = []
        for i, p in enumerate(self.params):
            g = p.grad
            if g is None:
                view = p.new(p.numel()).zero_()
            else:
                if g.shape != p.shape:
                    raise ValueError(
                        f"{self.title}: the closure left a gradient of shape {tuple(g.shape)} on parameter {i} of "
                        f"shape {tuple(p.shape)}; they must match"
                    )
                view = (g.to_dense() if g.is_sparse else g).reshape(-1)
            if torch.is_complex(view):
                view = torch.view_as_real(view).view(-1)
            views.append(view)
        return torch.cat(views, 0)

    def evaluate(self) -> tuple[Any, float, torch.Tensor]:
        loss, value = self._loss()
        return loss, value, self.gather()

    def evaluate_at(self, x: list[torch.Tensor], t: Any, d: torch.Tensor) -> tuple[float, torch.Tensor]:
        self.add(t, d)
        value = self._loss()[1]
        g = self.gather()
        self.restore(x)
        return value, g

    # -- the parameters -------------------------------------------------------------------------------------------

    def add(self, t: Any, d: torch.Tensor) -> None:
        offset = 0
        for p in self.params:
            if torch.is_complex(p):
                p = torch.view_as_real(p)
            n = p.numel()
            p.add_(d[offset : offset + n].view_as(p), alpha=t)
            offset += n

    def snapshot(self) -> list[torch.Tensor]:
        return [p.clone(memory_format=torch.contiguous_format) for p in self.params]

    def restore(self, x: list[torch.Tensor]) -> None:
        for p, v in zip(self.params, x):
            p.copy_(v)

    # -- vectors --------------------------------------------------------------------------------------------------

    @staticmethod
    def axpy(v: torch.Tensor, alpha: Any, w: torch.Tensor) -> None:
        v.add_(w, alpha=alpha)

    @staticmethod
    def abs_max(v: torch.Tensor) -> torch.Tensor:
        return v.abs().max()

    @staticmethod
    def abs_sum(v: torch.Tensor) -> torch.Tensor:
        return v.abs().sum()

    @staticmethod
    def sqrt(s: Any) -> Any:
        return s.sqrt() if isinstance(s, torch.Tensor) else math.sqrt(s)

    @staticmethod
    def clone(v: torch.Tensor) -> torch.Tensor:
        return v.clone(memory_format=torch.contiguous_format)

    def is_vector(self, v: Any) -> bool:
        return isinstance(v, torch.Tensor) and v.dim() == 1 and v.numel() == self.numel and v.is_floating_point()

    @staticmethod
    def is_number(v: Any) -> bool:
        if isinstance(v, torch.Tensor):
            return v.numel() == 1 and not v.is_complex()
        return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _signature(spec: ClosureSpec, torch_order: tuple[str, ...] | None) -> inspect.Signature:
    """torch's arguments in torch's order (``"*"`` marks where its keyword-only ones start), then the other
    hyperparameters and ``convention``, keyword-only."""
    fields = {f.name: f for f in dataclasses.fields(spec.hyperparams)}
    parameters = [_P("params", _P.POSITIONAL_OR_KEYWORD)]
    kind = _P.POSITIONAL_OR_KEYWORD
    for name in torch_order or ():
        if name == "*":
            kind = _P.KEYWORD_ONLY
        elif name in fields:
            parameters.append(_P(name, kind, default=fields[name].default))
        else:
            raise ValueError(f"{spec.title}: {name!r} is not one of its hyperparameters")
    taken = {p.name for p in parameters}
    parameters += [_P(n, _P.KEYWORD_ONLY, default=f.default) for n, f in fields.items() if n not in taken]
    return inspect.Signature([*parameters, _P("convention", _P.KEYWORD_ONLY, default="torch")])


class ClosureOptimizer(torch.optim.Optimizer):
    """Base of the closure-driven ``descend.torch`` optimizers (L-BFGS). A subclass names its spec and torch's
    argument order (``torch_order``).

    Args:
        params: an iterable of tensors, of ``(name, tensor)`` pairs, or one param-group dict, as in torch.optim. The
            parameters form one vector: a second param group is refused, as torch refuses it.
        *args, **kwargs: the hyperparameters, in torch's order (see the class signature), and ``convention``
            (keyword-only), a preset of defaults that arguments given explicitly override.
    """

    spec: ClassVar[ClosureSpec]
    torch_order: ClassVar[tuple[str, ...] | None] = None
    __signature__: ClassVar[inspect.Signature]
    _options: ClassVar[dict[str, Any]] = {}  # torch's LBFGS takes none of foreach, fused, capturable, differentiable

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        spec = cls.__dict__.get("spec")
        if spec is None:
            return
        cls.__signature__ = _signature(spec, cls.torch_order)
        positional = tuple(p.name for p in cls.__signature__.parameters.values() if p.kind == _P.POSITIONAL_OR_KEYWORD)
        cls._identity = identity_keys(spec, positional)
        if not cls.__doc__:
            cls.__doc__ = (
                f"{spec.title} for torch tensors: {spec.summary}.\n\nA ``torch.optim.Optimizer`` with the signature, "
                f"state and state_dict layout of ``torch.optim.{spec.torch_name}``; ``step(closure)`` needs a closure "
                f"that clears the gradients, computes the loss, calls ``backward()`` and returns the loss. The rule "
                f"and its references are documented in :mod:`{spec.module.__name__}`; ``describe()`` prints the rule "
                "in force. See :class:`descend.torch._closure.ClosureOptimizer` for the arguments."
            )

    def __init__(self, params: Any, *args: Any, **kwargs: Any) -> None:
        title = type(self).__name__
        try:
            bound = type(self).__signature__.bind(params, *args, **kwargs)
        except TypeError as exc:
            names = ", ".join(p for p in type(self).__signature__.parameters if p != "params")
            raise TypeError(f"{title}: {exc}; its arguments are {names}") from None
        explicit = dict(bound.arguments)
        explicit.pop("params")
        self.convention = check_convention(explicit.pop("convention", "torch"))
        self._hps = HyperparamsCache(self.spec.hyperparams)
        defaults = {**self.spec.defaults(self.convention), **explicit}
        _check_tensor_lr(title, defaults.get("lr"))
        hp = self.spec.hyperparams.from_group(defaults)  # validates; the raw values are kept, as torch keeps them
        if defaults.get("max_eval") is None:
            defaults["max_eval"] = hp.max_eval  # torch stores max_iter * 5 // 4
        super().__init__(params, defaults)

    @property
    def _params(self) -> list[torch.Tensor]:
        return self.param_groups[0]["params"]

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add the param group, after checking its hyperparameters; a second one is refused (after torch's own
        checks, so a parameter listed twice gets torch's message) and nothing is added."""
        title = type(self).__name__
        if isinstance(param_group, dict):
            merged = {**self.defaults, **param_group}
            _check_tensor_lr(title, merged.get("lr"))
            self.spec.hyperparams.from_group(merged)
        super().add_param_group(param_group)
        if len(self.param_groups) > 1:
            self.param_groups.pop()
            raise ValueError(
                f"{title} doesn't support per-parameter options (parameter groups): it takes all its parameters as "
                "one vector, in one group"
            )

    # -- the step -------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure: Callable[[], Any]) -> Any:  # type: ignore[override]
        """Run one step (up to ``max_iter`` iterations) and return the closure's first loss.

        Args:
            closure: clears the gradients, computes the loss, calls ``backward()`` and returns the loss. It is called
                with gradients enabled, at the points the method chooses.

        Raises:
            TypeError: no closure, or one that does not return a loss. The parameters and the state are as they were
                before the step whenever it raises (see the module docstring).
        """
        title = type(self).__name__
        if not callable(closure):
            raise TypeError(
                f"{title}.step needs a closure that clears the gradients, computes the loss, calls backward() and "
                f"returns the loss; got {closure!r}"
            )
        group = self.param_groups[0]
        hp = self._hps.get(group)
        lr = group["lr"]  # torch computes with the value as given (an int, a float, a 0-d tensor)
        if isinstance(lr, torch.Tensor):  # a copy, so that a scheduler's fill_ later does not change the stored t
            lr = lr.detach().reshape(()).clone()
        hp = dataclasses.replace(hp, lr=lr)
        flat = TorchFlat(title, self._params, closure)
        if flat.numel == 0:
            raise ValueError(f"{title} has nothing to optimize: its parameters hold no elements")
        first = self._params[0]
        before = flat.snapshot()
        try:
            loss, state = self.spec.step(flat, hp, self.state.get(first, {}))
        except BaseException:
            flat.restore(before)
            raise
        self.state[first] = state
        return loss

    # -- inspection and persistence -------------------------------------------------------------------------------

    def describe(self) -> str:
        """The rule in force, with the group's current hyperparameters, as plain text."""
        return self.spec.describe(self.spec.hyperparams.from_group(self.param_groups[0]), self.convention)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state_dict saved by this class or by ``torch.optim.LBFGS``. It is checked whole first (one group of
        as many parameters, this algorithm's hyperparameters, a state that fits the parameters); on any mismatch a
        ValueError says what, and nothing changes."""
        title = type(self).__name__
        if not isinstance(state_dict, Mapping) or not isinstance(state_dict.get("param_groups"), list):
            raise ValueError(f"a state_dict must be a dict with 'state' and 'param_groups' keys, got {state_dict!r}")
        groups, saved = state_dict["param_groups"], state_dict.get("state")
        if len(groups) != 1 or not isinstance(groups[0], Mapping) or not isinstance(saved, Mapping):
            raise ValueError(f"a {title} state_dict has one param group and a 'state' dict; this one does not fit")
        group = groups[0]
        keys = list(group.get("params", ()))
        if len(keys) != len(self._params):
            raise ValueError(
                f"the state_dict's param group has {len(keys)} params, this {title}'s has {len(self._params)}"
            )
        required, foreign = self._identity
        missing, strange = sorted(required - set(group)), sorted(foreign & set(group))
        if missing or strange:
            what = f"lacks {', '.join(missing)}" if missing else f"has {', '.join(strange)}"
            raise ValueError(
                f"the state_dict's param group {what}: it was saved by another optimizer class, not {title}"
            )
        merged = {**self.defaults, **group}
        _check_tensor_lr(title, merged.get("lr"))
        self.spec.hyperparams.from_group(merged)
        for key, entry in saved.items():
            if key not in keys:
                raise ValueError(f"the state_dict has state for param {key!r}, which its param group does not list")
            if key != keys[0] and entry:
                raise ValueError(
                    f"{title} keeps its state on the first parameter; the state_dict has state for param {key!r}"
                )
            if not isinstance(entry, Mapping):
                raise ValueError(f"state for param {key!r} must be a dict, got {type(entry).__name__}")
        self.spec.check_state(saved.get(keys[0], {}), TorchFlat(title, self._params))
        super().load_state_dict(state_dict)

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "convention": self.convention}

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("convention", "torch")
        super().__setstate__(state)
        self._hps = HyperparamsCache(self.spec.hyperparams)


def _check_tensor_lr(title: str, lr: Any) -> None:
    if isinstance(lr, torch.Tensor) and lr.numel() != 1:
        raise ValueError(f"{title}: Tensor lr must be 1-element, got one of shape {tuple(lr.shape)}")
