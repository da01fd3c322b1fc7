r"""AdaGrad: each coordinate's step divided by the root of its summed squared gradients.

.. math::

    g_t &= \nabla f(\theta_{t-1}) + \lambda \theta_{t-1} \\
    \eta_t &= \eta / (1 + (t - 1)\,\delta) \\
    S_t &= S_{t-1} + g_t^2, \qquad S_0 = \text{initial\_accumulator\_value} \\
    \theta_t &= \theta_{t-1} - \eta_t\, g_t / (\sqrt{S_t + \epsilon_{root}} + \epsilon)

Torch starts the sum at 0 and adds ``eps`` = 1e-10 outside the root. Keras and optax start it at 0.1 and add their
epsilon (1e-7) inside the root; here that is ``eps_root`` with ``eps=0``. ``lr_decay`` (:math:`\delta`) is torch's.

References:
    Duchi, Hazan & Singer (2011), "Adaptive Subgradient Methods for Online Learning and Stochastic Optimization",
    JMLR 12.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import KW_ONLY, dataclass
from typing import Any, NamedTuple

from descend.algorithms._spec import AlgorithmSpec, Hyperparams, check_bool, check_real
from descend.algorithms.conventions import KERAS_WEIGHT_DECAY, not_in_article


@dataclass(frozen=True)
class AdagradHyperparams(Hyperparams):
    lr: float = 1e-2
    lr_decay: float = 0.0
    weight_decay: float = 0.0
    initial_accumulator_value: float = 0.0
    eps: float = 1e-10
    _: KW_ONLY
    maximize: bool = False
    eps_root: float = 0.0

    def validate(self) -> AdagradHyperparams:
        return dataclasses.replace(
            self,
            lr=check_real("lr", self.lr, low=0.0),
            lr_decay=check_real("lr_decay", self.lr_decay, low=0.0),
            weight_decay=check_real("weight_decay", self.weight_decay, low=0.0),
            initial_accumulator_value=check_real("initial_accumulator_value", self.initial_accumulator_value, low=0.0),
            eps=check_real("eps", self.eps, low=0.0),
            maximize=check_bool("maximize", self.maximize),
            eps_root=check_real("eps_root", self.eps_root, low=0.0),
        )


class AdagradScalars(NamedTuple):
    maximize: bool
    weight_decay: float
    eps_root: float
    eps: float
    neg_clr: float  # -lr / (1 + (t - 1) * lr_decay)


def scalars(
    hp: AdagradHyperparams, step: int, host: dict[str, float] | None = None, first: bool = False
) -> AdagradScalars:
    return AdagradScalars(
        maximize=bool(hp.maximize),
        weight_decay=float(hp.weight_decay),
        eps_root=float(hp.eps_root),
        eps=float(hp.eps),
        neg_clr=-(hp.lr / (1 + (step - 1) * hp.lr_decay)),
    )


def state_slots(hp: AdagradHyperparams) -> tuple[str, ...]:
    return ("sum",)


def init_state(xp: Any, param: Any, hp: AdagradHyperparams) -> dict[str, Any]:
    total = xp.zeros_like(param)
    total += hp.initial_accumulator_value
    return {"sum": total}


def reference_update(xp: Any, param: Any, grad: Any, state: dict[str, Any], s: AdagradScalars) -> None:
    if s.maximize:
        grad = -grad
    if s.weight_decay != 0:
        grad = grad + s.weight_decay * param
    total = state["sum"]
    total += grad * grad
    std = xp.sqrt(total + s.eps_root) + s.eps
    param += (s.neg_clr * grad) / std


def describe(hp: AdagradHyperparams) -> str:
    lines = [
        f"AdaGrad, with S_0 = {hp.initial_accumulator_value:g}:",
        "  g_t = " + ("-" if hp.maximize else "") + "grad f(theta_{t-1})" + ("   (maximize)" if hp.maximize else ""),
    ]
    if hp.weight_decay:
        lines.append(f"  g_t = g_t + {hp.weight_decay:g} * theta_{{t-1}}   (L2 weight decay)")
    lines.append("  S_t = S_{t-1} + g_t^2")
    lr = f"{hp.lr:g} / (1 + (t - 1) * {hp.lr_decay:g})" if hp.lr_decay else f"{hp.lr:g}"
    inside = "S_t" + (f" + {hp.eps_root:g}" if hp.eps_root else "")
    outside = f" + {hp.eps:g}" if hp.eps else ""
    lines.append(f"  theta_t = theta_{{t-1}} - {lr} * g_t / (sqrt({inside}){outside})")
    return "\n".join(lines)


ADAGRAD = AlgorithmSpec(
    name="adagrad",
    title="Adagrad",
    summary="per-coordinate steps divided by the root of the summed squared gradients",
    hyperparams=AdagradHyperparams,
    state_slots=state_slots,
    init_state=init_state,
    scalars=scalars,
    reference_update=reference_update,
    describe_rule=describe,
    module=sys.modules[__name__],
    presets={
        "keras": {"lr": 1e-3, "initial_accumulator_value": 0.1, "eps": 0.0, "eps_root": 1e-7},
        "optax": {"initial_accumulator_value": 0.1, "eps": 0.0, "eps_root": 1e-7},
        "paper": {},
        "torch": {},
    },
    notes={
        "optax": "optax.adagrad has no default learning rate (torch's 1e-2 is kept), no lr_decay and no weight decay",
        "keras": KERAS_WEIGHT_DECAY,
        "paper": "Duchi et al. add their delta outside the root and start the sum at 0, torch's form, and give no "
        "default values: torch's defaults run",
        "article": not_in_article("AdaGrad"),
    },
    torch_name="Adagrad",
)
