r"""ASGD: stochastic gradient descent with a decaying rate and a running average of the iterates.

With :math:`\eta_0 = \eta` (the learning rate), :math:`\mu_0 = 1`, :math:`\bar\theta_0 = 0`, the decay
:math:`\lambda` (``lambd``), the power :math:`\alpha` and the averaging start :math:`t_0`:

.. math::

    g_t &= \nabla f(\theta_{t-1}) + w\, \theta_{t-1} \\
    \theta_t &= (1 - \lambda \eta_{t-1})\, \theta_{t-1} - \eta_{t-1} g_t \\
    \bar\theta_t &= \begin{cases} \theta_t & \mu_{t-1} = 1 \\
        \bar\theta_{t-1} + \mu_{t-1} (\theta_t - \bar\theta_{t-1}) & \text{otherwise} \end{cases} \\
    \eta_t &= \frac{\eta}{(1 + \lambda \eta t)^{\alpha}}, \qquad \mu_t = \frac{1}{\max(1, t - t_0)}

The rate decays as :math:`t^{-\alpha}`, and from step :math:`t_0 + 1` on, :math:`\bar\theta` (``ax``) is the mean
of the iterates since :math:`t_0`: Polyak and Juditsky's averaging, whose mean converges at the optimal rate even
though the iterates themselves wander. The parameters stay the last iterate; ``ax`` is the average to evaluate or
deploy. The state keeps torch's keys: ``step``, ``eta`` (:math:`\eta_t`), ``mu`` (:math:`\mu_t`) and ``ax``.
``eta`` and ``mu`` are host scalars, kept as torch keeps them (0-d tensors of torch's default dtype in
``descend.torch``, floats in the NumPy front).

Conventions. This is torch's ``ASGD`` (defaults lr 1e-2, lambd 1e-4, alpha 0.75, t0 1e6, weight decay 0, applied
as an L2 term added to the gradient; the decay term :math:`\lambda\eta\theta` is Xu's). Step :math:`t` uses
:math:`\eta_{t-1}` and :math:`\mu_{t-1}` as the state holds them (stored by the previous step, with the learning
rate in force then), as torch does: after a learning-rate change the first step still uses the old rate. Where
:math:`\mu_{t-1} = 1` the average is a copy of the parameters, as in torch. Optax and Keras have no ASGD.

References:
    Polyak & Juditsky (1992), "Acceleration of Stochastic Approximation by Averaging", SIAM Journal on Control and
    Optimization 30(4).

    Xu (2011), "Towards Optimal One Pass Large Scale Learning with Averaged Stochastic Gradient Descent",
    arXiv:1107.2490 (the rate schedule and decay term torch uses).
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import KW_ONLY, dataclass
from typing import Any, NamedTuple

from descend.algorithms._spec import AlgorithmSpec, Hyperparams, check_bool, check_real
from descend.algorithms.conventions import not_in_article


@dataclass(frozen=True)
class ASGDHyperparams(Hyperparams):
    lr: float = 1e-2
    lambd: float = 1e-4
    alpha: float = 0.75
    t0: float = 1e6
    weight_decay: float = 0.0
    _: KW_ONLY
    maximize: bool = False

    def validate(self) -> ASGDHyperparams:
        return dataclasses.replace(
            self,
            lr=check_real("lr", self.lr, low=0.0),
            lambd=check_real("lambd", self.lambd, low=0.0),
            alpha=check_real("alpha", self.alpha, low=0.0),
            t0=check_real("t0", self.t0),
            weight_decay=check_real("weight_decay", self.weight_decay, low=0.0),
            maximize=check_bool("maximize", self.maximize),
        )


class ASGDScalars(NamedTuple):
    maximize: bool
    weight_decay: float
    average: bool  # mu_{t-1} != 1: average ax towards the params; else copy them
    decay_factor: float  # 1 - lambd * eta_{t-1}
    neg_eta: float  # -eta_{t-1}
    mu: float  # mu_{t-1}


def _eta(hp: ASGDHyperparams, step: int) -> float:
    return hp.lr / ((1.0 + hp.lambd * hp.lr * step) ** hp.alpha)


def _mu(hp: ASGDHyperparams, step: int) -> float:
    return 1.0 / max(1.0, step - hp.t0)


def _like(old: Any, value: float) -> Any:
    """``value`` in the form ``old`` is kept in: a float, or a 0-d tensor of ``old``'s dtype and device."""
    new_tensor = getattr(old, "new_tensor", None)
    return value if new_tensor is None else new_tensor(value)


def host_slots(hp: ASGDHyperparams) -> dict[str, float]:
    return {"eta": float(hp.lr), "mu": 1.0}


def advance_host(hp: ASGDHyperparams, step: int, host: dict[str, Any]) -> dict[str, Any]:
    """The values after step ``step``, which step ``step + 1`` uses."""
    return {"eta": _like(host["eta"], _eta(hp, step)), "mu": _like(host["mu"], _mu(hp, step))}


def scalars(hp: ASGDHyperparams, step: int, host: dict[str, float] | None = None, first: bool = False) -> ASGDScalars:
    """Step ``step`` uses :math:`\\eta_{t-1}` and :math:`\\mu_{t-1}` as the state holds them (``host``, read before
    this step's :func:`advance_host`; :math:`\\eta` and 1 at the first step), as torch reads them."""
    host = host if host is not None else host_slots(hp)
    eta, mu = float(host["eta"]), float(host["mu"])
    return ASGDScalars(
        maximize=bool(hp.maximize),
        weight_decay=float(hp.weight_decay),
        average=mu != 1.0,
        decay_factor=1.0 - hp.lambd * eta,
        neg_eta=-eta,
        mu=mu,
    )


def state_slots(hp: ASGDHyperparams) -> tuple[str, ...]:
    return ("ax",)


def init_state(xp: Any, param: Any, hp: ASGDHyperparams) -> dict[str, Any]:
    return {"ax": xp.zeros_like(param)}


def reference_update(xp: Any, param: Any, grad: Any, state: dict[str, Any], s: ASGDScalars) -> None:
    if s.maximize:
        grad = -grad
    if s.weight_decay != 0:
        grad = grad + s.weight_decay * param
    param *= s.decay_factor
    param += s.neg_eta * grad
    ax = state["ax"]
    if s.average:
        ax += (param - ax) * s.mu
    else:
        ax[...] = param


def describe(hp: ASGDHyperparams) -> str:
    lines = [
        f"ASGD (averaged SGD), with eta_0 = {hp.lr:g}, mu_0 = 1, ax_0 = 0:",
        "  g_t = " + ("-" if hp.maximize else "") + "grad f(theta_{t-1})" + ("   (maximize)" if hp.maximize else ""),
    ]
    if hp.weight_decay:
        lines.append(f"  g_t = g_t + {hp.weight_decay:g} * theta_{{t-1}}   (L2 weight decay)")
    lines += [
        f"  theta_t = (1 - {hp.lambd:g} * eta_{{t-1}}) * theta_{{t-1}} - eta_{{t-1}} * g_t",
        "  ax_t = theta_t if mu_{t-1} = 1, else ax_{t-1} + mu_{t-1} * (theta_t - ax_{t-1})",
        f"  eta_t = {hp.lr:g} / (1 + {hp.lambd:g} * {hp.lr:g} * t)^{hp.alpha:g}",
        f"  mu_t = 1 / max(1, t - {hp.t0:g})",
    ]
    return "\n".join(lines)


ASGD = AlgorithmSpec(
    name="asgd",
    title="ASGD",
    summary="SGD with a rate decaying as t^-alpha and a running average of the iterates (Polyak & Juditsky 1992)",
    hyperparams=ASGDHyperparams,
    state_slots=state_slots,
    init_state=init_state,
    scalars=scalars,
    reference_update=reference_update,
    describe_rule=describe,
    module=sys.modules[__name__],
    presets={"torch": {}},
    notes={
        "optax": "optax has no ASGD: torch's rule runs with torch's defaults",
        "keras": "Keras has no ASGD: torch's rule runs with torch's defaults",
        "paper": "Polyak & Juditsky give no default values, and the rate schedule and decay term are Xu's: torch's "
        "rule runs with torch's defaults",
        "article": not_in_article("ASGD"),
    },
    torch_name="ASGD",
    host_slots=host_slots,
    advance_host=advance_host,
    full_state={"t0": 2.0},
    host_for_scalars="before",
)
