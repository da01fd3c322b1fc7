"""Name -> algorithm spec. The fronts, the tests, the CLI and the docs iterate over this mapping.

Most specs are elementwise (:class:`~descend.algorithms.AlgorithmSpec`); a closure-driven one (L-BFGS) is a
:class:`~descend.algorithms.ClosureSpec`. Whatever needs an elementwise rule (the engine, the kernels, their tests)
asks ``spec.elementwise``, or iterates :data:`ELEMENTWISE`.
"""

from __future__ import annotations

from descend.algorithms._spec import AlgorithmSpec, Spec
from descend.algorithms.adadelta import ADADELTA
from descend.algorithms.adafactor import ADAFACTOR
from descend.algorithms.adagrad import ADAGRAD
from descend.algorithms.adam import ADAM, ADAMW
from descend.algorithms.adamax import ADAMAX
from descend.algorithms.adamw_schedulefree import ADAMW_SCHEDULEFREE
from descend.algorithms.asgd import ASGD
from descend.algorithms.lbfgs import LBFGS
from descend.algorithms.lion import LION
from descend.algorithms.momentum import MOMENTUM
from descend.algorithms.muon import MUON
from descend.algorithms.nadam import NADAM
from descend.algorithms.radam import RADAM
from descend.algorithms.rmsprop import RMSPROP
from descend.algorithms.rprop import RPROP
from descend.algorithms.sgd import SGD
from descend.algorithms.sparse_adam import SPARSE_ADAM

REGISTRY: dict[str, Spec] = {
    spec.name: spec
    for spec in (
        SGD,
        MOMENTUM,
        RMSPROP,
        ADAGRAD,
        ADADELTA,
        ADAM,
        ADAMW,
        ADAMAX,
        NADAM,
        RADAM,
        LION,
        RPROP,
        ASGD,
        ADAMW_SCHEDULEFREE,
        LBFGS,
        MUON,
        ADAFACTOR,
        SPARSE_ADAM,
    )
}

# The elementwise algorithms: the ones the engine runs, with a reference_update (the fused kernels run those with a
# kernel line; Muon's rule reads whole matrices and has none).
ELEMENTWISE: dict[str, AlgorithmSpec] = {name: spec for name, spec in REGISTRY.items() if spec.elementwise}


def get(name: str) -> Spec:
    """The spec registered as ``name`` (case-insensitive), or a ValueError listing the known names."""
    key = name.lower() if isinstance(name, str) else name
    try:
        return REGISTRY[key]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown algorithm {name!r}; known algorithms are {', '.join(REGISTRY)}") from None
