r"""RMSprop: gradient descent divided by a running root mean square of the gradients.

Torch's form (the default), with :math:`s_0 = 0`:

.. math::

    g_t &= \nabla f(\theta_{t-1}) + \lambda \theta_{t-1} \\
    s_t &= \alpha s_{t-1} + (1 - \alpha) g_t^2 \\
    \bar g_t &= \bar g_{t-1} + (1 - \alpha)(g_t - \bar g_{t-1}) \quad\text{(centered only)} \\
    r_t &= \sqrt{s_t - \bar g_t^2 + \epsilon_{root}} + \epsilon
        \quad\text{(centered; otherwise } \sqrt{s_t + \epsilon_{root}} + \epsilon) \\
    b_t &= \mu b_{t-1} + g_t / r_t, \quad \theta_t = \theta_{t-1} - \eta b_t \quad\text{(momentum } \mu > 0) \\
    \theta_t &= \theta_{t-1} - \eta g_t / r_t \quad\text{(otherwise)}

Where epsilon goes is the classic difference between libraries. Torch adds ``eps`` (1e-8) outside the root.
Keras (1e-7), TensorFlow 1 and optax (by default) add it inside; here that is ``eps_root``, with ``eps=0``. The
article's equations put it inside too, :math:`\alpha / \sqrt{S_{dw} + \epsilon}`, and suggest a decay of 0.95.
The decay is ``alpha`` = 0.99 in torch and 0.9 in Keras, optax and Hinton's lecture. A rough conversion between the
two placements is :math:`\epsilon_{outside} \approx \sqrt{\epsilon_{inside}}`.

Keras's momentum keeps the learning rate inside the buffer (:math:`b = \mu b + \eta g/r`); that equals torch's form
while the learning rate is constant.

References:
    Hinton, Srivastava & Swersky (2012), Neural Networks for Machine Learning, lecture 6e.
    Graves (2013), "Generating Sequences With Recurrent Neural Networks" (the centered variant), arXiv:1308.0850.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import KW_ONLY, dataclass
from typing import Any, NamedTuple

from descend.algorithms._spec import AlgorithmSpec, Hyperparams, check_bool, check_real
from descend.algorithms.conventions import KERAS_WEIGHT_DECAY


@dataclass(frozen=True)
class RMSpropHyperparams(Hyperparams):
    lr: float = 1e-2
    alpha: float = 0.99
    eps: float = 1e-8
    weight_decay: float = 0.0
    momentum: float = 0.0
    centered: bool = False
    _: KW_ONLY
    maximize: bool = False
    eps_root: float = 0.0

    def validate(self) -> RMSpropHyperparams:
        return dataclasses.replace(
            self,
            lr=check_real("lr", self.lr, low=0.0),
            alpha=check_real("alpha", self.alpha, low=0.0, high=1.0),
            eps=check_real("eps", self.eps, low=0.0),
            weight_decay=check_real("weight_decay", self.weight_decay, low=0.0),
            momentum=check_real("momentum", self.momentum, low=0.0),
            centered=check_bool("centered", self.centered),
            maximize=check_bool("maximize", self.maximize),
            eps_root=check_real("eps_root", self.eps_root, low=0.0),
        )


class RMSpropScalars(NamedTuple):
    maximize: bool
    centered: bool
    use_momentum: bool
    weight_decay: float
    alpha: float
    one_minus_alpha: float
    eps_root: float
    eps: float
    momentum: float
    neg_lr: float


def scalars(
    hp: RMSpropHyperparams, step: int, host: dict[str, float] | None = None, first: bool = False
) -> RMSpropScalars:
    return RMSpropScalars(
        maximize=bool(hp.maximize),
        centered=bool(hp.centered),
        use_momentum=hp.momentum > 0,
        weight_decay=float(hp.weight_decay),
        alpha=float(hp.alpha),
        one_minus_alpha=1.0 - hp.alpha,
        eps_root=float(hp.eps_root),
        eps=float(hp.eps),
        momentum=float(hp.momentum),
        neg_lr=-float(hp.lr),
    )


def state_slots(hp: RMSpropHyperparams) -> tuple[str, ...]:
    slots = ["square_avg"]
    if hp.momentum > 0:
        slots.append("momentum_buffer")
    if hp.centered:
        slots.append("grad_avg")
    return tuple(slots)


def init_state(xp: Any, param: Any, hp: RMSpropHyperparams) -> dict[str, Any]:
    return {slot: xp.zeros_like(param) for slot in state_slots(hp)}


def reference_update(xp: Any, param: Any, grad: Any, state: dict[str, Any], s: RMSpropScalars) -> None:
    if s.maximize:
        grad = -grad
    if s.weight_decay != 0:
        grad = grad + s.weight_decay * param
    square_avg = state["square_avg"]
    square_avg *= s.alpha
    square_avg += s.one_minus_alpha * grad * grad
    if s.centered:
        grad_avg = state["grad_avg"]
        grad_avg += s.one_minus_alpha * (grad - grad_avg)
        avg = xp.sqrt(square_avg - grad_avg * grad_avg + s.eps_root) + s.eps
    else:
        avg = xp.sqrt(square_avg + s.eps_root) + s.eps
    if s.use_momentum:
        buf = state["momentum_buffer"]
        buf *= s.momentum
        buf += grad / avg
        param += s.neg_lr * buf
    else:
        param += (s.neg_lr * grad) / avg


def describe(hp: RMSpropHyperparams) -> str:
    lines = [
        f"RMSprop{' (centered)' if hp.centered else ''}, with s_0 = 0:",
        "  g_t = " + ("-" if hp.maximize else "") + "grad f(theta_{t-1})" + ("   (maximize)" if hp.maximize else ""),
    ]
    if hp.weight_decay:
        lines.append(f"  g_t = g_t + {hp.weight_decay:g} * theta_{{t-1}}   (L2 weight decay)")
    lines.append(f"  s_t = {hp.alpha:g} * s_{{t-1}} + (1 - {hp.alpha:g}) * g_t^2")
    inside = "s_t"
    if hp.centered:
        lines.append(f"  gbar_t = gbar_{{t-1}} + (1 - {hp.alpha:g}) * (g_t - gbar_{{t-1}})")
        inside = "s_t - gbar_t^2"
    if hp.eps_root:
        inside += f" + {hp.eps_root:g}"
    outside = f" + {hp.eps:g}" if hp.eps else ""
    lines.append(f"  r_t = sqrt({inside}){outside}")
    if hp.momentum > 0:
        lines.append(f"  b_t = {hp.momentum:g} * b_{{t-1}} + g_t / r_t")
        lines.append(f"  theta_t = theta_{{t-1}} - {hp.lr:g} * b_t")
    else:
        lines.append(f"  theta_t = theta_{{t-1}} - {hp.lr:g} * g_t / r_t")
    where = []
    if hp.eps_root:
        where.append("epsilon inside the root (Keras, TF1, optax, the article's equations)")
    if hp.eps:
        where.append("epsilon outside the root (torch)")
    if where:
        lines.append("  " + "; ".join(where))
    return "\n".join(lines)


RMSPROP = AlgorithmSpec(
    name="rmsprop",
    title="RMSprop",
    summary="gradient descent divided by a running root mean square of the gradients",
    hyperparams=RMSpropHyperparams,
    state_slots=state_slots,
    init_state=init_state,
    scalars=scalars,
    reference_update=reference_update,
    describe_rule=describe,
    module=sys.modules[__name__],
    presets={
        "torch": {},
        "keras": {"lr": 1e-3, "alpha": 0.9, "eps": 0.0, "eps_root": 1e-7},
        "optax": {"alpha": 0.9, "eps": 0.0, "eps_root": 1e-8},
        "paper": {"alpha": 0.9},
        "article": {"alpha": 0.95, "eps": 0.0, "eps_root": 1e-6},
    },
    notes={
        "optax": "optax.rmsprop has no default learning rate (torch's 1e-2 is kept); its initial_scale and "
        "bias_correction options (off by default) are not flags here",
        "keras": "Keras's momentum keeps the learning rate inside the buffer (b = mu * b + lr * g / r): the same steps "
        f"while the learning rate is constant (not a flag). {KERAS_WEIGHT_DECAY}",
        "paper": "Hinton's lecture gives the decay 0.9 but no epsilon or learning rate: torch's (1e-8 outside the "
        "root, lr 1e-2) are kept",
    },
    torch_name="RMSprop",
)
