"""The optimizers the lab compares, by name: every algorithm in the registry, plus the variants that are a flag away
(Nesterov is SGD with Nesterov momentum, AMSGrad is Adam with ``amsgrad=True``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import descend
from descend.algorithms import REGISTRY

__all__ = ["CONTESTANTS", "DEFAULT_OPTIMIZERS", "Contestant", "get_contestant", "parse_names"]


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
        cls = descend.OPTIMIZERS[self.algorithm]
        if type(groups[0]["params"][0]).__module__.startswith("torch"):
            from descend.torch import OPTIMIZERS as TORCH_OPTIMIZERS

            cls = TORCH_OPTIMIZERS[self.algorithm]
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


CONTESTANTS: dict[str, Contestant] = {
    **_registry_contestants(),
    "nesterov": Contestant(
        "nesterov", "sgd", {"momentum": 0.9, "nesterov": True}, "momentum", "SGD with Nesterov momentum 0.9"
    ),
    "amsgrad": Contestant("amsgrad", "adam", {"amsgrad": True}, "betas", "Adam keeping the largest second moment"),
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
