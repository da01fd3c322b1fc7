r"""Adadelta: RMSprop whose step is rescaled by a running RMS of the past updates, so it needs no learning rate.

With :math:`s_0 = u_0 = 0`:

.. math::

    g_t &= \nabla f(\theta_{t-1}) + \lambda \theta_{t-1} \\
    s_t &= \rho s_{t-1} + (1 - \rho) g_t^2 \\
    \Delta_t &= \frac{\sqrt{u_{t-1} + \epsilon}}{\sqrt{s_t + \epsilon}}\, g_t \\
    u_t &= \rho u_{t-1} + (1 - \rho) \Delta_t^2 \\
    \theta_t &= \theta_{t-1} - \eta \Delta_t

Torch keeps a learning rate :math:`\eta` (default 1.0, the paper's rule) and names the slots ``square_avg`` and
``acc_delta``. The paper suggests :math:`\rho = 0.95` and :math:`\epsilon = 10^{-6}`; torch defaults to 0.9 and
Keras to 0.95 with 1e-7 and a learning rate of 1e-3.

References:
    Zeiler (2012), "ADADELTA: An Adaptive Learning Rate Method", arXiv:1212.5701, Algorithm 1.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import KW_ONLY, dataclass
from typing import Any, NamedTuple

from descend.algorithms._spec import AlgorithmSpec, Hyperparams, check_bool, check_real
from descend.algorithms.conventions import KERAS_WEIGHT_DECAY, not_in_article


@dataclass(frozen=True)
class AdadeltaHyperparams(Hyperparams):
    lr: float = 1.0
    rho: float = 0.9
    eps: float = 1e-6
    weight_decay: float = 0.0
    _: KW_ONLY
    maximize: bool = False

    def validate(self) -> AdadeltaHyperparams:
        return dataclasses.replace(
            self,
            lr=check_real("lr", self.lr, low=0.0),
            rho=check_real("rho", self.rho, low=0.0, high=1.0),
            eps=check_real("eps", self.eps, low=0.0),
            weight_decay=check_real("weight_decay", self.weight_decay, low=0.0),
            maximize=check_bool("maximize", self.maximize),
        )


class AdadeltaScalars(NamedTuple):
    maximize: bool
    weight_decay: float
    rho: float
    one_minus_rho: float
    eps: float
    neg_lr: float


def scalars(
    hp: AdadeltaHyperparams, step: int, host: dict[str, float] | None = None, first: bool = False
) -> AdadeltaScalars:
    return AdadeltaScalars(
        maximize=bool(hp.maximize),
        weight_decay=float(hp.weight_decay),
        rho=float(hp.rho),
        one_minus_rho=1.0 - hp.rho,
        eps=float(hp.eps),
        neg_lr=-float(hp.lr),
    )


def state_slots(hp: AdadeltaHyperparams) -> tuple[str, ...]:
    return ("square_avg", "acc_delta")


def init_state(xp: Any, param: Any, hp: AdadeltaHyperparams) -> dict[str, Any]:
    return {slot: xp.zeros_like(param) for slot in state_slots(hp)}


def reference_update(xp: Any, param: Any, grad: Any, state: dict[str, Any], s: AdadeltaScalars) -> None:
    if s.maximize:
        grad = -grad
    if s.weight_decay != 0:
        grad = grad + s.weight_decay * param
    square_avg, acc_delta = state["square_avg"], state["acc_delta"]
    square_avg *= s.rho
    square_avg += s.one_minus_rho * grad * grad
    std = xp.sqrt(square_avg + s.eps)
    delta = xp.sqrt(acc_delta + s.eps) / std * grad
    acc_delta *= s.rho
    acc_delta += s.one_minus_rho * delta * delta
    param += s.neg_lr * delta


def describe(hp: AdadeltaHyperparams) -> str:
    lines = [
        "Adadelta, with s_0 = u_0 = 0:",
        "  g_t = " + ("-" if hp.maximize else "") + "grad f(theta_{t-1})" + ("   (maximize)" if hp.maximize else ""),
    ]
    if hp.weight_decay:
        lines.append(f"  g_t = g_t + {hp.weight_decay:g} * theta_{{t-1}}   (L2 weight decay)")
    lines += [
        f"  s_t = {hp.rho:g} * s_{{t-1}} + (1 - {hp.rho:g}) * g_t^2",
        f"  delta_t = sqrt(u_{{t-1}} + {hp.eps:g}) / sqrt(s_t + {hp.eps:g}) * g_t",
        f"  u_t = {hp.rho:g} * u_{{t-1}} + (1 - {hp.rho:g}) * delta_t^2",
        f"  theta_t = theta_{{t-1}} - {hp.lr:g} * delta_t",
    ]
    return "\n".join(lines)


ADADELTA = AlgorithmSpec(
    name="adadelta",
    title="Adadelta",
    summary="RMSprop rescaled by a running RMS of past updates; needs no learning rate",
    hyperparams=AdadeltaHyperparams,
    state_slots=state_slots,
    init_state=init_state,
    scalars=scalars,
    reference_update=reference_update,
    describe_rule=describe,
    module=sys.modules[__name__],
    presets={"torch": {}, "optax": {}, "keras": {"lr": 1e-3, "rho": 0.95, "eps": 1e-7}, "paper": {"rho": 0.95}},
    notes={
        "optax": "optax.adadelta has torch's rule and defaults (rho 0.9, eps 1e-6, weight decay added to the "
        "gradient); its learning rate defaults to none, i.e. 1, as here",
        "keras": KERAS_WEIGHT_DECAY,
        "paper": "Zeiler's Algorithm 1 has no learning rate (lr 1 here) and suggests rho 0.95 and eps 1e-6",
        "article": not_in_article("Adadelta"),
    },
    torch_name="Adadelta",
)
