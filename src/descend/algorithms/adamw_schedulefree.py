r"""Schedule-Free AdamW: Adam's second moment, and momentum replaced by interpolation and averaging.

Three sequences share one rule: :math:`z` takes AdamW-like steps, :math:`x` is a weighted average of the
:math:`z` iterates, and the gradient is taken at :math:`y`, a point between them. With
:math:`y_0 = z_0 = x_0 = \theta_0`, :math:`v_0 = 0`, :math:`\gamma^{\max}_0 = -1`, :math:`W_0 = 0`, the warmup length
:math:`T` (``warmup_steps``), the power :math:`r` and the weight power :math:`p` (``weight_lr_power``), step
:math:`t = 1, 2, \dots`:

.. math::

    \gamma_t &= \eta \min(1, t / T) \quad (\gamma_t = \eta \text{ when } T = 0), \qquad
        \gamma^{\max}_t = \max(\gamma^{\max}_{t-1}, \gamma_t) \\
    w_t &= t^r \left(\gamma^{\max}_t\right)^p, \qquad W_t = W_{t-1} + w_t, \qquad c_t = w_t / W_t \\
    g_t &= \nabla f(y_{t-1}) \\
    v_t &= \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
    u_t &= \frac{g_t}{\sqrt{v_t / (1 - \beta_2^t)} + \epsilon} + \lambda y_{t-1} \\
    y_t &= y_{t-1} + c_t (z_{t-1} - y_{t-1}) + \gamma_t \left(\beta_1 (1 - c_t) - 1\right) u_t \\
    z_t &= z_{t-1} - \gamma_t u_t

The average :math:`x_t = (1 - c_t) x_{t-1} + c_t z_t` is never stored: :math:`y_t = (1 - \beta_1) z_t + \beta_1 x_t`
holds at every step, and the update of :math:`y` above is that identity written out. While training, the parameters
hold :math:`y`; :math:`x` is the point to evaluate and deploy, reached by ``eval()``,
:math:`x = y + (1 - 1/\beta_1)(z - y)`, and left by ``train()``, :math:`y = x + (1 - \beta_1)(z - x)`. Both fronts
keep the mode in each param group (``train_mode``, as the reference package does), refuse a step in eval mode, and
``descend.torch``'s ``attach(model)`` makes the optimizer follow the model's ``train()``/``eval()``. The state keeps
the package's slots, ``z`` and ``exp_avg_sq``, beside ``step`` and the two running host scalars ``lr_max``
(:math:`\gamma^{\max}_t`) and ``weight_sum`` (:math:`W_t`), kept in float64. ``z`` is a copy of the parameter taken
at its first step, before the update. :math:`c_t` is 0 where :math:`W_t = 0` (a zero learning rate so far), as in the
package. The weight decay :math:`\lambda` is taken at :math:`y` and scaled by :math:`\gamma_t`, as in AdamW.

Conventions. This is the rule and the order of operations of ``AdamWScheduleFree`` in Meta's ``schedulefree``
package, the paper's reference code, with its defaults (lr 0.0025, betas (0.9, 0.999), eps 1e-8, no weight decay, no
warmup, r 0, weight_lr_power 2). The package keeps its counters per param group; here every parameter keeps its own
(``step``, ``lr_max``, ``weight_sum``), so a parameter that has no gradient at some step does not count it. optax's
``contrib.schedule_free_adamw`` has the same defaults and rule (no :math:`r`, that is :math:`r = 0`); it recomputes
:math:`x` from :math:`y` and :math:`z` at every step instead of interpolating :math:`y`, which differs in rounding
only. ``maximize=True`` (not in the package) ascends. :math:`\beta_1` must be above 0: ``eval()`` divides by it.

References:
    Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky (2024), "The Road Less Scheduled", NeurIPS
    (arXiv:2405.15682), the AdamW variant of its Algorithm 1.

    Meta, ``schedulefree``, ``AdamWScheduleFree`` (facebookresearch/schedule_free): the reference implementation.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import KW_ONLY, dataclass
from typing import Any, NamedTuple

from descend.algorithms._spec import AlgorithmSpec, Hyperparams, check_betas, check_bool, check_real


def _check_warmup(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer() and value >= 0:
            return int(value)
        raise TypeError(
            f"warmup_steps must be a non-negative whole number, got {value!r} of type {type(value).__name__}"
        )
    if value < 0:
        raise ValueError(f"Invalid warmup_steps value: {value!r}; allowed values are whole numbers 0, 1, 2, ...")
    return int(value)


@dataclass(frozen=True)
class ScheduleFreeHyperparams(Hyperparams):
    lr: float = 0.0025
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    warmup_steps: int = 0
    r: float = 0.0
    weight_lr_power: float = 2.0
    _: KW_ONLY
    maximize: bool = False

    def validate(self) -> ScheduleFreeHyperparams:
        betas = check_betas(self.betas)
        if betas[0] == 0:
            raise ValueError(
                f"Invalid beta parameter at index 0: {self.betas[0]!r}; AdamWScheduleFree needs it above 0 (eval() "
                "divides by it): allowed range is (0.0, 1.0)"
            )
        return dataclasses.replace(
            self,
            lr=check_real("lr", self.lr, low=0.0),
            betas=betas,
            eps=check_real("eps", self.eps, low=0.0),
            weight_decay=check_real("weight_decay", self.weight_decay, low=0.0),
            warmup_steps=_check_warmup(self.warmup_steps),
            r=check_real("r", self.r, low=0.0),
            weight_lr_power=check_real("weight_lr_power", self.weight_lr_power, low=0.0),
            maximize=check_bool("maximize", self.maximize),
        )


class ScheduleFreeScalars(NamedTuple):
    maximize: bool
    weight_decay: float  # lambda, added to the normalised gradient times y (a flag where not zero)
    first_step: bool  # z starts as a copy of the parameter
    beta2: float
    one_minus_beta2: float
    bias_correction2: float  # 1 - beta2^t
    eps: float
    ckp1: float  # c_t, the weight of z in the average (the package's name)
    y_grad_coef: float  # gamma_t * (beta1 * (1 - c_t) - 1)
    neg_lr: float  # -gamma_t


def scheduled_lr(hp: ScheduleFreeHyperparams, step: int) -> float:
    """:math:`\\gamma_t`: the learning rate with the linear warmup applied, as the package computes it."""
    if step - 1 < hp.warmup_steps:
        return hp.lr * (step / hp.warmup_steps)
    return float(hp.lr)


def _like(old: Any, value: float) -> Any:
    """``value`` in the form ``old`` is kept in: a float, or a 0-d float64 tensor on ``old``'s device (the running
    sums are kept in float64 whatever the counters' dtype, as the package keeps them in Python floats)."""
    double = getattr(old, "double", None)
    return value if double is None else double().new_tensor(value)


def host_slots(hp: ScheduleFreeHyperparams) -> dict[str, float]:
    return {"lr_max": -1.0, "weight_sum": 0.0}


def advance_host(hp: ScheduleFreeHyperparams, step: int, host: dict[str, Any]) -> dict[str, Any]:
    """:math:`\\gamma^{\\max}_t` and :math:`W_t` after step ``step``, in float64."""
    lr_max = max(scheduled_lr(hp, step), float(host["lr_max"]))
    weight = (step**hp.r) * (lr_max**hp.weight_lr_power)
    return {
        "lr_max": _like(host["lr_max"], lr_max),
        "weight_sum": _like(host["weight_sum"], float(host["weight_sum"]) + weight),
    }


def scalars(
    hp: ScheduleFreeHyperparams, step: int, host: dict[str, float] | None = None, first: bool = False
) -> ScheduleFreeScalars:
    """``host`` holds :math:`\\gamma^{\\max}_t` and :math:`W_t` including this step (after :func:`advance_host`)."""
    if host is None:
        raise ValueError("AdamWScheduleFree's scalars need the host state lr_max and weight_sum")
    beta1, beta2 = hp.betas
    lr = scheduled_lr(hp, step)
    lr_max, weight_sum = float(host["lr_max"]), float(host["weight_sum"])
    weight = (step**hp.r) * (lr_max**hp.weight_lr_power)
    ckp1 = weight / weight_sum if weight_sum != 0 else 0.0
    return ScheduleFreeScalars(
        maximize=bool(hp.maximize),
        weight_decay=float(hp.weight_decay),
        first_step=bool(first),
        beta2=float(beta2),
        one_minus_beta2=1.0 - beta2,
        bias_correction2=1.0 - beta2**step,
        eps=float(hp.eps),
        ckp1=ckp1,
        y_grad_coef=lr * (beta1 * (1.0 - ckp1) - 1.0),
        neg_lr=-lr,
    )


def state_slots(hp: ScheduleFreeHyperparams) -> tuple[str, ...]:
    return ("z", "exp_avg_sq")


def init_state(xp: Any, param: Any, hp: ScheduleFreeHyperparams) -> dict[str, Any]:
    """Both slots start at zero; the first step copies the parameter into ``z`` before it updates anything."""
    return {slot: xp.zeros_like(param) for slot in state_slots(hp)}


def reference_update(xp: Any, param: Any, grad: Any, state: dict[str, Any], s: ScheduleFreeScalars) -> None:
    if s.maximize:
        grad = -grad
    z, exp_avg_sq = state["z"], state["exp_avg_sq"]
    if s.first_step:
        z[...] = param
    exp_avg_sq *= s.beta2
    exp_avg_sq += s.one_minus_beta2 * grad * grad
    denom = xp.sqrt(exp_avg_sq / s.bias_correction2) + s.eps
    u = grad / denom
    if s.weight_decay != 0:
        u = u + s.weight_decay * param
    param += s.ckp1 * (z - param)
    param += s.y_grad_coef * u
    z += s.neg_lr * u


def mode_weight(hp: ScheduleFreeHyperparams, train: bool) -> float:
    """The interpolation weight that moves the parameters from x to y (``train``) or from y to x, in float64."""
    beta1 = hp.betas[0]
    return 1.0 - beta1 if train else 1.0 - 1.0 / beta1


def switch_mode(xp: Any, param: Any, z: Any, weight: Any) -> None:
    """Move ``param`` to ``param + weight * (z - param)`` in place: to y from x, or to x from y (see
    :func:`mode_weight`)."""
    param += weight * (z - param)


def describe(hp: ScheduleFreeHyperparams) -> str:
    beta1, beta2 = hp.betas
    if hp.warmup_steps:
        lr = f"  lr_t = {hp.lr:g} * min(1, t / {hp.warmup_steps})   (linear warmup)"
    else:
        lr = f"  lr_t = {hp.lr:g}"
    decay = f" + {hp.weight_decay:g} * y_{{t-1}}" if hp.weight_decay else ""
    return "\n".join(
        [
            "AdamWScheduleFree (Schedule-Free AdamW), with y_0 = z_0 = x_0 = theta_0, v_0 = 0, lr_max_0 = -1, W_0 = 0:",
            "  g_t = " + ("-" if hp.maximize else "") + "grad f(y_{t-1})" + ("   (maximize)" if hp.maximize else ""),
            lr,
            "  lr_max_t = max(lr_max_{t-1}, lr_t)",
            f"  w_t = t^{hp.r:g} * lr_max_t^{hp.weight_lr_power:g},  W_t = W_{{t-1}} + w_t,  c_t = w_t / W_t",
            f"  v_t = {beta2:g} * v_{{t-1}} + (1 - {beta2:g}) * g_t^2",
            f"  u_t = g_t / (sqrt(v_t / (1 - {beta2:g}^t)) + {hp.eps:g}){decay}",
            f"  y_t = y_{{t-1}} + c_t * (z_{{t-1}} - y_{{t-1}}) + lr_t * ({beta1:g} * (1 - c_t) - 1) * u_t",
            "  z_t = z_{t-1} - lr_t * u_t",
            "  theta_t = y_t in train mode; in eval mode theta_t = x_t, with",
            f"  eval(): x = y + (1 - 1/{beta1:g}) * (z - y),  train(): y = x + (1 - {beta1:g}) * (z - x)",
        ]
    )


ADAMW_SCHEDULEFREE = AlgorithmSpec(
    name="adamw_schedulefree",
    title="AdamWScheduleFree",
    summary="AdamW without a schedule: momentum replaced by interpolation and averaging (Defazio et al. 2024)",
    hyperparams=ScheduleFreeHyperparams,
    state_slots=state_slots,
    init_state=init_state,
    scalars=scalars,
    reference_update=reference_update,
    describe_rule=describe,
    module=sys.modules[__name__],
    presets={"optax": {}, "paper": {}},
    notes={
        "torch": "torch.optim has no Schedule-Free optimizer: the rule of the schedulefree package's "
        "AdamWScheduleFree (the paper's reference code) runs with its defaults",
        "optax": "optax.contrib.schedule_free_adamw has the same defaults and rule, with r = 0; it recomputes x from "
        "y and z at each step, which differs from the package's interpolation in rounding only",
        "keras": "Keras has no Schedule-Free optimizer: the schedulefree package's rule runs with its defaults",
        "paper": "the paper's reference code is the schedulefree package, whose rule and defaults run here",
        "article": "the article does not cover Schedule-Free AdamW: the schedulefree package's rule runs with its "
        "defaults",
    },
    host_slots=host_slots,
    advance_host=advance_host,
    full_state={"weight_decay": 0.01, "warmup_steps": 3},
)
