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

from descend import kernels
from descend._state_check import checked_state
from descend.algorithms import registry
from descend.algorithms._spec import AlgorithmSpec, Hyperparams, HyperparamsCache, cast_scalars
from descend.algorithms.conventions import check_convention
from descend.backends import check_backend
from descend.nonfinite import check_nan_policy, first_nonfinite, refusal

__all__ = ["Optimizer"]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _check_param(p: Any, where: str) -> np.ndarray:
    if not isinstance(p, np.ndarray):
        raise TypeError(f"{where} must be a NumPy array, got {type(p).__name__}")
    if p.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{where} has dtype {p.dtype}; descend updates float32 and float64 arrays only")
    if not p.flags.writeable:
        raise ValueError(f"{where} is read-only; the optimizer updates parameters in place")
    return p


def _group_params(params: Any, where: str) -> list[np.ndarray]:
    if isinstance(params, np.ndarray):
        raise TypeError(
            f"{where} must be a list of arrays, got a single ndarray of shape {params.shape}; wrap it in a list: [w]"
        )
    if isinstance(params, (str, bytes, Mapping)) or not isinstance(params, Iterable):
        raise TypeError(f"{where} must be a list of NumPy arrays, got {type(params).__name__}")
    return [_check_param(p, f"{where}[{i}]") for i, p in enumerate(params)]


def _why_not_fused(p: np.ndarray, g: np.ndarray, state: Mapping[str, Any], slots: Sequence[str]) -> str:
    """Why the fused kernel cannot update ``p`` (empty if it can): every array must be C-contiguous, in the param's
    dtype, and the param and state writable."""
    arrays = [("the parameter", p), ("its gradient", g)] + [(f"its state {k!r}", state[k]) for k in slots if k in state]
    for what, a in arrays:
        if not isinstance(a, np.ndarray):
            return f"{what} is a {type(a).__name__}, not a NumPy array"
        if not a.flags.c_contiguous:
            return f"{what} is not C-contiguous (strides {a.strides}); use backend='auto' to run the reference for it"
        if a.dtype != p.dtype:
            return f"{what} has dtype {a.dtype}, the parameter {p.dtype}"
        if a is not g and not a.flags.writeable:
            return f"{what} is read-only"
        if a.shape != p.shape:
            return f"{what} has shape {a.shape}, the parameter {p.shape}"
    return ""


def _array_address(g: np.ndarray) -> tuple[int, int, str] | None:
    """Where the finite check can read ``g`` directly: a C-contiguous float32/float64 array."""
    if g.flags.c_contiguous and g.dtype in FLOAT_DTYPES:
        return g.ctypes.data, g.size, g.dtype.name
    return None


class Optimizer:
    """Base of the NumPy optimizers. Subclasses only name their algorithm spec.

    Args:
        params: a list of float32/float64 arrays, or a list of dicts ``{"params": [...], **options}`` (param groups)
            whose options override the optimizer's for that group.
        *args, **kwargs: the algorithm's hyperparameters, as in ``torch.optim`` (see the class signature).
        convention: a preset of defaults and flags (``"torch"``, ``"optax"``, ``"keras"``, ``"paper"``,
            ``"article"``); explicit arguments override it.
        backend: ``"auto"``, ``"reference"`` or ``"fused"``.
    """

    spec: ClassVar[AlgorithmSpec]

    def __init__(
        self,
        params: Any,
        *args: Any,
        convention: str = "torch",
        backend: str = "auto",
        nan_policy: str = "propagate",
        **kwargs: Any,
    ):
        try:
            bound = self._hp_signature().bind_partial(*args, **kwargs)
        except TypeError as exc:
            names = ", ".join(self.spec.hyperparams.names())
            raise TypeError(f"{self.spec.title}: {exc}; its hyperparameters are {names}") from None
        self.convention = check_convention(convention)
        self.backend = check_backend(backend)
        self.nan_policy = check_nan_policy(nan_policy)
        self._hps = HyperparamsCache(self.spec.hyperparams)
        self.skipped_steps = 0
        self.defaults: dict[str, Any] = self.spec.make(convention, **bound.arguments).as_dict()
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[int, dict[str, Any]] = {}
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
        options = {k: v for k, v in group.items() if k != "params"}
        hp_names = set(self.spec.hyperparams.names())
        merged = {**self.defaults, **options}
        hp = self.spec.hyperparams.from_group(merged)  # validates the group's hyperparameters
        merged.update({k: v for k, v in hp.as_dict().items() if k in hp_names})
        self.param_groups.append({"params": params, **merged})

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
        without a ``.grad``). Nothing is changed if any gradient or hyperparameter is invalid, or if
        ``backend="fused"`` and some parameter cannot run in the fused kernel.

        With the fused kernel, each param group is updated in one call (one per dtype and step count if they
        differ within the group); tensors the kernel cannot take (not C-contiguous) run the reference.
        """
        grads = self._check_grads(grads)
        hps = [self._hps.get(g) for g in self.param_groups]
        if self.nan_policy != "propagate":
            bad = first_nonfinite(grads, _array_address, lambda g: not np.isfinite(g).all())
            if bad is not None:
                if self.nan_policy == "raise":
                    raise refusal(bad, grads[bad].shape)
                self.skipped_steps += 1
                return
        work, index = [], 0
        for group, hp in zip(self.param_groups, hps):
            items = [(index + k, p, grads[index + k]) for k, p in enumerate(group["params"])]
            work.append(([item for item in items if item[2] is not None], hp))
            index += len(items)
        use_kernel = self.backend != "reference" and kernels.available()[0]
        if self.backend == "fused":
            for items, hp in work:
                for i, p, g in items:
                    why = _why_not_fused(p, g, self.state.get(i, {}), self.spec.state_slots(hp))
                    if why:
                        raise ValueError(f"backend='fused' cannot update parameter {i}: {why}")
        for items, hp in work:
            if use_kernel:
                self._fused_group(items, hp)
            else:
                for i, p, g in items:
                    self._update(i, p, g, hp, self._prepare(i, p, hp))

    def _prepare(self, index: int, p: np.ndarray, hp: Hyperparams) -> tuple[dict[str, Any], int, dict[str, float]]:
        """Create any missing state slot; return the state, this step's count and the advanced host scalars."""
        spec = self.spec
        state = self.state.setdefault(index, {})
        missing = [s for s in spec.state_slots(hp) if s not in state]
        if missing:
            fresh = spec.init_state(np, p, hp)
            state.update({s: fresh[s] for s in missing})
        if spec.has_step:
            step = int(state.get("step", 0)) + 1
        else:
            step = 1 if missing else 2
        host = {k: state.get(k, v) for k, v in spec.host_slots(hp).items()}
        return state, step, spec.advance_host(hp, step, host)

    def _commit(self, index: int, state: dict[str, Any], step: int, host: dict[str, float]) -> None:
        if self.spec.has_step:
            state["step"] = step
        state.update(host)
        if not state:  # SGD without momentum keeps no state, as in torch
            del self.state[index]

    def _update(
        self, index: int, p: np.ndarray, g: np.ndarray, hp: Hyperparams, prepared: tuple[Any, int, dict[str, float]]
    ) -> None:
        """The reference path for one parameter."""
        spec = self.spec
        state, step, host = prepared
        s = cast_scalars(spec.scalars(hp, step, host), p.dtype.type)
        spec.reference_update(np, p, g, {k: state[k] for k in spec.state_slots(hp)}, s)
        self._commit(index, state, step, host)

    def _fused_group(self, items: list[tuple[int, np.ndarray, np.ndarray]], hp: Hyperparams) -> None:
        """One kernel call per (dtype, step, host state) bucket of a group; the reference for what it cannot take."""
        spec = self.spec
        slots = spec.state_slots(hp)
        if items and self._fused_steady(items, hp, slots):
            return
        buckets: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
        for i, p, g in items:
            state, step, host = self._prepare(i, p, hp)
            key = (p.dtype, step, tuple(host.items()))
            buckets.setdefault(key, []).append((i, p, g, state, step, host))
        for (dtype, step, host_items), entries in buckets.items():
            s = spec.scalars(hp, step, dict(host_items))
            try:
                self._kernel(s, entries, slots, dtype)
                refused = [False] * len(entries)
            except (ValueError, TypeError):  # checked before anything runs: nothing was changed
                if self.backend == "fused":
                    raise
                refused = [bool(_why_not_fused(e[1], e[2], e[3], slots)) for e in entries]
                fused = [e for e, no in zip(entries, refused) if not no]
                if fused:
                    self._kernel(s, fused, slots, dtype)
            for e, no in zip(entries, refused):
                if no:
                    self._update(e[0], e[1], e[2], hp, (e[3], e[4], e[5]))
                else:
                    self._commit(e[0], e[3], e[4], e[5])

    def _fused_steady(self, items: list[tuple[int, np.ndarray, np.ndarray]], hp: Hyperparams, slots: Any) -> bool:
        """The common case in one kernel call, with no per-tensor Python work beyond gathering the lists: every
        tensor already has its state, at the same step and host state. Returns False, having changed nothing, when
        the case does not apply or the kernel refuses an array."""
        spec = self.spec
        host_keys = tuple(spec.host_slots(hp))
        states = [self.state.get(i) for i, _, _ in items]
        try:
            lists = {slot: [st[slot] for st in states] for slot in slots}
            steps = [st["step"] for st in states] if spec.has_step else [1]
            hosts = [tuple(st[k] for k in host_keys) for st in states] if host_keys else [()]
        except (KeyError, TypeError):  # a tensor without state (None) or without some slot yet
            return False
        if steps.count(steps[0]) != len(steps) or hosts.count(hosts[0]) != len(hosts):
            return False
        step = int(steps[0]) + 1 if spec.has_step else 2
        host = spec.advance_host(hp, step, dict(zip(host_keys, hosts[0])))
        dtype = items[0][1].dtype
        if any(p.dtype != dtype for _, p, _ in items):  # a mixed group takes the bucketed path, without a refusal
            return False
        try:
            kernels.step(
                spec.name,
                spec.scalars(hp, step, host),
                [p for _, p, _ in items],
                [g for _, _, g in items],
                lists,
                dtype=dtype.name,
            )
        except (ValueError, TypeError):  # checked before anything runs: nothing was changed
            return False
        if spec.has_step:
            for st in states:
                st["step"] = step
        if host:
            for st in states:
                st.update(host)
        return True

    def _kernel(self, s: Any, entries: list[tuple[Any, ...]], slots: tuple[str, ...], dtype: np.dtype) -> None:
        kernels.step(
            self.spec.name,
            s,
            [e[1] for e in entries],
            [e[2] for e in entries],
            {slot: [e[3][slot] for e in entries] for slot in slots},
            dtype=dtype.name,
        )

    # -- inspection and persistence -------------------------------------------------------------------------------

    def describe(self) -> str:
        """The rule in force for each param group, with its current hyperparameters, as plain text."""
        texts = []
        for i, group in enumerate(self.param_groups):
            text = self.spec.describe(self.spec.hyperparams.from_group(group))
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

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a snapshot from :meth:`state_dict`. It is checked whole first; on any mismatch (another
        algorithm, other shapes, other group sizes) a ValueError says what, and nothing is changed."""
        new_groups, new_state = checked_state(self.spec, self.param_groups, state_dict)
        for group, loaded in zip(self.param_groups, new_groups):
            group.update(loaded)
        self.state = new_state

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in group.items() if k != "params"]
        return "\n".join(lines + [")"])


def _make_class(name: str) -> type[Optimizer]:
    spec = registry.get(name)
    doc = (
        f"{spec.title} on NumPy arrays: {spec.summary}.\n\n"
        f"The rule, its flags and references are documented in :mod:`{spec.module.__name__}`; ``describe()`` prints "
        f"the rule in force. See :class:`descend.optim.Optimizer` for the arguments shared by every optimizer."
    )
    cls = type(spec.title, (Optimizer,), {"spec": spec, "__doc__": doc, "__module__": "descend"})
    hp_params = list(Optimizer.__dict__["_hp_signature"].__func__(cls).parameters.values())
    cls.__signature__ = inspect.Signature(
        [inspect.Parameter("params", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + hp_params
        + [
            inspect.Parameter("convention", inspect.Parameter.KEYWORD_ONLY, default="torch"),
            inspect.Parameter("backend", inspect.Parameter.KEYWORD_ONLY, default="auto"),
            inspect.Parameter("nan_policy", inspect.Parameter.KEYWORD_ONLY, default="propagate"),
        ]
    )
    return cls
