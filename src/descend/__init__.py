"""descend: the gradient-descent family, written once and run fast.

The NumPy optimizers live at the top level (``descend.Adam``, ...); the ``torch.optim`` drop-ins in
``descend.torch``; the algorithms' math in ``descend.algorithms``; the lab in ``descend.lab``.
"""

from descend import schedules
from descend.algorithms import CONVENTIONS, REGISTRY
from descend.checkpoint import load, save
from descend.kernels import set_num_threads as set_num_threads
from descend.optim import Optimizer, _make_class

__version__ = "0.1.0"

SGD = _make_class("sgd")
Momentum = _make_class("momentum")
RMSprop = _make_class("rmsprop")
Adagrad = _make_class("adagrad")
Adadelta = _make_class("adadelta")
Adam = _make_class("adam")
AdamW = _make_class("adamw")
Adamax = _make_class("adamax")
NAdam = _make_class("nadam")
RAdam = _make_class("radam")

OPTIMIZERS = {
    cls.spec.name: cls for cls in (SGD, Momentum, RMSprop, Adagrad, Adadelta, Adam, AdamW, Adamax, NAdam, RAdam)
}

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
    "NAdam",
    "Optimizer",
    "RAdam",
    "RMSprop",
    "load",
    "save",
    "schedules",
]
