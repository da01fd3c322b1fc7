"""Muon for the hidden weight matrices and AdamW for every other parameter, in one optimizer.

Muon is meant for the 2-D weights of hidden layers only: an embedding, the output head, biases and norm gains should
be trained with a standard method such as AdamW (Jordan et al. 2024). ``MuonWithAdamW`` (``descend.MuonWithAdamW``
for NumPy arrays, ``descend.torch.MuonWithAdamW`` for torch) takes all of a model's parameters, sends each to one of
the two by the rule below, and keeps everything in one place: one ``step``, one ``state_dict``, and every param
group in ``param_groups`` (so a learning-rate scheduler sees them all), each with the hyperparameters of its own
algorithm. Each group carries ``use_muon``: True for a Muon group, False for an AdamW group.

The rule. A parameter goes to Muon when it is 2-D and is neither an embedding nor the output head; every other
parameter goes to AdamW. Embeddings and the head are told by name, so the rule needs names: pass
``model.named_parameters()`` (``(name, tensor)`` pairs, as torch.optim takes them), or on the torch front the model
itself. A parameter is an embedding when a part of its dotted name contains ``embed`` or is ``wte`` or ``wpe``
(GPT-2's token and position tables), or, when the model is given, when it belongs to an ``nn.Embedding`` or
``nn.EmbeddingBag``. It is the output head when the module holding it is called ``lm_head``, ``head``,
``classifier`` or ``output`` (``lm_head.weight``, but not ``attention.output.dense.weight``). Without names only
the shape decides: every 2-D parameter goes to Muon.

Overriding it. A param group that sets ``use_muon`` goes whole to the algorithm it names, and its keys are that
algorithm's hyperparameters under their own names (``{"params": ..., "use_muon": False, "lr": 3e-4}``). A group
without ``use_muon`` is split by the rule into a Muon group and an AdamW group (in that order; an empty one is left
out), and its keys are those of the constructor: Muon's under their own names, AdamW's with the prefix ``adamw_``.

Hyperparameters. The constructor takes torch.optim.Muon's arguments in its order (``lr``, ``weight_decay``,
``momentum``, ...), then, keyword-only, Muon's extra flags and every AdamW hyperparameter prefixed with ``adamw_``
(``adamw_lr``, ``adamw_betas``, ``adamw_eps``, ``adamw_weight_decay``, ...). The defaults are each class's own under
the convention: ``MuonWithAdamW(params)`` runs what ``torch.optim.Muon`` on the hidden matrices and
``torch.optim.AdamW`` on the rest run with their defaults. ``adjust_lr_fn="match_rms_adamw"`` scales Muon's step to
the size of AdamW's, so that both can share one learning rate (Liu et al. 2025).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from descend.algorithms._spec import AlgorithmSpec, Hyperparams, HyperparamsCache
from descend.algorithms.adam import ADAMW
from descend.algorithms.conventions import check_convention
from descend.algorithms.muon import MUON
from descend.backends import NUMPY_BACKENDS, check_backend
from descend.engine import Engine
from descend.nonfinite import check_nan_policy
from descend.optim import _NUMPY, Optimizer

__all__ = [
    "HEAD_NAMES",
    "KEY",
    "PREFIX",
    "MuonWithAdamW",
    "constructor_defaults",
    "hyperparameter_signature",
    "is_embedding_name",
    "is_head_name",
    "routes_to_muon",
    "split_group",
]

KEY = "use_muon"
PREFIX = "adamw_"
EMBEDDING_NAMES = ("wte", "wpe")
HEAD_NAMES = ("lm_head", "head", "classifier", "output")

# Muon's arguments in torch.optim.Muon's order; the rest of both algorithms' hyperparameters are keyword-only.
TORCH_ORDER = ("lr", "weight_decay", "momentum", "nesterov", "ns_coefficients", "eps", "ns_steps", "adjust_lr_fn")


def is_embedding_name(name: str) -> bool:
    """Whether a dotted parameter name names an embedding (a part containing ``embed``, or ``wte``/``wpe``)."""
    parts = name.lower().split(".")
    return any("embed" in part or part in EMBEDDING_NAMES for part in parts)


def is_head_name(name: str) -> bool:
    """Whether a dotted parameter name belongs to an output head: the module holding it is one of
    :data:`HEAD_NAMES`."""
    parts = name.split(".")
    return len(parts) >= 2 and parts[-2].lower() in HEAD_NAMES


def routes_to_muon(ndim: int, name: str | None = None, embedding: bool = False) -> bool:
    """The rule: 2-D, and neither an embedding (by name, or ``embedding`` for an embedding module's parameter) nor
    the output head. Without a name only the shape decides."""
    if ndim != 2 or embedding:
        return False
    return name is None or not (is_embedding_name(name) or is_head_name(name))


def _keys_text(spec: AlgorithmSpec, prefix: str = "") -> str:
    return ", ".join(prefix + name for name in spec.hyperparams.names())


def split_group(
    options: Mapping[str, Any], ndims: Sequence[int], names: Sequence[str] | None, embedding: Sequence[bool]
) -> list[tuple[bool, list[int], dict[str, Any]]]:
    """What a user's param group becomes: ``(use_muon, indices of its params, hyperparameters)`` per part.

    Args:
        options: the group's keys other than ``params`` (and ``param_names``).
        ndims, names, embedding: per parameter, its number of dimensions, its name (or None for no names), and
            whether it belongs to an embedding module.

    Raises:
        TypeError: ``use_muon`` is not a bool.
        ValueError: a key that the group's algorithm (or, without ``use_muon``, the constructor) does not take.
    """
    if KEY in options:
        kind = options[KEY]
        if not isinstance(kind, bool) and type(kind).__name__ != "bool_":
            raise TypeError(f"{KEY} must be True or False, got {kind!r} of type {type(kind).__name__}")
        kind = bool(kind)
        spec = MUON if kind else ADAMW
        unknown = sorted(set(options) - set(spec.hyperparams.names()) - {KEY})
        if unknown:
            raise ValueError(
                f"a param group with {KEY}={kind} takes {spec.title}'s hyperparameters under their own names "
                f"({_keys_text(spec)}); got {', '.join(unknown)}"
            )
        hp = {k: v for k, v in options.items() if k != KEY}
        return [(kind, list(range(len(ndims))), hp)]
    own: dict[bool, dict[str, Any]] = {True: {}, False: {}}
    unknown = []
    adamw_names = set(ADAMW.hyperparams.names())
    for key, value in options.items():
        if key.startswith(PREFIX) and key[len(PREFIX) :] in adamw_names:
            own[False][key[len(PREFIX) :]] = value
        elif key in MUON.hyperparams.names():
            own[True][key] = value
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(
            f"unknown key(s) {', '.join(sorted(unknown))} in a param group without {KEY}: it takes Muon's "
            f"hyperparameters ({_keys_text(MUON)}) and AdamW's prefixed with {PREFIX!r} ({_keys_text(ADAMW, PREFIX)}); "
            f"or set {KEY}=True or False to give one algorithm's under their own names"
        )
    route = [routes_to_muon(ndim, None if names is None else names[i], embedding[i]) for i, ndim in enumerate(ndims)]
    parts = [(kind, [i for i, r in enumerate(route) if r == kind], own[kind]) for kind in (True, False)]
    kept = [part for part in parts if part[1]]
    return kept or [parts[0]]  # no params at all: one empty group, which the front refuses as it refuses any


def constructor_defaults(convention: str) -> dict[str, Any]:
    """The constructor's defaults under ``convention``: Muon's, then AdamW's prefixed."""
    return {
        **MUON.defaults(convention),
        **{PREFIX + k: v for k, v in ADAMW.defaults(convention).items()},
    }


def hyperparameter_signature() -> list[inspect.Parameter]:
    """The constructor's hyperparameters: Muon's in torch.optim.Muon's order, then keyword-only Muon's extra flags
    and AdamW's prefixed (defaults: the "torch" convention's)."""
    positional, keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY
    defaults = constructor_defaults("torch")
    names = list(TORCH_ORDER)
    names += [n for n in MUON.hyperparams.names() if n not in TORCH_ORDER]
    names += [PREFIX + n for n in ADAMW.hyperparams.names()]
    return [inspect.Parameter(n, positional if n in TORCH_ORDER else keyword, default=defaults[n]) for n in names]


def split_arguments(convention: str, explicit: Mapping[str, Any]) -> dict[bool, dict[str, Any]]:
    """The defaults of Muon groups (True) and AdamW groups (False): each algorithm's under ``convention``, then the
    constructor's arguments given explicitly (validated here)."""
    muon = {k: v for k, v in explicit.items() if not k.startswith(PREFIX)}
    adamw = {k[len(PREFIX) :]: v for k, v in explicit.items() if k.startswith(PREFIX)}
    MUON.make(convention, **muon)
    ADAMW.make(convention, **adamw)
    return {True: {**MUON.defaults(convention), **muon}, False: {**ADAMW.defaults(convention), **adamw}}


def group_spec(group: Mapping[str, Any]) -> AlgorithmSpec:
    return MUON if group[KEY] else ADAMW


def routes(param_groups: Sequence[Mapping[str, Any]], shape: Any) -> list[tuple[str, tuple[int, ...], str]]:
    """``(name, shape, algorithm)`` per parameter, in group order; a parameter without a name is ``"param <i>"``."""
    out, i = [], 0
    for group in param_groups:
        names = group.get("param_names")
        for k, p in enumerate(group["params"]):
            name = names[k] if names else f"param {i}"
            out.append((name, tuple(shape(p)), group_spec(group).title))
            i += 1
    return out


class MuonWithAdamW(Optimizer):
    """Muon on the hidden weight matrices and AdamW on everything else, for NumPy arrays (see the module docstring).

    Args:
        params: a list of arrays, of ``(name, array)`` pairs (names let the rule see embeddings and the head), or
            of param-group dicts (see the module docstring for their keys).
        *args, **kwargs: Muon's hyperparameters in torch.optim.Muon's order, then keyword-only Muon's extra flags
            and AdamW's prefixed with ``adamw_``; ``convention``, ``backend`` and ``nan_policy`` as every
            optimizer takes them.

    ``step(grads)`` takes the gradients in the order of :attr:`params`, which is group order: a group the rule
    splits lists its Muon parameters first.
    """

    def __init__(
        self,
        params: Any,
        *args: Any,
        convention: str = "torch",
        backend: str = "auto",
        nan_policy: str = "propagate",
        **kwargs: Any,
    ) -> None:
        try:
            bound = inspect.Signature(hyperparameter_signature()).bind_partial(*args, **kwargs)
        except TypeError as exc:
            names = ", ".join(p.name for p in hyperparameter_signature())
            raise TypeError(f"MuonWithAdamW: {exc}; its hyperparameters are {names}") from None
        self.convention = check_convention(convention)
        self.backend = check_backend(backend, NUMPY_BACKENDS)
        self.nan_policy = check_nan_policy(nan_policy)
        self.state_dtype = None  # no low-bit state (Muon has no kernel): the state takes the params' dtype
        self.kind_defaults = split_arguments(self.convention, bound.arguments)
        self.defaults: dict[str, Any] = {
            **self.kind_defaults[True],
            **{PREFIX + k: v for k, v in self.kind_defaults[False].items()},
        }
        self._caches = {True: HyperparamsCache(MUON.hyperparams), False: HyperparamsCache(ADAMW.hyperparams)}
        self.state: dict[int, dict[str, Any]] = {}
        self._engine = Engine(MUON, _NUMPY, lambda: self.state, nan_policy=self.nan_policy)
        self._add_groups(params)

    def add_param_group(self, group: Mapping[str, Any]) -> None:
        """Add a param group: split by the rule unless it sets ``use_muon`` (see the module docstring). Nothing is
        added if any part is refused."""
        if not isinstance(group, Mapping) or "params" not in group:
            raise TypeError(f"a param group must be a dict with a 'params' key, got {group!r}")
        raw = group["params"]
        if isinstance(raw, np.ndarray) or not isinstance(raw, Iterable) or isinstance(raw, (str, bytes, Mapping)):
            return super().add_param_group(group)  # refused there, with the front's own message
        items = list(raw)
        named = [isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in items]
        if any(named) and not all(named):
            raise ValueError("all optimizer params should be with/without names. Some param names are missing")
        names = [p[0] for p in items] if items and all(named) else None
        arrays = [p[1] for p in items] if names is not None else items
        options = {k: v for k, v in group.items() if k not in ("params", "param_names")}
        ndims = [getattr(p, "ndim", 0) for p in arrays]
        parts = split_group(options, ndims, names, [False] * len(arrays))
        before = len(self.param_groups)
        try:
            for kind, chosen, hp in parts:
                part = {"params": [arrays[i] for i in chosen], KEY: kind, **hp}
                if names is not None:
                    part["param_names"] = [names[i] for i in chosen]
                super().add_param_group(part)
        except BaseException:
            del self.param_groups[before:]
            raise

    def _rule_for(self, options: Mapping[str, Any]) -> tuple[AlgorithmSpec, dict[str, Any]]:
        kind = bool(options[KEY])
        return (MUON if kind else ADAMW), self.kind_defaults[kind]

    def _group_rule(self, group: Mapping[str, Any]) -> tuple[AlgorithmSpec | None, Hyperparams]:
        kind = bool(group[KEY])
        return (MUON if kind else ADAMW), self._caches[kind].get(group)

    def routes(self) -> list[tuple[str, tuple[int, ...], str]]:
        """Where each parameter went: ``(name, shape, "Muon" or "AdamW")``, in the order of :attr:`params`."""
        return routes(self.param_groups, lambda p: p.shape)

    @property
    def algorithm(self) -> str:
        return "muon_with_adamw"

    def _checked(self, state_dict: Mapping[str, Any]) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]], Any]:
        check_same_kinds(self.param_groups, state_dict)  # each saved group runs the algorithm this one runs
        return super()._checked(state_dict)


def check_same_kinds(groups: Sequence[Mapping[str, Any]], state_dict: Any) -> None:
    """Refuse a state_dict whose groups run other algorithms than ``groups`` (its ``use_muon`` differs)."""
    saved = state_dict.get("param_groups") if isinstance(state_dict, Mapping) else None
    if not isinstance(saved, (list, tuple)):
        return  # the full check says what is wrong
    for i, (mine, theirs) in enumerate(zip(groups, saved)):
        if isinstance(theirs, Mapping) and theirs.get(KEY) is not None and bool(theirs.get(KEY)) != bool(mine[KEY]):
            raise ValueError(
                f"param group {i} of the state_dict has {KEY}={theirs.get(KEY)!r}, this optimizer's has "
                f"{KEY}={mine[KEY]!r}: they run different algorithms"
            )


MuonWithAdamW.__signature__ = inspect.Signature(
    [inspect.Parameter("params", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    + hyperparameter_signature()
    + [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
        for name, default in (("convention", "torch"), ("backend", "auto"), ("nan_policy", "propagate"))
    ]
)
