"""The optimizers the lab compares, by name: every algorithm in the registry, plus the variants that are a flag away
(Nesterov is SGD with Nesterov momentum, AMSGrad is Adam with ``amsgrad=True``), and Muon with AdamW
(``muon-adamw``: Muon on every weight matrix, AdamW on the rest, see :class:`MuonAdamWContestant`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import descend
from descend.algorithms import REGISTRY

__all__ = [
    "CONTESTANTS",
    "DEFAULT_OPTIMIZERS",
    "Contestant",
    "MuonAdamWContestant",
    "get_contestant",
    "param_shapes",
    "parse_names",
]


def param_shapes(problem: Any) -> list[tuple[int, ...]]:
    """The shapes of one run's parameters of ``problem`` (its arrays without the leading run axis)."""
    from descend.lab.problems import run_rngs

    return [tuple(a.shape[1:]) for a in problem.init(run_rngs(problem.stream, [0]))]


def _optimizer_classes(sample: Any) -> Any:
    """``descend.OPTIMIZERS`` for arrays, ``descend.torch.OPTIMIZERS`` for tensors."""
    if type(sample).__module__.startswith("torch"):
        from descend.torch import OPTIMIZERS as TORCH_OPTIMIZERS

        return TORCH_OPTIMIZERS
    return descend.OPTIMIZERS


@dataclass(frozen=True)
class Contestant:
    """An optimizer as the lab runs it.

    Attributes:
        name: the name used on the command line and in reports.
        algorithm: the registry name of the update rule.
        fixed: hyperparameters that define the variant (``{"amsgrad": True}``).
        momentum_knob: the hyperparameter that plays the role of momentum, tuned with ``tune_momentum``
            (``"betas"`` means beta1, with beta2 left as it is), or None.
        summary: one line for tables.
    """

    name: str
    algorithm: str
    fixed: Mapping[str, Any] = field(default_factory=dict)
    momentum_knob: str | None = None
    summary: str = ""

    def hyperparameter_names(self) -> tuple[str, ...]:
        """The hyperparameters the update rule accepts."""
        return REGISTRY[self.algorithm].hyperparams.names()

    def defaults(self, convention: str) -> dict[str, Any]:
        """The hyperparameters in force under ``convention`` with this variant's flags, before any tuning."""
        return REGISTRY[self.algorithm].make(convention, **dict(self.fixed)).as_dict()

    @property
    def needs_closure(self) -> bool:
        """Whether the update rule is closure-driven (L-BFGS): its ``step`` takes a closure, not gradients."""
        return not REGISTRY[self.algorithm].elementwise

    @property
    def whole_tensor(self) -> bool:
        """Whether the rule reads each parameter whole (Muon): then each run's slice of a problem's stacked arrays is
        a parameter of its own (an elementwise rule steps every run of a problem as one array)."""
        return getattr(REGISTRY[self.algorithm], "whole_tensor", False)

    def applies_to(self, shapes: Sequence[tuple[int, ...]]) -> bool:
        """Whether it can run on a problem whose parameters (one run's) have these shapes: Muon takes matrices only."""
        ndim = REGISTRY[self.algorithm].param_ndim
        return ndim is None or all(len(shape) == ndim for shape in shapes)

    def in_force(self, opt: Any, settings: int) -> list[dict[str, Any]]:
        """The hyperparameters in force per setting of an optimizer :meth:`build_groups` made (one group each)."""
        return [{k: v for k, v in group.items() if k not in ("params", "param_names")} for group in opt.param_groups]

    def torch_optimizer(self, model: Any, convention: str, **hyperparams: Any) -> Any:
        """A ``descend.torch`` optimizer over the parameters of ``model`` with the variant's flags."""
        from descend.torch import OPTIMIZERS as TORCH_OPTIMIZERS

        cls = TORCH_OPTIMIZERS[self.algorithm]
        return cls(model.parameters(), convention=convention, **{**dict(self.fixed), **hyperparams})

    def closure_runs(
        self,
        problem: Any,
        params: Sequence[Any],
        runs: int,
        convention: str,
        settings: Sequence[Mapping[str, Any]],
        rngs: Sequence[np.random.Generator],
    ) -> Any:
        """For a closure-driven rule, one optimizer per run and setting over the stacked ``params`` (see
        :class:`descend.lab.closure_runs.ClosureRuns`); None for an elementwise one, which :meth:`build_groups`
        builds."""
        if not self.needs_closure:
            return None
        from descend.lab.closure_runs import ClosureRuns

        cls = descend.OPTIMIZERS[self.algorithm]
        if problem.framework == "torch":
            from descend.torch import OPTIMIZERS as TORCH_OPTIMIZERS

            cls = TORCH_OPTIMIZERS[self.algorithm]
        hp = [{**dict(self.fixed), **dict(s)} for s in settings]
        return ClosureRuns(problem, cls, params, runs, hp, convention, rngs)

    def build(self, params: Sequence[np.ndarray], convention: str, hyperparams: Mapping[str, Any]) -> Any:
        """A NumPy optimizer over ``params`` with the variant's flags and ``hyperparams`` on top.

        The lab's problems are small, so the reference backend (one NumPy expression per operation, no thread pool to
        wake) is the faster one here; by the project's numerical contract the fused backend gives the same numbers.
        """
        cls = descend.OPTIMIZERS[self.algorithm]
        hp = {**dict(self.fixed), **dict(hyperparams)}
        return cls(list(params), convention=convention, backend="reference", **hp)

    def build_groups(
        self, groups: Sequence[Mapping[str, Any]], convention: str, settings: Sequence[Mapping[str, Any]]
    ) -> Any:
        """One optimizer with a param group per setting: ``groups[j]["params"]`` updated with ``settings[j]``.

        Tensors get the ``descend.torch`` optimizer of the same rule, arrays the NumPy one.
        """
        cls = _optimizer_classes(groups[0]["params"][0])[self.algorithm]
        hp = [{**dict(self.fixed), **dict(s)} for s in settings]
        return cls(
            [{"params": list(g["params"]), **h} for g, h in zip(groups, hp)],
            convention=convention,
            backend="reference",
            **dict(self.fixed),
        )


def _registry_contestants() -> dict[str, Contestant]:
    knobs = {"momentum": "beta", "rmsprop": None, "adagrad": None, "adadelta": None, "sgd": None}
    out = {}
    for name, spec in REGISTRY.items():
        knob = knobs.get(name, "betas" if "betas" in spec.hyperparams.names() else None)
        if spec.elementwise:
            out[name] = Contestant(name, name, {}, knob, spec.summary)
        else:  # steps are compared one for one: a closure-driven method runs one iteration per step
            summary = f"{spec.summary}; one iteration per step here"
            out[name] = Contestant(name, name, dict(spec.one_iteration), knob, summary)
    return out


@dataclass(frozen=True)
class MuonAdamWContestant(Contestant):
    """Muon with AdamW (``MuonWithAdamW``) as the lab runs it: Muon on every weight matrix of a run (the lab's
    parameters have no names, so the output layer's matrix goes to Muon too), AdamW on the biases, with
    ``adjust_lr_fn="match_rms_adamw"`` so that one learning rate suits both (Liu et al. 2025). ``lr`` and
    ``weight_decay``, when set, apply to both parts; ``adamw_``-prefixed keys to AdamW alone. It runs where a problem
    has a matrix."""

    def hyperparameter_names(self) -> tuple[str, ...]:
        from descend.muon_adamw import constructor_defaults

        return tuple(constructor_defaults("torch"))

    def defaults(self, convention: str) -> dict[str, Any]:
        from descend.muon_adamw import constructor_defaults

        return {**constructor_defaults(convention), **dict(self.fixed)}

    @property
    def whole_tensor(self) -> bool:
        return True

    def applies_to(self, shapes: Sequence[tuple[int, ...]]) -> bool:
        return any(len(shape) == 2 for shape in shapes)

    def _groups(self, params: Sequence[Any], setting: Mapping[str, Any]) -> list[dict[str, Any]]:
        hp = {**dict(self.fixed), **dict(setting)}
        muon = {k: v for k, v in hp.items() if not k.startswith("adamw_")}
        adamw = {k: hp[k] for k in ("lr", "weight_decay") if k in hp}
        adamw.update({k[len("adamw_") :]: v for k, v in hp.items() if k.startswith("adamw_")})
        parts = [(True, [p for p in params if p.ndim == 2], muon), (False, [p for p in params if p.ndim != 2], adamw)]
        return [{"params": chosen, "use_muon": kind, **options} for kind, chosen, options in parts if chosen]

    def build(self, params: Sequence[np.ndarray], convention: str, hyperparams: Mapping[str, Any]) -> Any:
        return descend.MuonWithAdamW(
            self._groups(list(params), hyperparams), convention=convention, backend="reference"
        )

    def build_groups(
        self, groups: Sequence[Mapping[str, Any]], convention: str, settings: Sequence[Mapping[str, Any]]
    ) -> Any:
        cls = descend.MuonWithAdamW
        if type(groups[0]["params"][0]).__module__.startswith("torch"):
            from descend.torch import MuonWithAdamW as TorchMuonWithAdamW

            cls = TorchMuonWithAdamW
        parts = [part for g, s in zip(groups, settings) for part in self._groups(list(g["params"]), s)]
        return cls(parts, convention=convention, backend="reference")

    def in_force(self, opt: Any, settings: int) -> list[dict[str, Any]]:
        per = len(opt.param_groups) // settings
        out = []
        for j in range(settings):
            merged: dict[str, Any] = {}
            for group in opt.param_groups[j * per : (j + 1) * per]:
                prefix = "" if group["use_muon"] else "adamw_"
                skip = ("params", "param_names", "use_muon")
                merged.update({prefix + k: v for k, v in group.items() if k not in skip})
            out.append(merged)
        return out

    def torch_optimizer(self, model: Any, convention: str, **hyperparams: Any) -> Any:
        from descend.torch import MuonWithAdamW as TorchMuonWithAdamW

        return TorchMuonWithAdamW(self._groups(list(model.parameters()), hyperparams), convention=convention)


CONTESTANTS: dict[str, Contestant] = {
    **_registry_contestants(),
    "nesterov": Contestant(
        "nesterov", "sgd", {"momentum": 0.9, "nesterov": True}, "momentum", "SGD with Nesterov momentum 0.9"
    ),
    "amsgrad": Contestant("amsgrad", "adam", {"amsgrad": True}, "betas", "Adam keeping the largest second moment"),
    "muon-adamw": MuonAdamWContestant(
        "muon-adamw",
        "muon",
        {"adjust_lr_fn": "match_rms_adamw"},
        "momentum",
        "Muon on every weight matrix (its step sized as AdamW's), AdamW on the rest, one learning rate",
    ),
}

DEFAULT_OPTIMIZERS: tuple[str, ...] = (
    "sgd",
    "momentum",
    "nesterov",
    "rmsprop",
    "adagrad",
    "adam",
    "adamw",
    "nadam",
    "amsgrad",
    "lion",
    "adamw_schedulefree",
    "muon-adamw",  # on the problems with a matrix only
)


def get_contestant(name: str) -> Contestant:
    """The optimizer called ``name`` in the lab, or a ValueError listing the known names."""
    if isinstance(name, str) and name.strip().lower() in CONTESTANTS:
        return CONTESTANTS[name.strip().lower()]
    raise ValueError(f"Unknown optimizer {name!r}; known optimizers are {', '.join(CONTESTANTS)}")


def parse_names(text: str | None, known: Mapping[str, Any], what: str, default: Sequence[str]) -> list[str]:
    """Split a comma-separated list of names and check each against ``known``.

    Raises:
        ValueError: a name is unknown, repeated, or the list is empty; the message names it and lists the known ones.
    """
    if text is None:
        return list(default)
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError(f"--{what} got an empty list; give names separated by commas, from: {', '.join(known)}")
    for name in names:
        if name not in known:
            raise ValueError(f"Unknown {what[:-1]} {name!r}; known {what} are {', '.join(known)}")
    if len(set(names)) != len(names):
        raise ValueError(f"--{what} lists a name twice: {text!r}")
    return names
