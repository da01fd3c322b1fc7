r"""Gradient descent with momentum in the article's form: an exponential moving average of the gradients.

.. math::

    g_t &= \nabla f(\theta_{t-1}) + \lambda \theta_{t-1} \\
    V_t &= \beta V_{t-1} + (1 - \beta) g_t, \qquad V_0 = 0 \\
    d_t &= \beta V_t + (1 - \beta) g_t \ \text{(Nesterov)} \quad\text{or}\quad d_t = V_t \\
    \theta_t &= \theta_{t-1} - \eta d_t

This is the article's "gradient descent with momentum" (``Vdw = beta*Vdw + (1-beta)*dL/dw``), the same average
Adam keeps as its first moment, without bias correction. It differs from torch's ``SGD(momentum=mu)`` in two ways:

- torch's buffer is a sum, :math:`b_t = \mu b_{t-1} + g_t`, with gain :math:`1/(1-\mu)`; this average has gain 1, so
  the same learning rate moves :math:`1/(1-\beta)` times less (ten times at 0.9). Since :math:`V_t = (1-\beta) b_t`,
  ``Momentum(lr=eta, beta=mu)`` and ``SGD(lr=eta*(1-mu), momentum=mu)`` take the same steps;
- torch copies the first gradient into the buffer, while here :math:`V_0 = 0`, so the first step is
  :math:`(1-\beta)` times the gradient step.

References:
    Polyak (1964), "Some methods of speeding up the convergence of iteration methods".
    The article, section "Gradient descent with momentum".
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import KW_ONLY, dataclass
from typing import Any, NamedTuple

from descend.algorithms._spec import AlgorithmSpec, Hyperparams, check_bool, check_real


@dataclass(frozen=True)
class MomentumHyperparams(Hyperparams):
    lr: float = 1e-2
    beta: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    _: KW_ONLY
    maximize: bool = False

    def validate(self) -> MomentumHyperparams:
        return dataclasses.replace(
            self,
            lr=check_real("lr", self.lr, low=0.0),
            beta=check_real("beta", self.beta, low=0.0, high=1.0, high_open=True),
            nesterov=check_bool("nesterov", self.nesterov),
            weight_decay=check_real("weight_decay", self.weight_decay, low=0.0),
            maximize=check_bool("maximize", self.maximize),
        )


class MomentumScalars(NamedTuple):
    maximize: bool
    nesterov: bool
    weight_decay: float
    beta: float
    one_minus_beta: float
    neg_lr: float


def scalars(
    hp: MomentumHyperparams, step: int, host: dict[str, float] | None = None, first: bool = False
) -> MomentumScalars:
    return MomentumScalars(
        maximize=bool(hp.maximize),
        nesterov=bool(hp.nesterov),
        weight_decay=float(hp.weight_decay),
        beta=float(hp.beta),
        one_minus_beta=1.0 - hp.beta,
        neg_lr=-float(hp.lr),
    )


def state_slots(hp: MomentumHyperparams) -> tuple[str, ...]:
    return ("exp_avg",)


def init_state(xp: Any, param: Any, hp: MomentumHyperparams) -> dict[str, Any]:
    return {"exp_avg": xp.zeros_like(param)}


def reference_update(xp: Any, param: Any, grad: Any, state: dict[str, Any], s: MomentumScalars) -> None:
    if s.maximize:
        grad = -grad
    if s.weight_decay != 0:
        grad = grad + s.weight_decay * param
    exp_avg = state["exp_avg"]
    exp_avg *= s.beta
    exp_avg += s.one_minus_beta * grad
    direction = s.beta * exp_avg + s.one_minus_beta * grad if s.nesterov else exp_avg
    param += s.neg_lr * direction


def describe(hp: MomentumHyperparams) -> str:
    lines = [
        "Momentum, the article's form (an exponential average of the gradients, V_0 = 0):",
        "  g_t = " + ("-" if hp.maximize else "") + "grad f(theta_{t-1})" + ("   (maximize)" if hp.maximize else ""),
    ]
    if hp.weight_decay:
        lines.append(f"  g_t = g_t + {hp.weight_decay:g} * theta_{{t-1}}   (L2 weight decay)")
    lines.append(f"  V_t = {hp.beta:g} * V_{{t-1}} + (1 - {hp.beta:g}) * g_t")
    if hp.nesterov:
        lines.append(
            f"  theta_t = theta_{{t-1}} - {hp.lr:g} * ({hp.beta:g} * V_t + (1 - {hp.beta:g}) * g_t)   (Nesterov)"
        )
    else:
        lines.append(f"  theta_t = theta_{{t-1}} - {hp.lr:g} * V_t")
    lines.append(
        "  Unlike torch's SGD(momentum=...), V is an average (gain 1, not 1/(1 - beta)) and starts at 0 rather "
        "than at the first gradient."
    )
    return "\n".join(lines)


MOMENTUM = AlgorithmSpec(
    name="momentum",
    title="Momentum",
    summary="the article's momentum: gradient descent on an exponential average of the gradients",
    hyperparams=MomentumHyperparams,
    state_slots=state_slots,
    init_state=init_state,
    scalars=scalars,
    reference_update=reference_update,
    describe_rule=describe,
    module=sys.modules[__name__],
    presets={"article": {"lr": 1e-2, "beta": 0.9}},
    notes={
        "torch": "torch.optim has no optimizer of this form (its SGD momentum is a sum): the article's rule runs with "
        "the article's defaults; torch's SGD(lr=lr*(1-beta), momentum=beta) takes the same steps",
        "optax": "optax has no optimizer of this form (optax.sgd's momentum is torch's sum; chain(ema(beta, "
        "debias=False), scale(-lr)) is this rule): the article's rule runs with the article's defaults",
        "keras": "Keras has no optimizer of this form (its SGD momentum is Sutskever's sum): the article's rule runs "
        "with the article's defaults",
        "paper": "Polyak's heavy-ball paper writes momentum as a sum (torch's SGD(momentum=...)), not this average: "
        "the article's rule runs with the article's defaults",
    },
    torch_name=None,
)
