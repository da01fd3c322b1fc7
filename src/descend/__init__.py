"""descend: the gradient-descent family, written once and run fast.

The NumPy optimizers live at the top level (``descend.Adam``, ...); the ``torch.optim`` drop-ins in
``descend.torch``; the algorithms' math in ``descend.algorithms``; the lab in ``descend.lab``.
"""

from descend import schedules
from descend.algorithms import CONVENTIONS, REGISTRY
from descend.checkpoint import load, save
from descend.kernels import set_num_threads as set_num_threads
from descend.lowbit import StateFormat
from descend.muon_adamw import MuonWithAdamW
from descend.optim import Optimizer
from descend.optimizers import (
    OPTIMIZERS,
    SGD,
    Adadelta,
    Adagrad,
    Adam,
    Adamax,
    AdamW,
    Momentum,
    Muon,
    NAdam,
    RAdam,
    RMSprop,
)

__version__ = "0.1.0"

__all__ = [
    "CONVENTIONS",
    "OPTIMIZERS",
    "REGISTRY",
    "SGD",
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "Momentum",
    "Muon",
    "MuonWithAdamW",
    "NAdam",
    "Optimizer",
    "RAdam",
    "RMSprop",
    "StateFormat",
    "load",
    "save",
    "schedules",
]

# A registry algorithm without a class statement in descend.optimizers is reachable by its title all the same.
for _cls in OPTIMIZERS.values():
    if _cls.__name__ not in globals():
        globals()[_cls.__name__] = _cls
        __all__.append(_cls.__name__)
