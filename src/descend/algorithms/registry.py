"""Name -> algorithm spec. The fronts, the tests, the CLI and the docs iterate over this mapping."""

from __future__ import annotations

from descend.algorithms._spec import AlgorithmSpec
from descend.algorithms.adadelta import ADADELTA
from descend.algorithms.adagrad import ADAGRAD
from descend.algorithms.adam import ADAM, ADAMW
from descend.algorithms.adamax import ADAMAX
from descend.algorithms.asgd import ASGD
from descend.algorithms.lion import LION
from descend.algorithms.momentum import MOMENTUM
from descend.algorithms.muon import MUON
from descend.algorithms.nadam import NADAM
from descend.algorithms.radam import RADAM
from descend.algorithms.rmsprop import RMSPROP
from descend.algorithms.rprop import RPROP
from descend.algorithms.sgd import SGD

REGISTRY: dict[str, AlgorithmSpec] = {
    spec.name: spec
    for spec in (SGD, MOMENTUM, RMSPROP, ADAGRAD, ADADELTA, ADAM, ADAMW, ADAMAX, NADAM, RADAM, LION, RPROP, ASGD, MUON)
}


def get(name: str) -> AlgorithmSpec:
    """The spec registered as ``name`` (case-insensitive), or a ValueError listing the known names."""
    key = name.lower() if isinstance(name, str) else name
    try:
        return REGISTRY[key]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown algorithm {name!r}; known algorithms are {', '.join(REGISTRY)}") from None
