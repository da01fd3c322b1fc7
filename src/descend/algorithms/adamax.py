r"""Adamax: Adam with the infinity norm in place of the second moment.

With :math:`m_0 = u_0 = 0`:

.. math::

    g_t &= \nabla f(\theta_{t-1}) + \lambda \theta_{t-1} \\
    m_t &= m_{t-1} + (1 - \beta_1)(g_t - m_{t-1}) \\
    u_t &= \max(\beta_2 u_{t-1}, |g_t| + \epsilon) \\
    \theta_t &= \theta_{t-1} - \frac{\eta}{1 - \beta_1^t}\, m_t / u_t

Torch and optax add ``eps`` inside the maximum (above). Keras adds it outside, :math:`u_t = \max(\beta_2 u_{t-1},
|g_t|)` and :math:`m_t / (u_t + \epsilon)`; ``eps_in_max=False`` selects that form. The paper has no epsilon at all.

References:
    Kingma & Ba (2015), "Adam: A Method for Stochastic Optimization", arXiv:1412.6980, section 7.1, Algorithm 2.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import KW_ONLY, dataclass
from typing import Any, NamedTuple

from descend.algorithms._spec import AlgorithmSpec, Hyperparams, check_betas, check_bool, check_real
from descend.algorithms.conventions import KERAS_WEIGHT_DECAY, not_in_article


@dataclass(frozen=True)
class AdamaxHyperparams(Hyperparams):
    lr: float = 2e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    _: KW_ONLY
    maximize: bool = False
    eps_in_max: bool = True

    def validate(self) -> AdamaxHyperparams:
        return dataclasses.replace(
            self,
            lr=check_real("lr", self.lr, low=0.0),
            betas=check_betas(self.betas),
            eps=check_real("eps", self.eps, low=0.0),
            weight_decay=check_real("weight_decay", self.weight_decay, low=0.0),
            maximize=check_bool("maximize", self.maximize),
            eps_in_max=check_bool("eps_in_max", self.eps_in_max),
        )


class AdamaxScalars(NamedTuple):
    maximize: bool
    weight_decay: float
    one_minus_beta1: float
    beta2: float
    eps_in: float  # added to |g| inside the maximum
    eps_out: float  # added to u after the maximum
    neg_clr: float  # -lr / (1 - beta1^t)


def scalars(
    hp: AdamaxHyperparams, step: int, host: dict[str, float] | None = None, first: bool = False
) -> AdamaxScalars:
    beta1, beta2 = hp.betas
    return AdamaxScalars(
        maximize=bool(hp.maximize),
        weight_decay=float(hp.weight_decay),
        one_minus_beta1=1.0 - beta1,
        beta2=float(beta2),
        eps_in=float(hp.eps) if hp.eps_in_max else 0.0,
        eps_out=0.0 if hp.eps_in_max else float(hp.eps),
        neg_clr=-(hp.lr / (1.0 - beta1**step)),
    )


def state_slots(hp: AdamaxHyperparams) -> tuple[str, ...]:
    return ("exp_avg", "exp_inf")


def init_state(xp: Any, param: Any, hp: AdamaxHyperparams) -> dict[str, Any]:
    return {slot: xp.zeros_like(param) for slot in state_slots(hp)}


def reference_update(xp: Any, param: Any, grad: Any, state: dict[str, Any], s: AdamaxScalars) -> None:
    if s.maximize:
        grad = -grad
    if s.weight_decay != 0:
        grad = grad + s.weight_decay * param
    exp_avg, exp_inf = state["exp_avg"], state["exp_inf"]
    exp_avg += s.one_minus_beta1 * (grad - exp_avg)
    exp_inf *= s.beta2
    xp.maximum(exp_inf, xp.abs(grad) + s.eps_in, out=exp_inf)
    param += (s.neg_clr * exp_avg) / (exp_inf + s.eps_out)


def describe(hp: AdamaxHyperparams) -> str:
    beta1, beta2 = hp.betas
    lines = [
        "Adamax, with m_0 = u_0 = 0:",
        "  g_t = " + ("-" if hp.maximize else "") + "grad f(theta_{t-1})" + ("   (maximize)" if hp.maximize else ""),
    ]
    if hp.weight_decay:
        lines.append(f"  g_t = g_t + {hp.weight_decay:g} * theta_{{t-1}}   (L2 weight decay)")
    lines.append(f"  m_t = m_{{t-1}} + (1 - {beta1:g}) * (g_t - m_{{t-1}})")
    if hp.eps_in_max:
        lines.append(f"  u_t = max({beta2:g} * u_{{t-1}}, |g_t| + {hp.eps:g})")
        lines.append(f"  theta_t = theta_{{t-1}} - {hp.lr:g} / (1 - {beta1:g}^t) * m_t / u_t")
    else:
        lines.append(f"  u_t = max({beta2:g} * u_{{t-1}}, |g_t|)")
        lines.append(f"  theta_t = theta_{{t-1}} - {hp.lr:g} / (1 - {beta1:g}^t) * m_t / (u_t + {hp.eps:g})")
    return "\n".join(lines)


ADAMAX = AlgorithmSpec(
    name="adamax",
    title="Adamax",
    summary="Adam with the infinity norm of past gradients in place of the RMS",
    hyperparams=AdamaxHyperparams,
    state_slots=state_slots,
    init_state=init_state,
    scalars=scalars,
    reference_update=reference_update,
    describe_rule=describe,
    module=sys.modules[__name__],
    presets={"torch": {}, "optax": {}, "keras": {"lr": 1e-3, "eps": 1e-7, "eps_in_max": False}, "paper": {}},
    notes={
        "optax": "optax.adamax has torch's rule (eps inside the maximum), no default learning rate (torch's 2e-3 is "
        "kept) and no weight decay (optax.adamaxw decouples it)",
        "keras": KERAS_WEIGHT_DECAY,
        "paper": "Kingma & Ba's Algorithm 2 has lr 0.002 and no epsilon; torch's 1e-8 inside the maximum is kept "
        "(eps=0 is the paper's rule exactly, and divides 0 by 0 where a coordinate's gradients have all been 0)",
        "article": not_in_article("Adamax"),
    },
    torch_name="Adamax",
)
