r"""Stochastic gradient descent, with torch's heavy-ball momentum, dampening and Nesterov.

With ``momentum = 0`` this is plain gradient descent, :math:`\theta_t = \theta_{t-1} - \eta g_t`: full-batch,
mini-batch or per-sample according to the gradients the caller feeds it. With momentum :math:`\mu > 0`
(torch's form, also optax's ``trace``):

.. math::

    g_t &= \nabla f(\theta_{t-1}) + \lambda \theta_{t-1} \\
    b_1 &= g_1, \qquad b_t = \mu b_{t-1} + (1 - \tau) g_t \quad (t > 1) \\
    d_t &= g_t + \mu b_t \ \text{(Nesterov)} \quad\text{or}\quad d_t = b_t \\
    \theta_t &= \theta_{t-1} - \eta d_t

The first step copies the gradient into the buffer, without the dampening :math:`\tau`, as torch does. The buffer
is a sum, not an average: its steady-state gain is :math:`1/(1-\mu)`, ten times at :math:`\mu = 0.9`. The article's
momentum, an exponential average with gain one, is the separate ``Momentum`` algorithm.

Keras writes the same recurrence with the learning rate inside the velocity (:math:`v = \mu v - \eta g`,
:math:`\theta \mathrel{+}= v`); the two agree while the learning rate is constant and differ under a schedule.

References:
    Polyak (1964), "Some methods of speeding up the convergence of iteration methods".
    Sutskever, Martens, Dahl & Hinton (2013), "On the importance of initialization and momentum in deep learning".
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import KW_ONLY, dataclass
from typing import Any, NamedTuple

from descend.algorithms._spec import AlgorithmSpec, Hyperparams, check_bool, check_real
from descend.algorithms.conventions import KERAS_WEIGHT_DECAY


@dataclass(frozen=True)
class SGDHyperparams(Hyperparams):
    lr: float = 1e-3
    momentum: float = 0.0
    dampening: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False
    _: KW_ONLY
    maximize: bool = False

    def validate(self) -> SGDHyperparams:
        values = dict(
            lr=check_real("lr", self.lr, low=0.0),
            momentum=check_real("momentum", self.momentum, low=0.0),
            dampening=check_real("dampening", self.dampening),
            weight_decay=check_real("weight_decay", self.weight_decay, low=0.0),
            nesterov=check_bool("nesterov", self.nesterov),
            maximize=check_bool("maximize", self.maximize),
        )
        if values["nesterov"] and (values["momentum"] <= 0 or values["dampening"] != 0):
            raise ValueError(
                f"Nesterov momentum requires a momentum > 0 and zero dampening, got momentum={self.momentum!r} "
                f"and dampening={self.dampening!r}"
            )
        return dataclasses.replace(self, **values)


class SGDScalars(NamedTuple):
    maximize: bool
    use_momentum: bool
    nesterov: bool
    first_step: bool  # the buffer takes the gradient as it is
    weight_decay: float
    momentum: float
    grad_scale: float  # 1 on the first step, else 1 - dampening
    neg_lr: float


def scalars(hp: SGDHyperparams, step: int, host: dict[str, float] | None = None, first: bool = False) -> SGDScalars:
    """SGD keeps no step count (``step`` is 0); ``first`` says the momentum buffer is new this step."""
    return SGDScalars(
        maximize=bool(hp.maximize),
        use_momentum=hp.momentum != 0,
        nesterov=bool(hp.nesterov),
        first_step=bool(first),
        weight_decay=float(hp.weight_decay),
        momentum=float(hp.momentum),
        grad_scale=1.0 if first else 1.0 - hp.dampening,
        neg_lr=-float(hp.lr),
    )


def state_slots(hp: SGDHyperparams) -> tuple[str, ...]:
    return ("momentum_buffer",) if hp.momentum != 0 else ()


def init_state(xp: Any, param: Any, hp: SGDHyperparams) -> dict[str, Any]:
    return {slot: xp.zeros_like(param) for slot in state_slots(hp)}


def reference_update(xp: Any, param: Any, grad: Any, state: dict[str, Any], s: SGDScalars) -> None:
    if s.maximize:
        grad = -grad
    if s.weight_decay != 0:
        grad = grad + s.weight_decay * param
    if s.use_momentum:
        buf = state["momentum_buffer"]
        if s.first_step:
            buf[...] = grad
        else:
            buf *= s.momentum
            buf += s.grad_scale * grad
        grad = grad + s.momentum * buf if s.nesterov else buf
    param += s.neg_lr * grad


def describe(hp: SGDHyperparams) -> str:
    g = ("-" if hp.maximize else "") + "grad f(theta_{t-1})"
    lines = []
    if hp.momentum == 0:
        lines.append("Gradient descent (no momentum):")
        lines.append(f"  g_t = {g}" + ("   (maximize)" if hp.maximize else ""))
    else:
        kind = "Nesterov" if hp.nesterov else "heavy-ball"
        lines.append(f"SGD with {kind} momentum (torch's form: the buffer sums gradients, gain 1/(1 - mu)):")
        lines.append(f"  g_t = {g}" + ("   (maximize)" if hp.maximize else ""))
    if hp.weight_decay:
        lines.append(f"  g_t = g_t + {hp.weight_decay:g} * theta_{{t-1}}   (L2 weight decay)")
    if hp.momentum == 0:
        lines.append(f"  theta_t = theta_{{t-1}} - {hp.lr:g} * g_t")
        return "\n".join(lines)
    damp = f"(1 - {hp.dampening:g}) * " if hp.dampening else ""
    lines.append(f"  b_1 = g_1;  b_t = {hp.momentum:g} * b_{{t-1}} + {damp}g_t for t > 1")
    if hp.nesterov:
        lines.append(f"  theta_t = theta_{{t-1}} - {hp.lr:g} * (g_t + {hp.momentum:g} * b_t)")
    else:
        lines.append(f"  theta_t = theta_{{t-1}} - {hp.lr:g} * b_t")
    return "\n".join(lines)


SGD = AlgorithmSpec(
    name="sgd",
    title="SGD",
    summary="gradient descent; with momentum, torch's heavy-ball (or Nesterov) form",
    hyperparams=SGDHyperparams,
    state_slots=state_slots,
    init_state=init_state,
    scalars=scalars,
    reference_update=reference_update,
    describe_rule=describe,
    module=sys.modules[__name__],
    presets={"torch": {}, "optax": {}, "keras": {"lr": 1e-2}, "article": {"lr": 1e-2}},
    notes={
        "optax": "optax.sgd has no default learning rate (torch's 1e-3 is kept), no dampening and no weight decay; "
        "its momentum (trace) is torch's sum",
        "keras": "Keras keeps the learning rate inside the velocity (v = mu * v - lr * g; theta += v): the same steps "
        f"while the learning rate is constant, not under a schedule (not a flag). {KERAS_WEIGHT_DECAY}",
        "paper": "no paper gives SGD default values (Robbins & Monro 1951; Polyak 1964 for momentum): torch's rule "
        "runs with torch's defaults",
    },
    torch_name="SGD",
    has_step=False,
)
