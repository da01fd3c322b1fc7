"""The NumPy front of the closure-driven algorithms (:class:`descend.algorithms.ClosureSpec`, L-BFGS).

>>> import numpy as np, descend
>>> w = np.array([3.0, -1.0])
>>> opt = descend.LBFGS([w], line_search_fn="strong_wolfe")
>>> def closure():
...     return float(w @ w), [2 * w]
>>> opt.step(closure)
10.0
>>> np.allclose(w, 0.0)
True

The closure contract. ``step(closure)`` calls ``closure()`` with no arguments, as often as the method needs, after
setting the parameters (in place) to the point it wants; the closure returns ``(loss, grads)`` at the parameters as
they are:

- ``loss``: a real number (a Python or NumPy number, or a one-element array);
- ``grads``: one gradient per parameter, in the order of ``opt.params``, each an array of its parameter's shape and
  dtype, or None for a zero gradient (torch counts a parameter without ``.grad`` as zero); a single array for a
  single parameter.

The optimizer copies what it keeps, so the closure may return the same gradient buffers every time. ``step`` returns
the loss of its first evaluation, as the closure returned it. A step that raises (the closure raised, or returned
something else) puts the parameters back to their values before the step and leaves the state as it was; what the
closure itself changed (its own buffers, random draws) stays as the failed call left it.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import numbers
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from descend.algorithms._spec import ClosureSpec, HyperparamsCache
from descend.algorithms.conventions import check_convention
from descend.engine import NumpyKind
from descend.engine.memory import check_overlaps
from descend.optim import _group_params

__all__ = ["ClosureOptimizer", "NumpyFlat"]

_NUMPY = NumpyKind()


class NumpyFlat:
    """The parameters of a closure-driven step as one flat vector, with NumPy's operations (see
    :class:`descend.algorithms.lbfgs.Flat`)."""

    def __init__(self, title: str, params: list[np.ndarray], closure: Callable[[], Any] | None = None) -> None:
        self.title = title
        self.params = params
        self.closure = closure
        self.numel = sum(p.size for p in params)
        self.dtype = np.result_type(*params)
        self._scratch: np.ndarray | None = None

    # -- the closure ----------------------------------------------------------------------------------------------

    def evaluate(self) -> tuple[Any, float, np.ndarray]:
        out = self.closure()
        if not isinstance(out, tuple) or len(out) != 2:
            raise TypeError(
                f"{self.title}: the closure must return (loss, grads), the loss and one gradient per parameter; it "
                f"returned {_what(out)}"
            )
        loss, grads = out
        return loss, self._value(loss), self._gather(grads)

    def _value(self, loss: Any) -> float:
        if isinstance(loss, numbers.Real) and not isinstance(loss, bool):
            return float(loss)
        if isinstance(loss, np.ndarray) and loss.size == 1 and loss.dtype.kind in "fiu":
            return float(loss.reshape(()))
        raise TypeError(f"{self.title}: the closure's loss must be a real number, got {_what(loss)}")

    def _gather(self, grads: Any) -> np.ndarray:
        n = len(self.params)
        if isinstance(grads, np.ndarray) and n == 1:
            grads = [grads]
        if not isinstance(grads, Sequence) or isinstance(grads, (str, bytes)) or len(grads) != n:
            raise TypeError(
                f"{self.title}: the closure's grads must be a list with one array (or None) per parameter ({n}); "
                f"got {_what(grads)}"
            )
        views = []
        for i, (p, g) in enumerate(zip(self.params, grads)):
            if g is None:
                views.append(np.zeros(p.size, dtype=p.dtype))
                continue
            if isinstance(g, np.floating):
                g = np.asarray(g)
            if not isinstance(g, np.ndarray) or g.shape != p.shape or g.dtype != p.dtype:
                raise TypeError(
                    f"{self.title}: the closure's grads[{i}] must be an array of shape {p.shape} and dtype {p.dtype}, "
                    f"like its parameter; got {_what(g)}"
                )
            views.append(g.reshape(-1))
        return np.concatenate(views) if views else np.zeros(0, dtype=self.dtype)

    def evaluate_at(self, x: list[np.ndarray], t: Any, d: np.ndarray) -> tuple[float, np.ndarray]:
        self.add(t, d)
        _, value, g = self.evaluate()
        self.restore(x)
        return value, g

    # -- the parameters -------------------------------------------------------------------------------------------

    def add(self, t: Any, d: np.ndarray) -> None:
        offset = 0
        for p in self.params:
            p += t * d[offset : offset + p.size].reshape(p.shape)
            offset += p.size

    def snapshot(self) -> list[np.ndarray]:
        return [p.copy() for p in self.params]

    def restore(self, x: list[np.ndarray]) -> None:
        for p, v in zip(self.params, x):
            p[...] = v

    # -- vectors --------------------------------------------------------------------------------------------------

    def axpy(self, v: np.ndarray, alpha: Any, w: np.ndarray) -> None:
        if np.result_type(w, alpha) != v.dtype or v.shape != (self.numel,):
            v += alpha * w
            return
        # the same two roundings as v += alpha * w, into a buffer kept for the step rather than a new array each time
        if self._scratch is None:
            self._scratch = np.empty(self.numel, dtype=v.dtype)
        product = self._scratch if self._scratch.dtype == v.dtype else np.empty_like(v)
        np.multiply(w, alpha, out=product)
        v += product

    @staticmethod
    def abs_max(v: np.ndarray) -> Any:
        return np.maximum(v.max(), -v.min())  # max |v_i|, exactly, without a temporary array (NaN propagates)

    @staticmethod
    def abs_sum(v: np.ndarray) -> Any:
        return np.abs(v).sum()

    @staticmethod
    def sqrt(s: Any) -> Any:
        return np.sqrt(s)

    @staticmethod
    def clone(v: np.ndarray) -> np.ndarray:
        return v.copy()

    def is_vector(self, v: Any) -> bool:
        return isinstance(v, np.ndarray) and v.shape == (self.numel,) and v.dtype.kind == "f"

    @staticmethod
    def is_number(v: Any) -> bool:
        if isinstance(v, np.ndarray):
            return v.shape == () and v.dtype.kind in "fiu"
        return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _what(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)} entries"
    return f"{value!r} of type {type(value).__name__}"


def _copied(value: Any, dtype: np.dtype | None = None) -> Any:
    """A copy of a state value that nothing else holds: arrays copied (cast to ``dtype`` if given, as torch casts a
    loaded state to its parameters' dtype), lists copied entry by entry, NumPy numbers cast the same way."""
    if isinstance(value, np.ndarray):
        return value.astype(dtype or value.dtype, copy=True)
    if isinstance(value, (list, tuple)):
        return [_copied(v, dtype) for v in value]
    if isinstance(value, np.generic) and dtype is not None and value.dtype.kind == "f":
        return dtype.type(value)
    return copy.deepcopy(value)


class ClosureOptimizer:
    """Base of the closure-driven NumPy optimizers (``descend.LBFGS``). A subclass names its spec.

    Args:
        params: a list of float32/float64 arrays, or a list holding one param-group dict. The parameters form one
            vector: a second param group is refused, as torch refuses it.
        *args, **kwargs: the hyperparameters, in torch's order (see the class signature).
        convention: a preset of defaults (``"torch"``, ``"optax"``, ``"keras"``, ``"paper"``, ``"article"``);
            explicit arguments override it.
    """

    spec: ClassVar[ClosureSpec]
    __signature__: ClassVar[inspect.Signature]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        spec = cls.__dict__.get("spec")
        if spec is None:
            return
        if not cls.__doc__:
            cls.__doc__ = (
                f"{spec.title} on NumPy arrays: {spec.summary}.\n\n``step(closure)`` takes a closure that returns "
                "``(loss, grads)`` at the parameters as they are (see :mod:`descend.closure`). The rule and its "
                f"references are documented in :mod:`{spec.module.__name__}`; ``describe()`` prints the rule in force."
            )
        cls.__signature__ = inspect.Signature(
            [inspect.Parameter("params", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
            + list(cls._hp_signature().parameters.values())
            + [inspect.Parameter("convention", inspect.Parameter.KEYWORD_ONLY, default="torch")]
        )

    @classmethod
    def _hp_signature(cls) -> inspect.Signature:
        return inspect.Signature(
            [
                inspect.Parameter(
                    f.name,
                    inspect.Parameter.KEYWORD_ONLY if f.kw_only else inspect.Parameter.POSITIONAL_OR_KEYWORD,
                    default=f.default,
                )
                for f in dataclasses.fields(cls.spec.hyperparams)
            ]
        )

    def __init__(self, params: Any, *args: Any, convention: str = "torch", **kwargs: Any) -> None:
        title = self.spec.title
        try:
            bound = self._hp_signature().bind_partial(*args, **kwargs)
        except TypeError as exc:
            names = ", ".join(self.spec.hyperparams.names())
            raise TypeError(f"{title}: {exc}; its hyperparameters are {names}") from None
        self.convention = check_convention(convention)
        self._hps = HyperparamsCache(self.spec.hyperparams)
        self._lock = threading.Lock()
        self.defaults: dict[str, Any] = self.spec.make(convention, **bound.arguments).as_dict()
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[int, dict[str, Any]] = {}
        if isinstance(params, np.ndarray):
            _group_params(params, "params")  # raises the clear error
        if not isinstance(params, Iterable) or isinstance(params, (str, bytes)):
            raise TypeError(f"params must be a list of NumPy arrays or one param-group dict, got {params!r}")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        for group in groups if isinstance(groups[0], Mapping) else [{"params": groups}]:
            self.add_param_group(group)

    def add_param_group(self, group: Mapping[str, Any]) -> None:
        """Add the param group (a dict with ``"params"`` and optional hyperparameters); a second one is refused."""
        title = self.spec.title
        if not isinstance(group, Mapping) or "params" not in group:
            raise TypeError(f"a param group must be a dict with a 'params' key, got {group!r}")
        if self.param_groups:
            raise ValueError(
                f"{title} doesn't support per-parameter options (parameter groups): it takes all its parameters as "
                "one vector, in one group"
            )
        params = _group_params(group["params"], "param_groups[0]['params']")
        if not params:
            raise ValueError("param_groups[0]['params'] is empty")
        if len({id(p) for p in params}) != len(params):
            raise ValueError("a parameter appears more than once in the optimizer; each array may appear once")
        check_overlaps(_NUMPY, params, range(len(params)))
        merged = {**self.defaults, **{k: v for k, v in group.items() if k != "params"}}
        merged.update(self.spec.hyperparams.from_group(merged).as_dict())
        self.param_groups.append({"params": params, **merged})

    @property
    def params(self) -> list[np.ndarray]:
        """Every parameter: the order the closure gives its gradients in."""
        return list(self.param_groups[0]["params"])

    # -- the step -------------------------------------------------------------------------------------------------

    def step(self, closure: Callable[[], tuple[Any, Any]]) -> Any:
        """Run one step (up to ``max_iter`` iterations) and return the closure's first loss, as it returned it.

        Args:
            closure: returns ``(loss, grads)`` at the parameters as they are (see :mod:`descend.closure`).

        Raises:
            TypeError: no closure, or one that does not return ``(loss, grads)`` as described. The parameters and
                the state are as they were before the step whenever it raises.
        """
        title = self.spec.title
        if not callable(closure):
            raise TypeError(f"{title}.step needs a closure that returns (loss, grads); got {closure!r}")
        with self._lock:
            hp = self._hps.get(self.param_groups[0])
            flat = NumpyFlat(title, self.param_groups[0]["params"], closure)
            if flat.numel == 0:
                raise ValueError(f"{title} has nothing to optimize: its parameters hold no elements")
            before = flat.snapshot()
            try:
                loss, state = self.spec.step(flat, hp, self.state.get(0, {}))
            except BaseException:
                flat.restore(before)
                raise
            self.state[0] = state
            return loss

    # -- inspection and persistence -------------------------------------------------------------------------------

    def describe(self) -> str:
        """The rule in force, with the group's current hyperparameters, as plain text."""
        return self.spec.describe(self.spec.hyperparams.from_group(self.param_groups[0]), self.convention)

    def state_dict(self) -> dict[str, Any]:
        """A snapshot in torch's layout: ``{"state": {0: {...}}, "param_groups": [{..., "params": [indices]}]}``,
        the state on the first parameter as torch keeps it; arrays and lists are copies."""
        group = self.param_groups[0]
        entry = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
        entry["params"] = list(range(len(group["params"])))
        return {
            "state": {i: {k: _copied(v) for k, v in st.items()} for i, st in self.state.items()},
            "param_groups": [entry],
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a snapshot from :meth:`state_dict`. It is checked whole first; on any mismatch (another
        algorithm, other sizes, a state that does not fit the parameters) a ValueError says what, and nothing
        changes. Vectors are copied in the parameters' dtype, as torch casts a loaded state."""
        title = self.spec.title
        if not isinstance(state_dict, Mapping) or "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError("a state_dict must be a dict with 'state' and 'param_groups' keys")
        groups, saved = state_dict["param_groups"], state_dict["state"]
        if not isinstance(groups, (list, tuple)) or len(groups) != 1 or not isinstance(groups[0], Mapping):
            raise ValueError(f"a {title} state_dict has one param group, got {groups!r}")
        if not isinstance(saved, Mapping):
            raise ValueError(f"the state_dict's 'state' must be a dict, got {type(saved).__name__}")
        params = self.param_groups[0]["params"]
        keys = list(groups[0].get("params", ()))
        if len(keys) != len(params):
            raise ValueError(f"the state_dict's param group has {len(keys)} params, the optimizer's has {len(params)}")
        options = {k: copy.deepcopy(v) for k, v in groups[0].items() if k != "params"}
        missing = sorted(set(self.spec.hyperparams.names()) - set(options))
        if missing:
            raise ValueError(f"the state_dict's param group lacks {', '.join(missing)}: it is not a {title} state_dict")
        options.update(self.spec.hyperparams.from_group(options).as_dict())
        for key, entry in saved.items():
            if key not in keys:
                raise ValueError(f"the state_dict has state for param {key!r}, which its param group does not list")
            if not isinstance(entry, Mapping) or (key != keys[0] and entry):
                raise ValueError(f"{title} keeps its state, a dict, on the first parameter; got {entry!r} for {key!r}")
        flat = NumpyFlat(title, params)
        entry = saved.get(keys[0], {})
        self.spec.check_state(entry, flat)
        self.param_groups[0].update(options)
        self.state = {0: {k: _copied(v, flat.dtype) for k, v in entry.items()}} if entry else {}

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} (", "Parameter Group 0"]
        lines += [f"    {k}: {v}" for k, v in self.param_groups[0].items() if k != "params"]
        return "\n".join([*lines, ")"])
