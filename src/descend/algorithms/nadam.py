r"""NAdam: Adam with Nesterov momentum, and torch's momentum-decay schedule.

With :math:`m_0 = v_0 = 0` and :math:`\psi` = ``momentum_decay``:

.. math::

    \mu_t &= \beta_1 \left(1 - \tfrac12\, 0.96^{t\psi}\right), \qquad \Pi_t = \prod_{i \le t} \mu_i \\
    g_t &= \nabla f(\theta_{t-1}) + \lambda \theta_{t-1} \\
    m_t &= m_{t-1} + (1 - \beta_1)(g_t - m_{t-1}) \\
    v_t &= \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
    d_t &= \sqrt{v_t / (1 - \beta_2^t)} + \epsilon \\
    \theta_t &= \theta_{t-1} - \eta \frac{1 - \mu_t}{1 - \Pi_t} \frac{g_t}{d_t}
        - \eta \frac{\mu_{t+1}}{1 - \Pi_t \mu_{t+1}} \frac{m_t}{d_t}

The product :math:`\Pi_t` is host state (``mu_product``, as in torch's state dict). With
``decoupled_weight_decay=True`` (NAdamW) the weights are decayed directly, :math:`\theta \leftarrow (1 - \eta\lambda)
\theta`, instead of the L2 term.

Conventions. Torch's schedule is Dozat's, :math:`\psi` = 0.004. Keras's ``Nadam`` is the same rule with
:math:`0.96^t`, that is :math:`\psi = 1`, and epsilon 1e-7 added to :math:`\sqrt{\hat v_t}` (its docstring calls
it "epsilon hat"; its code adds it to the corrected root, as here). Optax's ``nadam`` (``adam(nesterov=True)``) has
no schedule: ``momentum_schedule=False`` sets :math:`\mu_t = \beta_1`, and the rule above becomes optax's
:math:`\hat m_t = \beta_1 m_t / (1 - \beta_1^{t+1}) + (1 - \beta_1) g_t / (1 - \beta_1^t)`. (``momentum_decay=0``
is not that: it gives :math:`\mu_t = \beta_1 / 2`.)

References:
    Dozat (2016), "Incorporating Nesterov Momentum into Adam", ICLR workshop.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import KW_ONLY, dataclass
from typing import Any, NamedTuple

from descend.algorithms._spec import AlgorithmSpec, Hyperparams, check_betas, check_bool, check_real
from descend.algorithms.conventions import KERAS_WEIGHT_DECAY, not_in_article


@dataclass(frozen=True)
class NAdamHyperparams(Hyperparams):
    lr: float = 2e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    momentum_decay: float = 4e-3
    decoupled_weight_decay: bool = False
    _: KW_ONLY
    maximize: bool = False
    momentum_schedule: bool = True

    def validate(self) -> NAdamHyperparams:
        return dataclasses.replace(
            self,
            lr=check_real("lr", self.lr, low=0.0),
            betas=check_betas(self.betas),
            eps=check_real("eps", self.eps, low=0.0),
            weight_decay=check_real("weight_decay", self.weight_decay, low=0.0),
            momentum_decay=check_real("momentum_decay", self.momentum_decay, low=0.0),
            decoupled_weight_decay=check_bool("decoupled_weight_decay", self.decoupled_weight_decay),
            maximize=check_bool("maximize", self.maximize),
            momentum_schedule=check_bool("momentum_schedule", self.momentum_schedule),
        )


class NAdamScalars(NamedTuple):
    maximize: bool
    decoupled: bool
    l2: float
    decay_factor: float
    one_minus_beta1: float
    beta2: float
    one_minus_beta2: float
    bias_correction2: float
    eps: float
    grad_coef: float  # -lr * (1 - mu_t) / (1 - mu_product_t)
    exp_avg_coef: float  # -lr * mu_{t+1} / (1 - mu_product_t * mu_{t+1})


def _mu(hp: NAdamHyperparams, step: int) -> float:
    if not hp.momentum_schedule:
        return float(hp.betas[0])
    return hp.betas[0] * (1.0 - 0.5 * (0.96 ** (step * hp.momentum_decay)))


def host_slots(hp: NAdamHyperparams) -> dict[str, float]:
    return {"mu_product": 1.0}


def advance_host(hp: NAdamHyperparams, step: int, host: dict[str, float]) -> dict[str, float]:
    return {"mu_product": host["mu_product"] * _mu(hp, step)}


def scalars(hp: NAdamHyperparams, step: int, host: dict[str, float] | None = None, first: bool = False) -> NAdamScalars:
    """``host["mu_product"]`` is the product up to and including this step (after :func:`advance_host`)."""
    if host is None:
        raise ValueError("NAdam's scalars need the host state mu_product")
    beta1, beta2 = hp.betas
    mu, mu_next = _mu(hp, step), _mu(hp, step + 1)
    mu_product = float(host["mu_product"])
    decoupled = bool(hp.decoupled_weight_decay) and hp.weight_decay != 0
    return NAdamScalars(
        maximize=bool(hp.maximize),
        decoupled=decoupled,
        l2=0.0 if decoupled else float(hp.weight_decay),
        decay_factor=1.0 - hp.lr * hp.weight_decay if decoupled else 1.0,
        one_minus_beta1=1.0 - beta1,
        beta2=float(beta2),
        one_minus_beta2=1.0 - beta2,
        bias_correction2=1.0 - beta2**step,
        eps=float(hp.eps),
        grad_coef=-hp.lr * (1.0 - mu) / (1.0 - mu_product),
        exp_avg_coef=(-hp.lr * mu_next) / (1.0 - mu_product * mu_next),
    )


def state_slots(hp: NAdamHyperparams) -> tuple[str, ...]:
    return ("exp_avg", "exp_avg_sq")


def init_state(xp: Any, param: Any, hp: NAdamHyperparams) -> dict[str, Any]:
    return {slot: xp.zeros_like(param) for slot in state_slots(hp)}


def reference_update(xp: Any, param: Any, grad: Any, state: dict[str, Any], s: NAdamScalars) -> None:
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
    denom = xp.sqrt(exp_avg_sq / s.bias_correction2) + s.eps
    param += (s.grad_coef * grad) / denom
    param += (s.exp_avg_coef * exp_avg) / denom


def describe(hp: NAdamHyperparams) -> str:
    beta1, beta2 = hp.betas
    if hp.momentum_schedule:
        mu = f"  mu_t = {beta1:g} * (1 - 0.5 * 0.96^(t * {hp.momentum_decay:g})),  Pi_t = mu_1 * ... * mu_t"
    else:
        mu = f"  mu_t = {beta1:g} (no momentum-decay schedule, as optax),  Pi_t = {beta1:g}^t"
    lines = [
        "NAdam (Adam with Nesterov momentum), with m_0 = v_0 = 0:",
        mu,
        "  g_t = " + ("-" if hp.maximize else "") + "grad f(theta_{t-1})" + ("   (maximize)" if hp.maximize else ""),
    ]
    if hp.weight_decay and hp.decoupled_weight_decay:
        lines.append(f"  theta_{{t-1}} = (1 - {hp.lr:g} * {hp.weight_decay:g}) * theta_{{t-1}}   (decoupled)")
    elif hp.weight_decay:
        lines.append(f"  g_t = g_t + {hp.weight_decay:g} * theta_{{t-1}}   (L2 weight decay)")
    lines += [
        f"  m_t = m_{{t-1}} + (1 - {beta1:g}) * (g_t - m_{{t-1}})",
        f"  v_t = {beta2:g} * v_{{t-1}} + (1 - {beta2:g}) * g_t^2",
        f"  d_t = sqrt(v_t / (1 - {beta2:g}^t)) + {hp.eps:g}",
        f"  theta_t = theta_{{t-1}} - {hp.lr:g} * (1 - mu_t) / (1 - Pi_t) * g_t / d_t"
        f" - {hp.lr:g} * mu_{{t+1}} / (1 - Pi_t * mu_{{t+1}}) * m_t / d_t",
    ]
    return "\n".join(lines)


NADAM = AlgorithmSpec(
    name="nadam",
    title="NAdam",
    summary="Adam with Nesterov momentum and a momentum-decay schedule",
    hyperparams=NAdamHyperparams,
    state_slots=state_slots,
    init_state=init_state,
    scalars=scalars,
    reference_update=reference_update,
    describe_rule=describe,
    module=sys.modules[__name__],
    presets={
        "torch": {},
        "optax": {"momentum_schedule": False},
        "keras": {"lr": 1e-3, "eps": 1e-7, "momentum_decay": 1.0},
        "paper": {},
    },
    notes={
        "optax": "optax.nadam has no momentum-decay schedule (mu_t = beta1: momentum_schedule=False) and no default "
        "learning rate (torch's 2e-3 is kept)",
        "keras": "Keras's Nadam uses the schedule 0.96^t (momentum_decay=1) and adds eps to sqrt(v_hat_t) as torch "
        f"does. {KERAS_WEIGHT_DECAY}",
        "paper": "Dozat's schedule, mu_t = beta1 * (1 - 0.5 * 0.96^(t/250)), is torch's (momentum_decay=0.004)",
        "article": not_in_article("NAdam"),
    },
    torch_name="NAdam",
    host_slots=host_slots,
    advance_host=advance_host,
)
