"""``descend.torch.MuonWithAdamW``: Muon on the hidden weight matrices and AdamW on every other parameter, as one
``torch.optim.Optimizer``. The rule, the group keys and the defaults are those of :mod:`descend.muon_adamw`."""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import torch

from descend.algorithms._spec import AlgorithmSpec, Hyperparams, HyperparamsCache
from descend.algorithms.adam import ADAMW
from descend.algorithms.conventions import check_convention
from descend.algorithms.muon import MUON
from descend.backends import check_backend
from descend.engine import Engine
from descend.muon_adamw import (
    KEY,
    PREFIX,
    TORCH_ORDER,
    check_same_kinds,
    hyperparameter_signature,
    routes,
    split_arguments,
    split_group,
)
from descend.nonfinite import check_nan_policy
from descend.torch._optimizer import _TORCH, Optimizer, _check_tensor_hyperparams
from descend.torch._options import check_state_dtype
from descend.torch._state_check import check_state_dict, identity_keys

__all__ = ["MuonWithAdamW"]

_EMBEDDINGS = (torch.nn.Embedding, torch.nn.EmbeddingBag)
_IDENTITY = {
    True: identity_keys(MUON, TORCH_ORDER),
    False: identity_keys(ADAMW, ("lr", "betas", "eps", "weight_decay", "amsgrad")),
}


def _keyword(name: str, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)


class MuonWithAdamW(Optimizer):
    """Muon on the hidden weight matrices and AdamW on everything else (see :mod:`descend.muon_adamw`).

    Args:
        params: the model itself (an ``nn.Module``: its named parameters, and its ``nn.Embedding`` modules go to
            AdamW whatever their names), or what torch.optim takes: tensors, ``(name, tensor)`` pairs from
            ``named_parameters()`` (names let the rule see embeddings and the head), or param-group dicts.
        *args, **kwargs: torch.optim.Muon's arguments in its order, then keyword-only Muon's extra flags and every
            AdamW hyperparameter prefixed with ``adamw_``; then ``convention``, ``backend``, ``nan_policy`` and
            ``state_dtype`` as every ``descend.torch`` optimizer takes them.

    Each param group carries ``use_muon`` and its own algorithm's hyperparameters, so a scheduler scales every
    group's ``lr``; ``routes()`` lists where each parameter went.
    """

    __signature__: ClassVar[inspect.Signature] = inspect.Signature(
        [inspect.Parameter("params", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + hyperparameter_signature()
        + [
            _keyword("convention", "torch"),
            _keyword("backend", "auto"),
            _keyword("nan_policy", "propagate"),
            _keyword("state_dtype", None),
        ]
    )

    def __init__(self, params: Any, *args: Any, **kwargs: Any) -> None:
        try:
            bound = type(self).__signature__.bind(params, *args, **kwargs)
        except TypeError as exc:
            names = ", ".join(p for p in type(self).__signature__.parameters if p != "params")
            raise TypeError(f"MuonWithAdamW: {exc}; its arguments are {names}") from None
        explicit = dict(bound.arguments)
        explicit.pop("params")
        self.convention = check_convention(explicit.pop("convention", "torch"))
        self.backend = check_backend(explicit.pop("backend", "auto"))
        self.nan_policy = check_nan_policy(explicit.pop("nan_policy", "propagate"))
        self.state_dtype = check_state_dtype("MuonWithAdamW", explicit.pop("state_dtype", None))
        _check_tensor_hyperparams("MuonWithAdamW", {"lr": explicit.get("lr")}, False)
        _check_tensor_hyperparams("MuonWithAdamW", {"lr": explicit.get(PREFIX + "lr")}, False)
        self.kind_defaults = split_arguments(self.convention, explicit)
        self._reset_caches()
        self._engine = self._new_engine()
        self._embeddings: set[int] = set()
        if isinstance(params, torch.nn.Module):
            self._embeddings = {
                id(p) for m in params.modules() if isinstance(m, _EMBEDDINGS) for p in m.parameters(recurse=False)
            }
            params = list(params.named_parameters())
        try:
            torch.optim.Optimizer.__init__(self, params, {})
        finally:
            self._embeddings = set()  # the model's embeddings are known for the groups it gave, not later ones
        self.defaults = {**self.kind_defaults[True], **{PREFIX + k: v for k, v in self.kind_defaults[False].items()}}

    # -- groups ---------------------------------------------------------------------------------------------------

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group: split by the rule unless it sets ``use_muon`` (see :mod:`descend.muon_adamw`).
        Nothing is added if any part is refused."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group)}")
        raw = param_group["params"]
        items = [raw] if isinstance(raw, torch.Tensor) else list(raw)
        named = [isinstance(p, tuple) for p in items]
        tensors = [p[1] if isinstance(p, tuple) else p for p in items]
        names = [p[0] for p in items] if items and all(named) else None
        options = {k: v for k, v in param_group.items() if k not in ("params", "param_names")}
        ndims = [p.ndim if isinstance(p, torch.Tensor) else 0 for p in tensors]
        embedding = [id(p) in self._embeddings for p in tensors]
        parts = []
        for kind, chosen, hp in split_group(options, ndims, names, embedding):
            merged = {**self.kind_defaults[kind], **hp, KEY: kind}
            _check_tensor_hyperparams("MuonWithAdamW", merged, False)
            (MUON if kind else ADAMW).hyperparams.from_group(merged)  # validates before anything is added
            parts.append((kind, {"params": [items[i] for i in chosen], **merged}))
        before = len(self.param_groups)
        try:
            for kind, part in parts:
                # torch's add_param_group fills a group's missing keys from self.defaults, which here holds the
                # constructor's keys of both algorithms; each part already has all of its own, so none is needed
                defaults, self.defaults = self.defaults, {}
                try:
                    torch.optim.Optimizer.add_param_group(self, part)
                finally:
                    self.defaults = defaults
                if kind:
                    self._check_shapes(MUON, self.param_groups[-1])
        except BaseException:
            del self.param_groups[before:]
            raise

    _rule_per_group = True

    def _group_rule(self, group: dict[str, Any]) -> tuple[AlgorithmSpec | None, Hyperparams]:
        kind = bool(group[KEY])
        return (MUON if kind else ADAMW), self._caches[kind].get(group)

    def _reset_caches(self) -> None:
        self._caches = {True: HyperparamsCache(MUON.hyperparams), False: HyperparamsCache(ADAMW.hyperparams)}

    def _new_engine(self) -> Engine:
        if self._format is not None:
            raise ValueError(
                f"MuonWithAdamW keeps no low-bit state (Muon has no fused kernel): state_dtype={self._format.dtype!r} "
                "is not allowed; use state_dtype=None or torch.float32"
            )
        self._plans: dict[int, Any] = {}
        return Engine(
            MUON,
            _TORCH,
            lambda: self.state,
            nan_policy=self.nan_policy,
            state_dtype=self.state_dtype,
            threads=torch.get_num_threads,
        )

    def routes(self) -> list[tuple[str, tuple[int, ...], str]]:
        """Where each parameter went: ``(name, shape, "Muon" or "AdamW")``, in group order (``"param <i>"`` for a
        parameter without a name)."""
        return routes(self.param_groups, lambda p: p.shape)

    # -- persistence ----------------------------------------------------------------------------------------------

    def _check_loadable(self, state_dict: dict[str, Any], filled: list[dict[str, Any]]) -> None:
        check_same_kinds(self.param_groups, state_dict)
        kinds = [bool(group[KEY]) for group in self.param_groups]
        check_state_dict(
            [MUON if kind else ADAMW for kind in kinds],
            "MuonWithAdamW",
            self.param_groups,
            state_dict,
            [_IDENTITY[kind] for kind in kinds],
            filled=filled,
        )

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "kind_defaults": self.kind_defaults}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._embeddings = set()
        super().__setstate__(state)
        self.defaults.pop("differentiable", None)  # torch's __setstate__ adds it; no group here takes it

    def _group_defaults(self, group: dict[str, Any]) -> dict[str, Any]:
        return self.kind_defaults[bool(group[KEY])]
