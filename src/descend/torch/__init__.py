"""``torch.optim`` drop-ins: descend's algorithms as subclasses of ``torch.optim.Optimizer``.

>>> import torch, descend.torch
>>> w = torch.nn.Parameter(torch.zeros(3))
>>> opt = descend.torch.Adam([w], lr=0.1)
>>> w.grad = torch.tensor([1.0, -2.0, 0.0])
>>> opt.step()
>>> w.data
tensor([-0.1000,  0.1000,  0.0000])

Each class takes the constructor signature of the torch.optim class with the same name (positional order, the
keyword-only marker and defaults), keeps the same state keys and ``state_dict`` layout, and loads state_dicts saved
by it. descend's extra flags (``eps_root``, ``eps_hat``, ``amsgrad_max``, ...), ``convention=`` and ``backend=`` are
keyword-only. ``Momentum`` has no torch counterpart. ``describe()`` prints the rule in force. ``LBFGS`` is
closure-driven, as torch's: ``step(closure)`` calls the closure as often as it needs, and its only extra is
``convention=`` (see :mod:`descend.torch._closure`). ``Muon`` takes 2-D parameters only, as torch's does;
``MuonWithAdamW`` runs it on a model's hidden matrices and AdamW on the rest.
"""

from __future__ import annotations

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
from descend.torch import _schedulefree  # noqa: F401 - defines AdamWScheduleFree, which OPTIMIZERS takes up
from descend.torch._closure import ClosureOptimizer
from descend.torch._muon_adamw import MuonWithAdamW
from descend.torch._optimizer import Optimizer
from descend.torch._sparse_adam import SparseAdam

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
    "MuonWithAdamW",
    "NAdam",
    "Optimizer",
    "RAdam",
    "RMSprop",
    "Rprop",
]

_OPTIONS = ("foreach", "maximize", "capturable", "differentiable", "fused")


class SGD(Optimizer):
    spec = SGD_SPEC
    torch_order = (
        "lr",
        "momentum",
        "dampening",
        "weight_decay",
        "nesterov",
        "*",
        "maximize",
        "foreach",
        "differentiable",
        "fused",
    )


class Momentum(Optimizer):
    spec = MOMENTUM


class RMSprop(Optimizer):
    spec = RMSPROP
    torch_order = (
        "lr",
        "alpha",
        "eps",
        "weight_decay",
        "momentum",
        "centered",
        "capturable",
        "foreach",
        "maximize",
        "differentiable",
    )


class Adagrad(Optimizer):
    spec = ADAGRAD
    torch_order = (
        "lr",
        "lr_decay",
        "weight_decay",
        "initial_accumulator_value",
        "eps",
        "foreach",
        "*",
        "maximize",
        "differentiable",
        "fused",
    )
    _eager_state = True  # torch's Adagrad creates its state in the constructor


class Adadelta(Optimizer):
    spec = ADADELTA
    torch_order = ("lr", "rho", "eps", "weight_decay", "foreach", "*", "capturable", "maximize", "differentiable")


class Adam(Optimizer):
    spec = ADAM
    torch_order = ("lr", "betas", "eps", "weight_decay", "amsgrad", "*", *_OPTIONS, "decoupled_weight_decay")


class AdamW(Optimizer):
    spec = ADAMW
    torch_order = (
        "lr",
        "betas",
        "eps",
        "weight_decay",
        "amsgrad",
        "*",
        "maximize",
        "foreach",
        "capturable",
        "differentiable",
        "fused",
    )
    _fixed = {"decoupled_weight_decay": True}  # as torch's AdamW keeps it in every group


class Adamax(Optimizer):
    spec = ADAMAX
    torch_order = ("lr", "betas", "eps", "weight_decay", "foreach", "*", "maximize", "differentiable", "capturable")


class NAdam(Optimizer):
    spec = NADAM
    torch_order = (
        "lr",
        "betas",
        "eps",
        "weight_decay",
        "momentum_decay",
        "decoupled_weight_decay",
        "*",
        "foreach",
        "maximize",
        "capturable",
        "differentiable",
    )


class RAdam(Optimizer):
    spec = RADAM
    torch_order = (
        "lr",
        "betas",
        "eps",
        "weight_decay",
        "decoupled_weight_decay",
        "*",
        "foreach",
        "maximize",
        "capturable",
        "differentiable",
    )


class Rprop(Optimizer):
    spec = RPROP
    torch_order = ("lr", "etas", "step_sizes", "*", "capturable", "foreach", "maximize", "differentiable")


class ASGD(Optimizer):
    spec = ASGD_SPEC
    torch_order = ("lr", "lambd", "alpha", "t0", "weight_decay", "foreach", "maximize", "differentiable", "capturable")


class Muon(Optimizer):
    spec = MUON
    torch_order = ("lr", "weight_decay", "momentum", "nesterov", "ns_coefficients", "eps", "ns_steps", "adjust_lr_fn")


class LBFGS(ClosureOptimizer):
    spec = LBFGS_SPEC
    torch_order = ("lr", "max_iter", "max_eval", "tolerance_grad", "tolerance_change", "history_size", "line_search_fn")


class Adafactor(Optimizer):
    spec = ADAFACTOR
    torch_order = ("lr", "beta2_decay", "eps", "d", "weight_decay", "*", "foreach", "maximize")


def _classes() -> dict[str, type[Optimizer]]:
    """Every registry algorithm's class: the ones above, and one made the same way for any other."""
    bases = (Optimizer, ClosureOptimizer)
    known = {cls.spec.name: cls for base in bases for cls in base.__subclasses__() if "spec" in cls.__dict__}
    return {
        name: known.get(name)
        or type(spec.title, (bases[not spec.elementwise],), {"spec": spec, "__module__": __name__})
        for name, spec in REGISTRY.items()
    }


OPTIMIZERS: dict[str, type[Optimizer]] = _classes()

# A registry algorithm without a class statement above is reachable by its title all the same.
for _cls in OPTIMIZERS.values():
    if _cls.__name__ not in globals():
        globals()[_cls.__name__] = _cls
        __all__.append(_cls.__name__)
