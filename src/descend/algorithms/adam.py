r"""Adam, and with flags AMSGrad, AdamW and the Keras, optax and article variants.

The rule in force under the default ("torch") convention, for step :math:`t \ge 1` with
:math:`m_0 = v_0 = 0`:

.. math::

    g_t &= \nabla f(\theta_{t-1}) + \lambda \theta_{t-1} \\
    m_t &= m_{t-1} + (1 - \beta_1)(g_t - m_{t-1}) \\
    v_t &= \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
    \hat m_t &= m_t / (1 - \beta_1^t), \qquad \hat v_t = v_t / (1 - \beta_2^t) \\
    \theta_t &= \theta_{t-1} - \eta \, \hat m_t / (\sqrt{\hat v_t} + \epsilon)

Flags (all on :class:`AdamHyperparams`):

- ``eps_root`` adds a term inside the root, :math:`\sqrt{\hat v_t + \epsilon_{root}} + \epsilon` (optax's name;
  the article's equations put their :math:`\epsilon` there).
- ``eps_hat=True`` is the Keras/TensorFlow placement: the bias corrections are folded into the step size,
  :math:`\theta_t = \theta_{t-1} - \eta \frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t} m_t / (\sqrt{v_t} + \hat\epsilon)`,
  so the effective epsilon is :math:`\hat\epsilon / \sqrt{1 - \beta_2^t}` (Kingma & Ba, just before section 2.1).
- ``bias_correction=False`` drops both corrections (the article derives the rule without them first).
- ``amsgrad=True`` divides by the running maximum of the second moment instead. ``amsgrad_max="raw"`` (torch,
  Keras) takes the maximum of :math:`v_t` and corrects it afterwards; ``"corrected"`` (optax) takes the maximum
  of :math:`\hat v_t`.
- ``decoupled_weight_decay=True`` (AdamW) decays the weights directly, :math:`\theta \leftarrow (1 - \eta\lambda)
  \theta`, instead of adding :math:`\lambda\theta` to the gradient (L2). Like torch, optax and Keras the decay is
  multiplied by the learning rate; Loshchilov & Hutter multiply it by the schedule multiplier only.

The order of operations is torch's single-tensor path: the first moment as a lerp, the second as
``v*beta2 + ((1-beta2)*g)*g``, the denominator ``sqrt(v)/sqrt(1-beta2^t) + eps`` and the update
``theta + (-step_size*m)/denom``. The fused kernels copy this order exactly.

The article (section "ADAM optimizer") writes :math:`\sqrt{S + \epsilon}` in its equations but its code computes
``v_norm / (sqrt(s_norm) + Epsilon)`` with ``Epsilon = 1e-6``; the "article" convention follows the code.

References:
    Kingma & Ba (2015), "Adam: A Method for Stochastic Optimization", arXiv:1412.6980, Algorithm 1.
    Reddi, Kale & Kumar (2018), "On the Convergence of Adam and Beyond" (AMSGrad), ICLR.
    Loshchilov & Hutter (2019), "Decoupled Weight Decay Regularization" (AdamW), ICLR.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import KW_ONLY, dataclass
from typing import Any, NamedTuple

from descend.algorithms._spec import AlgorithmSpec, Hyperparams, check_betas, check_bool, check_choice, check_real
from descend.algorithms.conventions import KERAS_WEIGHT_DECAY

AMSGRAD_MAX = ("raw", "corrected")


@dataclass(frozen=True)
class AdamHyperparams(Hyperparams):
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    amsgrad: bool = False
    _: KW_ONLY
    maximize: bool = False
    decoupled_weight_decay: bool = False
    eps_root: float = 0.0
    bias_correction: bool = True
    eps_hat: bool = False
    amsgrad_max: str = "raw"

    def validate(self) -> AdamHyperparams:
        return _validate(self)


@dataclass(frozen=True)
class AdamWHyperparams(Hyperparams):
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 1e-2
    amsgrad: bool = False
    _: KW_ONLY
    maximize: bool = False
    eps_root: float = 0.0
    bias_correction: bool = True
    eps_hat: bool = False
    amsgrad_max: str = "raw"

    decoupled_weight_decay = True  # a class constant: AdamW always decouples

    def validate(self) -> AdamWHyperparams:
        return _validate(self)


def _validate(hp: Any) -> Any:
    values = dict(
        lr=check_real("lr", hp.lr, low=0.0),
        betas=check_betas(hp.betas),
        eps=check_real("eps", hp.eps, low=0.0),
        weight_decay=check_real("weight_decay", hp.weight_decay, low=0.0),
        amsgrad=check_bool("amsgrad", hp.amsgrad),
        maximize=check_bool("maximize", hp.maximize),
        eps_root=check_real("eps_root", hp.eps_root, low=0.0),
        bias_correction=check_bool("bias_correction", hp.bias_correction),
        eps_hat=check_bool("eps_hat", hp.eps_hat),
        amsgrad_max=check_choice("amsgrad_max", hp.amsgrad_max, AMSGRAD_MAX),
    )
    if "decoupled_weight_decay" in hp.names():
        values["decoupled_weight_decay"] = check_bool("decoupled_weight_decay", hp.decoupled_weight_decay)
    if values["amsgrad"] and values["amsgrad_max"] == "corrected" and values["eps_hat"]:
        raise ValueError(
            "amsgrad_max='corrected' cannot be combined with eps_hat=True: eps_hat folds the bias correction into "
            "the step size, so the maximum would be corrected twice; use amsgrad_max='raw' with eps_hat"
        )
    return dataclasses.replace(hp, **values)


class AdamScalars(NamedTuple):
    maximize: bool
    amsgrad: bool
    decoupled: bool
    l2: float  # weight decay added to the gradient (0 when decoupled)
    decay_factor: float  # 1 - lr*weight_decay when decoupled, else 1
    one_minus_beta1: float
    beta2: float
    one_minus_beta2: float
    amsgrad_div: float  # what v is divided by before the AMSGrad maximum: 1 (raw) or 1 - beta2^t (corrected)
    root_add: float  # added inside the root
    root_div: float  # the root is divided by this
    eps: float  # added outside the root
    neg_step_size: float  # -lr / (1 - beta1^t), with the Keras factor sqrt(1 - beta2^t) under eps_hat


def scalars(hp: Any, step: int, host: dict[str, float] | None = None, first: bool = False) -> AdamScalars:
    beta1, beta2 = hp.betas
    decoupled = bool(hp.decoupled_weight_decay) and hp.weight_decay != 0
    bc1 = 1.0 - beta1**step if hp.bias_correction else 1.0
    bc2 = 1.0 - beta2**step if hp.bias_correction else 1.0
    bc2_sqrt = math.sqrt(bc2)
    corrected_max = hp.amsgrad and hp.amsgrad_max == "corrected"
    step_size = hp.lr / bc1
    if hp.eps_hat:
        step_size *= bc2_sqrt
    if corrected_max:
        root_add, root_div = hp.eps_root, 1.0
    elif hp.eps_hat:
        root_add, root_div = hp.eps_root, 1.0
    else:
        # sqrt(v + eps_root*bc2) / sqrt(bc2) == sqrt(v_hat + eps_root); with eps_root = 0 it is torch's form exactly.
        root_add, root_div = hp.eps_root * bc2, bc2_sqrt
    return AdamScalars(
        maximize=bool(hp.maximize),
        amsgrad=bool(hp.amsgrad),
        decoupled=decoupled,
        l2=0.0 if decoupled else float(hp.weight_decay),
        decay_factor=1.0 - hp.lr * hp.weight_decay if decoupled else 1.0,
        one_minus_beta1=1.0 - beta1,
        beta2=float(beta2),
        one_minus_beta2=1.0 - beta2,
        amsgrad_div=bc2 if corrected_max else 1.0,
        root_add=float(root_add),
        root_div=float(root_div),
        eps=float(hp.eps),
        neg_step_size=-step_size,
    )


def state_slots(hp: Any) -> tuple[str, ...]:
    return ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if hp.amsgrad else ("exp_avg", "exp_avg_sq")


def init_state(xp: Any, param: Any, hp: Any) -> dict[str, Any]:
    return {slot: xp.zeros_like(param) for slot in state_slots(hp)}


def reference_update(xp: Any, param: Any, grad: Any, state: dict[str, Any], s: AdamScalars) -> None:
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
    second = exp_avg_sq
    if s.amsgrad:
        second = state["max_exp_avg_sq"]
        xp.maximum(second, exp_avg_sq / s.amsgrad_div, out=second)
    denom = xp.sqrt(second + s.root_add) / s.root_div + s.eps
    param += (s.neg_step_size * exp_avg) / denom


def describe(hp: Any) -> str:
    beta1, beta2 = hp.betas
    name = "AdamW" if hp.decoupled_weight_decay else "Adam"
    lines = [f"{name}{' with AMSGrad' if hp.amsgrad else ''}, for t = 1, 2, ... with m_0 = v_0 = 0:"]
    lines.append(
        "  g_t = " + ("-" if hp.maximize else "") + "grad f(theta_{t-1})" + ("   (maximize)" if hp.maximize else "")
    )
    if hp.weight_decay and not hp.decoupled_weight_decay:
        lines.append(f"  g_t = g_t + {hp.weight_decay:g} * theta_{{t-1}}   (L2 weight decay, added to the gradient)")
    if hp.weight_decay and hp.decoupled_weight_decay:
        lines.append(
            f"  theta_{{t-1}} = (1 - {hp.lr:g} * {hp.weight_decay:g}) * theta_{{t-1}}   (decoupled weight decay)"
        )
    lines.append(f"  m_t = m_{{t-1}} + (1 - {beta1:g}) * (g_t - m_{{t-1}})")
    lines.append(f"  v_t = {beta2:g} * v_{{t-1}} + (1 - {beta2:g}) * g_t^2")
    root = f"{hp.eps_root:g} + " if hp.eps_root else ""
    if hp.eps_hat:
        v = "vmax_t" if hp.amsgrad else "v_t"
        if hp.amsgrad:
            lines.append("  vmax_t = max(vmax_{t-1}, v_t)")
        corr = f" * sqrt(1 - {beta2:g}^t) / (1 - {beta1:g}^t)" if hp.bias_correction else ""
        lines.append(f"  theta_t = theta_{{t-1}} - {hp.lr:g}{corr} * m_t / (sqrt({root}{v}) + {hp.eps:g})")
        lines.append("  (Keras/TF 'epsilon hat': epsilon is added to the root of the uncorrected v_t)")
        return "\n".join(lines)
    if hp.bias_correction:
        lines.append(f"  m_hat_t = m_t / (1 - {beta1:g}^t)")
        lines.append(f"  v_hat_t = v_t / (1 - {beta2:g}^t)")
        m, v = "m_hat_t", "v_hat_t"
    else:
        lines.append("  (no bias correction)")
        m, v = "m_t", "v_t"
    if hp.amsgrad:
        if hp.amsgrad_max == "raw":
            lines.append("  vmax_t = max(vmax_{t-1}, v_t)   (maximum of the raw second moment, as torch)")
            v = f"vmax_t / (1 - {beta2:g}^t)" if hp.bias_correction else "vmax_t"
        else:
            lines.append(f"  vmax_t = max(vmax_{{t-1}}, {v})   (maximum of the corrected second moment, as optax)")
            v = "vmax_t"
    lines.append(f"  theta_t = theta_{{t-1}} - {hp.lr:g} * {m} / (sqrt({root}{v}) + {hp.eps:g})")
    return "\n".join(lines)


_ADAM_PRESETS = {
    "torch": {},
    "optax": {"amsgrad_max": "corrected"},
    "keras": {"eps": 1e-7, "eps_hat": True},
    "paper": {},
    "article": {"lr": 1e-2, "eps": 1e-6},
}

_ADAMW_PRESETS = {
    "torch": {},
    "optax": {"amsgrad_max": "corrected", "weight_decay": 1e-4},
    "keras": {"eps": 1e-7, "eps_hat": True, "weight_decay": 0.004},
    "article": {"lr": 1e-2, "eps": 1e-6},
}

_ADAM_NOTES = {
    "optax": "optax.adam has no default learning rate (torch's 1e-3 is kept) and no weight decay",
    "keras": KERAS_WEIGHT_DECAY,
}

_ADAMW_NOTES = {
    "optax": "optax.adamw has no default learning rate (torch's 1e-3 is kept)",
    "paper": "Loshchilov & Hutter multiply the decay by the schedule multiplier only, not by the learning rate; "
    "descend (like torch, optax and Keras) multiplies it by the learning rate (not a flag): torch's rule runs with "
    "torch's defaults",
    "article": "the article does not cover AdamW: its Adam values (lr 0.01, eps 1e-6 outside the root) run, with "
    "torch's decoupled decay and weight decay 1e-2",
}

ADAM = AlgorithmSpec(
    name="adam",
    title="Adam",
    summary="adaptive moments: momentum on the gradient, scaled by a running RMS (AMSGrad and AdamW by flags)",
    hyperparams=AdamHyperparams,
    state_slots=state_slots,
    init_state=init_state,
    scalars=scalars,
    reference_update=reference_update,
    describe_rule=describe,
    module=sys.modules[__name__],
    presets=_ADAM_PRESETS,
    notes=_ADAM_NOTES,
    torch_name="Adam",
)

ADAMW = AlgorithmSpec(
    name="adamw",
    title="AdamW",
    summary="Adam with decoupled weight decay (the decay is applied to the weights, not the gradient)",
    hyperparams=AdamWHyperparams,
    state_slots=state_slots,
    init_state=init_state,
    scalars=scalars,
    reference_update=reference_update,
    describe_rule=describe,
    module=sys.modules[__name__],
    presets=_ADAMW_PRESETS,
    notes=_ADAMW_NOTES,
    torch_name="AdamW",
)
