"""The NumPy optimizers, one class per algorithm; :data:`OPTIMIZERS` maps every registry name to its class.

Each class only names its algorithm's spec: the signature (the hyperparameters in torch's order, then
``convention``, ``backend`` and ``nan_policy``) and the behaviour come from :class:`descend.optim.Optimizer`, or for a
closure-driven algorithm (L-BFGS, whose ``step`` takes a closure) from :class:`descend.closure.ClosureOptimizer`. An
algorithm in the registry without a class here still gets one in :data:`OPTIMIZERS`, made the same way.
"""

from __future__ import annotations

from descend import _schedulefree  # noqa: F401 - defines AdamWScheduleFree, which OPTIMIZERS takes up
from descend.algorithms import REGISTRY
from descend.algorithms.adadelta import ADADELTA
from descend.algorithms.adafactor import ADAFACTOR
from descend.algorithms.adagrad import ADAGRAD
from descend.algorithms.adam import ADAM, ADAMW
from descend.algorithms.adamax import ADAMAX
from descend.algorithms.asgd import ASGD as ASGD_SPEC
from descend.algorithms.lbfgs import LBFGS as LBFGS_SPEC
from descend.algorithms.momentum import MOMENTUM
from descend.algorithms.muon import MUON
from descend.algorithms.nadam import NADAM
from descend.algorithms.radam import RADAM
from descend.algorithms.rmsprop import RMSPROP
from descend.algorithms.rprop import RPROP
from descend.algorithms.sgd import SGD as SGD_SPEC
from descend.algorithms.sparse_adam import SPARSE_ADAM
from descend.closure import ClosureOptimizer
from descend.optim import Optimizer

__all__ = [
    "ASGD",
    "OPTIMIZERS",
    "SGD",
    "SparseAdam",
    "Adadelta",
    "Adafactor",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "LBFGS",
    "Momentum",
    "Muon",
    "NAdam",
    "RAdam",
    "RMSprop",
    "Rprop",
]


class SGD(Optimizer):
    spec = SGD_SPEC


class Momentum(Optimizer):
    spec = MOMENTUM


class RMSprop(Optimizer):
    spec = RMSPROP


class Adagrad(Optimizer):
    spec = ADAGRAD


class Adadelta(Optimizer):
    spec = ADADELTA


class Adam(Optimizer):
    spec = ADAM


class AdamW(Optimizer):
    spec = ADAMW


class Adamax(Optimizer):
    spec = ADAMAX


class NAdam(Optimizer):
    spec = NADAM


class RAdam(Optimizer):
    spec = RADAM


class Rprop(Optimizer):
    spec = RPROP


class ASGD(Optimizer):
    spec = ASGD_SPEC


class Muon(Optimizer):
    spec = MUON


class LBFGS(ClosureOptimizer):
    spec = LBFGS_SPEC


class Adafactor(Optimizer):
    spec = ADAFACTOR


class SparseAdam(Optimizer):
    """SparseAdam on NumPy arrays: the rule of ``torch.optim.SparseAdam`` (see :mod:`descend.algorithms.sparse_adam`)
    with dense gradients, each of which counts every entry as present; ``descend.torch.SparseAdam`` takes the sparse
    gradients that update some entries only."""

    spec = SPARSE_ADAM


def _classes() -> dict[str, type[Optimizer]]:
    bases = (Optimizer, ClosureOptimizer)
    known = {cls.spec.name: cls for base in bases for cls in base.__subclasses__() if "spec" in cls.__dict__}
    return {
        name: known.get(name)
        or type(spec.title, (bases[not spec.elementwise],), {"spec": spec, "__module__": "descend"})
        for name, spec in REGISTRY.items()
    }


OPTIMIZERS: dict[str, type[Optimizer]] = _classes()
