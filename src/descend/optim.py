"""The NumPy front: optimizers that update NumPy arrays in place, with torch.optim's param groups and state layout.

>>> import numpy as np, descend
>>> w = np.zeros(3)
>>> opt = descend.Adam([w], lr=0.1)
>>> opt.step([np.array([1.0, -2.0, 0.0])])
>>> w
array([-0.1,  0.1,  0. ])
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from descend._state_check import checked_state
from descend.algorithms._spec import AlgorithmSpec, Hyperparams, HyperparamsCache
from descend.algorithms.conventions import check_convention
from descend.backends import NUMPY_BACKENDS, check_backend
from descend.engine import Engine, GroupWork, Item, NumpyKind
from descend.engine.memory import check_overlaps
from descend.lowbit import StateFormat
from descend.nonfinite import check_nan_policy

__all__ = ["Optimizer"]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_NUMPY = NumpyKind()


def _check_param(p: Any, where: str) -> np.ndarray:
    if isinstance(p, np.matrix):
        raise TypeError(f"{where} is an np.matrix, whose * is a matrix product; pass np.asarray(it) instead")
    if not isinstance(p, np.ndarray):
        raise TypeError(f"{where} must be a NumPy array, got {type(p).__name__}")
    if p.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{where} has dtype {p.dtype}; descend updates float32 and float64 arrays only")
    if not p.flags.writeable:
        raise ValueError(f"{where} is read-only; the optimizer updates parameters in place")
    return p


FORMAT_KEY = "state_format"


def _check_state_dtype(title: str, value: Any) -> StateFormat | None:
    if value is None or isinstance(value, StateFormat):
        return value
    if isinstance(value, str) and value in ("bfloat16", "blockwise8"):
        return StateFormat(value)
    raise ValueError(
        f"{title}: state_dtype must be None (the state takes each parameter's dtype) or a low-bit format: "
        f"'bfloat16', 'blockwise8' or a descend.StateFormat, got {value!r}"
    )


def _group_params(params: Any, where: str) -> list[np.ndarray]:
    if isinstance(params, np.ndarray):
        raise TypeError(
            f"{where} must be a list of arrays, got a single ndarray of shape {params.shape}; wrap it in a list: [w]"
        )
    if isinstance(params, (str, bytes, Mapping)) or not isinstance(params, Iterable):
        raise TypeError(f"{where} must be a list of NumPy arrays, got {type(params).__name__}")
    return [_check_param(p, f"{where}[{i}]") for i, p in enumerate(params)]


class Optimizer:
    """Base of the NumPy optimizers. Subclasses only name their algorithm spec.

    Args:
        params: a list of float32/float64 arrays, or a list of dicts ``{"params": [...], **options}`` (param groups)
            whose options override the optimizer's for that group.
        *args, **kwargs: the algorithm's hyperparameters, as in ``torch.optim`` (see the class signature).
        convention: a preset of defaults and flags (``"torch"``, ``"optax"``, ``"keras"``, ``"paper"``,
            ``"article"``); explicit arguments override it.
        backend: ``"auto"``, ``"reference"`` or ``"fused"``.
        nan_policy: ``"propagate"``, ``"skip"`` or ``"raise"`` (see :mod:`descend.nonfinite`).
        state_dtype: None (the state takes each parameter's dtype) or a low-bit format for float32 parameters:
            ``"bfloat16"`` (bfloat16 state, kept as its bits in uint16 arrays, with stochastic rounding),
            ``"blockwise8"`` (8-bit blockwise state with stochastic rounding) or a :class:`descend.StateFormat`
            (see :mod:`descend.lowbit`); float64 parameters keep float64 state.
    """

    spec: ClassVar[AlgorithmSpec]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass names its spec (``spec = ADAM``); its signature and a docstring, if it has none, follow."""
        super().__init_subclass__(**kwargs)
        spec = cls.__dict__.get("spec")
        if spec is None:
            return
        if not cls.__doc__:
            cls.__doc__ = (
                f"{spec.title} on NumPy arrays: {spec.summary}.\n\nThe rule, its flags and references are documented "
                f"in :mod:`{spec.module.__name__}`; ``describe()`` prints the rule in force. See "
                ":class:`descend.optim.Optimizer` for the arguments shared by every optimizer."
            )
        keyword = inspect.Parameter.KEYWORD_ONLY
        cls.__signature__ = inspect.Signature(
            [inspect.Parameter("params", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
            + list(cls._hp_signature().parameters.values())
            + [
                inspect.Parameter("convention", keyword, default="torch"),
                inspect.Parameter("backend", keyword, default="auto"),
                inspect.Parameter("nan_policy", keyword, default="propagate"),
                inspect.Parameter("state_dtype", keyword, default=None),
            ]
        )

    def __init__(
        self,
        params: Any,
        *args: Any,
        convention: str = "torch",
        backend: str = "auto",
        nan_policy: str = "propagate",
        state_dtype: Any = None,
        **kwargs: Any,
    ):
        try:
            bound = self._hp_signature().bind_partial(*args, **kwargs)
        except TypeError as exc:
            names = ", ".join(self.spec.hyperparams.names())
            raise TypeError(f"{self.spec.title}: {exc}; its hyperparameters are {names}") from None
        self.convention = check_convention(convention)
        self.backend = check_backend(backend, NUMPY_BACKENDS)
        self.nan_policy = check_nan_policy(nan_policy)
        self.state_dtype = _check_state_dtype(self.spec.title, state_dtype)
        self._hps = HyperparamsCache(self.spec.hyperparams)
        self.state: dict[int, dict[str, Any]] = {}
        self._engine = Engine(self.spec, _NUMPY, lambda: self.state, nan_policy=self.nan_policy, fmt=self.state_dtype)
        self.defaults: dict[str, Any] = self.spec.make(convention, **bound.arguments).as_dict()
        if self.state_dtype is not None:
            self.defaults[FORMAT_KEY] = dataclasses.asdict(self.state_dtype)
        self._add_groups(params)

    def _add_groups(self, params: Any) -> None:
        """The constructor's ``params``: a list of arrays (one group) or of group dicts, each added in turn."""
        self.param_groups: list[dict[str, Any]] = []
        if isinstance(params, np.ndarray):
            _group_params(params, "params")  # raises the clear error
        groups = list(params) if isinstance(params, Iterable) and not isinstance(params, (str, bytes)) else None
        if groups is None:
            raise TypeError(f"params must be a list of NumPy arrays or of param-group dicts, got {params!r}")
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], Mapping):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # -- construction ---------------------------------------------------------------------------------------------

    @classmethod
    def _hp_signature(cls) -> inspect.Signature:
        parameters = []
        for f in dataclasses.fields(cls.spec.hyperparams):
            kind = inspect.Parameter.KEYWORD_ONLY if f.kw_only else inspect.Parameter.POSITIONAL_OR_KEYWORD
            parameters.append(inspect.Parameter(f.name, kind, default=f.default))
        return inspect.Signature(parameters)

    def add_param_group(self, group: Mapping[str, Any]) -> None:
        """Add a param group (a dict with ``"params"`` and optional per-group hyperparameters)."""
        if not isinstance(group, Mapping) or "params" not in group:
            raise TypeError(f"a param group must be a dict with a 'params' key, got {group!r}")
        where = f"param_groups[{len(self.param_groups)}]['params']"
        params = _group_params(group["params"], where)
        if not params:
            raise ValueError(f"{where} is empty")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for i, p in enumerate(params):
            if id(p) in seen:
                raise ValueError(f"{where}[{i}] appears more than once in the optimizer; each array may appear once")
            seen.add(id(p))
        everything = [p for g in self.param_groups for p in g["params"]] + params
        check_overlaps(_NUMPY, everything, range(len(everything)))
        options = {k: v for k, v in group.items() if k != "params"}
        spec, defaults = self._rule_for(options)
        for p in params:
            spec.check_shape(p.shape)
        hp_names = set(spec.hyperparams.names())
        merged = {**defaults, **options}
        hp = spec.hyperparams.from_group(merged)  # validates the group's hyperparameters
        merged.update({k: v for k, v in hp.as_dict().items() if k in hp_names})
        self.param_groups.append({"params": params, **merged})

    def _rule_for(self, options: Mapping[str, Any]) -> tuple[AlgorithmSpec, dict[str, Any]]:
        """The algorithm and defaults of a new group with these options: the class's own. An optimizer that runs
        different algorithms on different groups overrides this and :meth:`_group_rule`."""
        return self.spec, self.defaults

    def _group_rule(self, group: Mapping[str, Any]) -> tuple[AlgorithmSpec | None, Hyperparams]:
        """The algorithm a param group runs, None for the class's own (the engine's), and its validated
        hyperparameters."""
        return None, self._hps.get(group)

    # -- the step -------------------------------------------------------------------------------------------------

    @property
    def params(self) -> list[np.ndarray]:
        """Every parameter, in group order: the order ``step`` expects its gradients in."""
        return [p for g in self.param_groups for p in g["params"]]

    def _check_grads(self, grads: Any) -> list[np.ndarray | None]:
        params = self.params
        if isinstance(grads, np.ndarray):
            if len(params) == 1 and grads.shape == params[0].shape:
                grads = [grads]
            else:
                raise TypeError(
                    f"grads must be a list with one array per parameter ({len(params)}), got a single ndarray"
                )
        if not isinstance(grads, Sequence) or isinstance(grads, (str, bytes)):
            raise TypeError(f"grads must be a list with one array per parameter, got {type(grads).__name__}")
        if len(grads) != len(params):
            raise ValueError(f"got {len(grads)} gradients for {len(params)} parameters; give one per parameter")
        grads = [np.asarray(g) if isinstance(g, np.floating) else g for g in grads]  # 0-d arithmetic gives scalars
        ndarray = np.ndarray
        if all(
            g is None or (type(g) is ndarray and g.shape == p.shape and g.dtype == p.dtype)
            for p, g in zip(params, grads)
        ):
            return grads  # the common case, checked in one pass; the loop below names the first bad gradient
        for i, (p, g) in enumerate(zip(params, grads)):
            if g is None:
                continue
            if not isinstance(g, np.ndarray):
                raise TypeError(f"grads[{i}] must be a NumPy array or None, got {type(g).__name__}")
            if g.shape != p.shape:
                raise ValueError(f"grads[{i}] has shape {g.shape} but its parameter has shape {p.shape}")
            if g.dtype != p.dtype:
                raise TypeError(f"grads[{i}] has dtype {g.dtype} but its parameter has dtype {p.dtype}")
        return list(grads)

    def step(self, grads: Sequence[np.ndarray | None]) -> None:
        """Update every parameter in place from its gradient (``None`` skips a parameter, as torch skips params
        without a ``.grad``). Nothing is changed if anything is refused: a gradient, a hyperparameter, a state array,
        or ``backend="fused"`` for an array the kernel cannot take.

        With the fused kernel, each param group is updated in one call (one per dtype and step count if they
        differ within the group); arrays the kernel cannot take (not C-contiguous) run the reference. The step is
        :class:`descend.engine.Engine`'s; two threads stepping one optimizer run one after the other.
        """
        engine = self._engine
        with engine.lock:
            grads = self._check_grads(grads)
            work, index = [], 0
            state = self.state
            for group in self.param_groups:
                rule, hp = self._group_rule(group)
                n = len(group["params"])
                present = [index + k for k in range(n) if grads[index + k] is not None]
                params = group["params"] if len(present) == n else [group["params"][i - index] for i in present]
                gs = [grads[i] for i in present]
                states = [state.get(i) for i in present]
                prepared = engine.prepare_uniform(hp, self.backend, params, gs, states, present, rule)

                def items(params: list = params, gs: list = gs, present: list = present) -> list[Item]:
                    return [Item(i, p, g, self.state.get(i), i) for i, p, g in zip(present, params, gs)]

                work.append(GroupWork(hp, self.backend, items, prepared, spec=rule))
                index += n
            engine.step(work)

    @property
    def skipped_steps(self) -> int:
        """How many steps ``nan_policy="skip"`` skipped."""
        return self._engine.skipped_steps

    @skipped_steps.setter
    def skipped_steps(self, value: int) -> None:
        self._engine.skipped_steps = value

    # -- inspection and persistence -------------------------------------------------------------------------------

    def describe(self) -> str:
        """The rule in force for each param group, with its current hyperparameters, as plain text."""
        texts = []
        for i, group in enumerate(self.param_groups):
            rule, hp = self._group_rule(group)
            text = (rule or self.spec).describe(hp, self.convention)
            texts.append(text if len(self.param_groups) == 1 else f"param group {i}:\n{text}")
        return "\n\n".join(texts)

    def state_dict(self) -> dict[str, Any]:
        """A snapshot in torch's layout: ``{"state": {index: {...}}, "param_groups": [{..., "params": [indices]}]}``.

        Arrays are copies and counters plain numbers, so the snapshot does not change as training goes on.
        """
        groups, start = [], 0
        for group in self.param_groups:
            n = len(group["params"])
            entry = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            entry["params"] = list(range(start, start + n))
            groups.append(entry)
            start += n
        state = {
            i: {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in st.items()}
            for i, st in self.state.items()
        }
        return {"state": state, "param_groups": groups}

    @property
    def algorithm(self) -> str:
        """The name a checkpoint records (:mod:`descend.checkpoint`): the algorithm's registry name."""
        return self.spec.name

    def check_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Raise a ValueError (or a TypeError for a hyperparameter's type) if ``state_dict`` does not fit."""
        self._checked(state_dict)

    def _checked(self, state_dict: Mapping[str, Any]) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]], Any]:
        """(new group options, new state, the state format after loading); see :func:`checked_state`."""
        return checked_state(self._group_specs(), self.param_groups, state_dict, self.state_dtype)

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a snapshot from :meth:`state_dict`. It is checked whole first; on any mismatch (another
        algorithm, other shapes, other group sizes) a ValueError says what, and nothing is changed."""
        new_groups, new_state, fmt = self._checked(state_dict)
        for group, loaded in zip(self.param_groups, new_groups):
            group.update(loaded)
        self.state = new_state
        if fmt is not None:  # the saved seed, so the stream goes on where it was
            self.state_dtype = self._engine.fmt = fmt
            self.defaults[FORMAT_KEY] = dataclasses.asdict(fmt)

    def _group_specs(self) -> list[AlgorithmSpec]:
        """Each param group's algorithm."""
        return [self._group_rule(group)[0] or self.spec for group in self.param_groups]

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in group.items() if k != "params"]
        return "\n".join(lines + [")"])
