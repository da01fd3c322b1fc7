r"""RAdam: Adam whose adaptive step is switched on only once the variance of its estimate is tractable.

With :math:`m_0 = v_0 = 0`, :math:`\rho_\infty = 2/(1-\beta_2) - 1` and
:math:`\rho_t = \rho_\infty - 2t\beta_2^t/(1-\beta_2^t)`:

.. math::

    g_t &= \nabla f(\theta_{t-1}) + \lambda \theta_{t-1} \\
    m_t &= m_{t-1} + (1 - \beta_1)(g_t - m_{t-1}), \qquad v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
    \hat m_t &= m_t / (1 - \beta_1^t) \\
    r_t &= \sqrt{\frac{(\rho_t - 4)(\rho_t - 2)\rho_\infty}{(\rho_\infty - 4)(\rho_\infty - 2)\rho_t}} \\
    \theta_t &= \theta_{t-1} - \eta\, \hat m_t \cdot \frac{\sqrt{1 - \beta_2^t}}{\sqrt{v_t} + \epsilon}\, r_t
        \quad\text{if } \rho_t > 5, \text{ else } \theta_{t-1} - \eta \hat m_t

The early steps are momentum SGD with bias correction. ``decoupled_weight_decay=True`` decays the weights directly.

Conventions. Torch (and the paper's code) add :math:`\epsilon` to the root of the uncorrected :math:`v_t`, as above:
measured against :math:`\sqrt{\hat v_t}` it is :math:`\epsilon / \sqrt{1 - \beta_2^t}`, Keras's "epsilon hat"
placement for Adam. Optax's ``radam`` adds it to :math:`\sqrt{\hat v_t}`; ``eps_hat=False`` selects that form,
:math:`\theta_t = \theta_{t-1} - \eta\, r_t \hat m_t / (\sqrt{\hat v_t} + \epsilon)`. Optax and the paper's
code switch the adaptive step on at :math:`\rho_t \ge 5`, torch at :math:`\rho_t > 5`; the two differ only where
:math:`\rho_t` is exactly 5, and that is not a flag. Keras has no RAdam.

References:
    Liu, Jiang, He, Chen, Liu, Gao & Han (2020), "On the Variance of the Adaptive Learning Rate and Beyond", ICLR.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import KW_ONLY, dataclass
from typing import Any, NamedTuple

from descend.algorithms._spec import AlgorithmSpec, Hyperparams, check_betas, check_bool, check_real
from descend.algorithms.conventions import not_in_article


@dataclass(frozen=True)
class RAdamHyperparams(Hyperparams):
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    decoupled_weight_decay: bool = False
    _: KW_ONLY
    maximize: bool = False
    eps_hat: bool = True

    def validate(self) -> RAdamHyperparams:
        return dataclasses.replace(
            self,
            lr=check_real("lr", self.lr, low=0.0),
            betas=check_betas(self.betas),
            eps=check_real("eps", self.eps, low=0.0),
            weight_decay=check_real("weight_decay", self.weight_decay, low=0.0),
            decoupled_weight_decay=check_bool("decoupled_weight_decay", self.decoupled_weight_decay),
            maximize=check_bool("maximize", self.maximize),
            eps_hat=check_bool("eps_hat", self.eps_hat),
        )


class RAdamScalars(NamedTuple):
    maximize: bool
    decoupled: bool
    rectify: bool  # rho_t > 5: use the adaptive, rectified step
    l2: float
    decay_factor: float
    one_minus_beta1: float
    beta2: float
    one_minus_beta2: float
    bias_correction1: float
    lr: float
    bias_correction2_sqrt: float
    eps: float
    rect: float


def scalars(hp: RAdamHyperparams, step: int, host: dict[str, float] | None = None, first: bool = False) -> RAdamScalars:
    beta1, beta2 = hp.betas
    bc1 = 1.0 - beta1**step
    bc2 = 1.0 - beta2**step
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    rho_t = rho_inf - 2.0 * step * (beta2**step) / bc2
    rectify = rho_t > 5.0
    rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) if rectify else 1.0
    decoupled = bool(hp.decoupled_weight_decay) and hp.weight_decay != 0
    return RAdamScalars(
        maximize=bool(hp.maximize),
        decoupled=decoupled,
        rectify=rectify,
        l2=0.0 if decoupled else float(hp.weight_decay),
        decay_factor=1.0 - hp.lr * hp.weight_decay if decoupled else 1.0,
        one_minus_beta1=1.0 - beta1,
        beta2=float(beta2),
        one_minus_beta2=1.0 - beta2,
        bias_correction1=bc1,
        lr=float(hp.lr),
        bias_correction2_sqrt=math.sqrt(bc2),
        # sqrt(bc2) / (sqrt(v) + eps * sqrt(bc2)) == 1 / (sqrt(v_hat) + eps): optax's placement with the same kernel.
        eps=float(hp.eps) if hp.eps_hat else hp.eps * math.sqrt(bc2),
        rect=rect,
    )


def state_slots(hp: RAdamHyperparams) -> tuple[str, ...]:
    return ("exp_avg", "exp_avg_sq")


def init_state(xp: Any, param: Any, hp: RAdamHyperparams) -> dict[str, Any]:
    return {slot: xp.zeros_like(param) for slot in state_slots(hp)}


def reference_update(xp: Any, param: Any, grad: Any, state: dict[str, Any], s: RAdamScalars) -> None:
    if s.maximize:
        grad = -grad
    if s.l2 != 0:
        grad = grad + s.l2 * param
    if s.decoupled:
        param *= s.decay_factor
    exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
    exp_avg += s.one_minus_beta1 * (grad - exp_avg)
    exp_avg_sq *= s.beta2
    exp_avg_sq += s.one_minus_beta2 * grad * grad
    update = exp_avg / s.bias_correction1 * s.lr
    if s.rectify:
        # xp.divide, not `/`: torch computes `number / tensor` as a reciprocal times the number, which rounds twice.
        update = update * xp.divide(s.bias_correction2_sqrt, xp.sqrt(exp_avg_sq) + s.eps) * s.rect
    param -= update


def describe(hp: RAdamHyperparams) -> str:
    beta1, beta2 = hp.betas
    rho_inf = 2.0 / (1.0 - beta2) - 1.0 if beta2 < 1 else math.inf
    lines = [
        "RAdam (rectified Adam), with m_0 = v_0 = 0:",
        "  g_t = " + ("-" if hp.maximize else "") + "grad f(theta_{t-1})" + ("   (maximize)" if hp.maximize else ""),
    ]
    if hp.weight_decay and hp.decoupled_weight_decay:
        lines.append(f"  theta_{{t-1}} = (1 - {hp.lr:g} * {hp.weight_decay:g}) * theta_{{t-1}}   (decoupled)")
    elif hp.weight_decay:
        lines.append(f"  g_t = g_t + {hp.weight_decay:g} * theta_{{t-1}}   (L2 weight decay)")
    lines += [
        f"  m_t = m_{{t-1}} + (1 - {beta1:g}) * (g_t - m_{{t-1}})",
        f"  v_t = {beta2:g} * v_{{t-1}} + (1 - {beta2:g}) * g_t^2",
        f"  rho_inf = {rho_inf:g};  rho_t = rho_inf - 2 t {beta2:g}^t / (1 - {beta2:g}^t)",
        "  r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))",
        f"  if rho_t > 5: theta_t = theta_{{t-1}} - {hp.lr:g} * m_t / (1 - {beta1:g}^t)"
        + (
            f" * sqrt(1 - {beta2:g}^t) / (sqrt(v_t) + {hp.eps:g}) * r_t"
            if hp.eps_hat
            else f" / (sqrt(v_t / (1 - {beta2:g}^t)) + {hp.eps:g}) * r_t"
        ),
        f"  else:         theta_t = theta_{{t-1}} - {hp.lr:g} * m_t / (1 - {beta1:g}^t)",
    ]
    return "\n".join(lines)


RADAM = AlgorithmSpec(
    name="radam",
    title="RAdam",
    summary="Adam with a rectified adaptive step, plain momentum while the variance estimate is unreliable",
    hyperparams=RAdamHyperparams,
    state_slots=state_slots,
    init_state=init_state,
    scalars=scalars,
    reference_update=reference_update,
    describe_rule=describe,
    module=sys.modules[__name__],
    presets={"torch": {}, "optax": {"eps_hat": False}, "paper": {}},
    notes={
        "optax": "optax.radam adds eps to sqrt(v_hat_t) (eps_hat=False), switches at rho_t >= 5 (torch: > 5, not a "
        "flag) and has no default learning rate (torch's 1e-3 is kept)",
        "keras": "Keras has no RAdam: torch's rule runs with torch's defaults",
        "paper": "the paper's code has torch's defaults and epsilon placement and switches at rho_t >= 5 (torch: > 5, "
        "not a flag)",
        "article": not_in_article("RAdam"),
    },
    torch_name="RAdam",
)
