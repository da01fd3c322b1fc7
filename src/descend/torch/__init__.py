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
keyword-only. ``Momentum`` has no torch counterpart. ``describe()`` prints the rule in force.
"""

from __future__ import annotations

import inspect

from descend.algorithms import registry
from descend.torch._optimizer import Optimizer
from descend.torch._options import signature_for
from descend.torch._state_check import identity_keys

__all__ = [
    "OPTIMIZERS",
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
]


def _make_class(name: str) -> type[Optimizer]:
    spec = registry.get(name)
    signature, options = signature_for(spec)
    positional = tuple(
        p.name for p in signature.parameters.values() if p.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD
    )
    if spec.torch_name:
        kinship = (
            f"A ``torch.optim.Optimizer`` with the signature, state and state_dict layout of "
            f"``torch.optim.{spec.torch_name}``."
        )
    else:
        kinship = (
            "A ``torch.optim.Optimizer`` with no torch.optim counterpart: its signature comes from its "
            "hyperparameters, and its state_dict uses torch's layout with its own state keys."
        )
    doc = (
        f"{spec.title} for torch tensors: {spec.summary}.\n\n{kinship} The rule, its flags and references are "
        f"documented in :mod:`{spec.module.__name__}`; ``describe()`` prints the rule in force. "
        f"See :class:`descend.torch.Optimizer` for the arguments shared by every optimizer."
    )
    fixed = {"decoupled_weight_decay": True} if spec.name == "adamw" else {}
    attrs = {
        "spec": spec,
        "__doc__": doc,
        "__module__": __name__,
        "__qualname__": spec.title,
        "__signature__": signature,
        "_options": options,
        "_fixed": fixed,
        "_identity": identity_keys(spec, positional, tuple(fixed)),
        "_eager_state": spec.name == "adagrad",
    }
    return type(spec.title, (Optimizer,), attrs)


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

OPTIMIZERS: dict[str, type[Optimizer]] = {
    cls.spec.name: cls for cls in (SGD, Momentum, RMSprop, Adagrad, Adadelta, Adam, AdamW, Adamax, NAdam, RAdam)
}
