r"""Rprop: a step size per coordinate, grown while the gradient keeps its sign and shrunk when it flips.

With :math:`\Delta_0 = \eta` (the learning rate, in every coordinate), :math:`p_0 = 0`, the factors
:math:`0 < \eta^- < 1 < \eta^+` (``etas``) and the bounds :math:`[\Delta_{\min}, \Delta_{\max}]` (``step_sizes``):

.. math::

    s_t &= \operatorname{sign}(g_t\, p_{t-1}) \\
    \Delta_t &= \operatorname{clip}\left(\Delta_{t-1} \cdot
        \begin{cases} \eta^+ & s_t > 0 \\ \eta^- & s_t < 0 \\ 1 & s_t = 0 \end{cases},\;
        \Delta_{\min}, \Delta_{\max}\right) \\
    p_t &= \begin{cases} 0 & s_t < 0 \\ g_t & \text{otherwise} \end{cases} \\
    \theta_t &= \theta_{t-1} - \operatorname{sign}(p_t)\, \Delta_t

Only the sign of the gradient moves the parameters; its size is forgotten. Where the sign flips, the step size
shrinks and the stored gradient :math:`p_t` is set to 0, so that the coordinate does not move this step and the
next step neither grows nor shrinks its step size. The state keeps torch's keys: ``step``, ``prev``
(:math:`p_t`) and ``step_size`` (:math:`\Delta_t`).

Conventions. This is torch's ``Rprop`` (also MindSpore's, with the same signature and defaults: lr 1e-2, etas
(0.5, 1.2), step sizes (1e-6, 50)), which is the variant Igel and Hüsken call iRprop⁻: no weight backtracking, the
gradient forgotten where its sign flips. Riedmiller and Braun's original Rprop also undoes the previous step where
the sign flips (weight backtracking); descend, like torch, does not. Where :math:`g_t p_{t-1}` is NaN the factor is
1, as in torch (whose ``sign`` of NaN is 0); the move is :math:`\operatorname{sign}(p_t)` with NumPy's ``sign``, so a
NaN gradient makes that parameter NaN here, while torch leaves it unchanged. Rprop is meant for full-batch
gradients: with noisy minibatch gradients the signs flip at random and the step sizes shrink to the lower bound.

References:
    Riedmiller & Braun (1993), "A Direct Adaptive Method for Faster Backpropagation Learning: The RPROP Algorithm",
    IEEE International Conference on Neural Networks.

    Igel & Hüsken (2000), "Improving the Rprop Learning Algorithm", Second International Symposium on Neural
    Computation (iRprop⁻, the variant here).
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import KW_ONLY, dataclass
from typing import Any, NamedTuple

from descend.algorithms._spec import AlgorithmSpec, Hyperparams, check_bool, check_real
from descend.algorithms.conventions import not_in_article


def _check_pair(name: str, value: Any) -> tuple[Any, Any]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise TypeError(f"{name} must be a pair of numbers, got {value!r}")
    return value[0], value[1]


def check_etas(value: Any) -> tuple[float, float]:
    """Check ``etas`` = (etaminus, etaplus): reals with 0 < etaminus < 1 < etaplus, as torch requires."""
    minus, plus = _check_pair("etas", value)
    try:
        return (
            check_real("etaminus (etas[0])", minus, low=0.0, high=1.0, low_open=True, high_open=True),
            check_real("etaplus (etas[1])", plus, low=1.0, low_open=True),
        )
    except ValueError as exc:  # torch's words first, then which one and what is allowed
        raise ValueError(f"Invalid eta values: {minus}, {plus} ({exc})") from None


def check_step_sizes(value: Any) -> tuple[float, float]:
    """Check ``step_sizes`` = (min, max): finite reals with 0 <= min <= max."""
    low, high = _check_pair("step_sizes", value)
    low = check_real("minimal step size (step_sizes[0])", low, low=0.0)
    return low, check_real("maximal step size (step_sizes[1])", high, low=low)


@dataclass(frozen=True)
class RpropHyperparams(Hyperparams):
    lr: float = 1e-2
    etas: tuple[float, float] = (0.5, 1.2)
    step_sizes: tuple[float, float] = (1e-6, 50.0)
    _: KW_ONLY
    maximize: bool = False

    def validate(self) -> RpropHyperparams:
        return dataclasses.replace(
            self,
            lr=check_real("lr", self.lr, low=0.0),
            etas=check_etas(self.etas),
            step_sizes=check_step_sizes(self.step_sizes),
            maximize=check_bool("maximize", self.maximize),
        )


class RpropScalars(NamedTuple):
    maximize: bool
    etaminus: float
    etaplus: float
    step_size_min: float
    step_size_max: float


def scalars(hp: RpropHyperparams, step: int, host: dict[str, float] | None = None, first: bool = False) -> RpropScalars:
    etaminus, etaplus = hp.etas
    low, high = hp.step_sizes
    return RpropScalars(
        maximize=bool(hp.maximize),
        etaminus=float(etaminus),
        etaplus=float(etaplus),
        step_size_min=float(low),
        step_size_max=float(high),
    )


def state_slots(hp: RpropHyperparams) -> tuple[str, ...]:
    return ("prev", "step_size")


def init_state(xp: Any, param: Any, hp: RpropHyperparams) -> dict[str, Any]:
    step_size = xp.zeros_like(param)
    step_size += hp.lr
    return {"prev": xp.zeros_like(param), "step_size": step_size}


def reference_update(xp: Any, param: Any, grad: Any, state: dict[str, Any], s: RpropScalars) -> None:
    if s.maximize:
        grad = -grad
    prev, step_size = state["prev"], state["step_size"]
    agreement = grad * prev  # its sign: > 0 the gradient kept its sign, < 0 it flipped, else (0 or NaN) neither
    factor = xp.zeros_like(prev)  # an array even for a 0-d param, so that it takes masked assignment
    factor += 1.0
    factor[agreement > 0] = s.etaplus
    factor[agreement < 0] = s.etaminus
    step_size *= factor
    step_size[step_size < s.step_size_min] = s.step_size_min
    step_size[step_size > s.step_size_max] = s.step_size_max
    prev[...] = grad
    prev[agreement < 0] = 0.0
    param -= xp.sign(prev) * step_size


def describe(hp: RpropHyperparams) -> str:
    etaminus, etaplus = hp.etas
    low, high = hp.step_sizes
    return "\n".join(
        [
            f"Rprop (iRprop-, torch's), with step_size_0 = {hp.lr:g} everywhere and prev_0 = 0:",
            "  g_t = "
            + ("-" if hp.maximize else "")
            + "grad f(theta_{t-1})"
            + ("   (maximize)" if hp.maximize else ""),
            "  s_t = sign(g_t * prev_{t-1})",
            f"  step_size_t = clip(step_size_{{t-1}} * ({etaplus:g} if s_t > 0, {etaminus:g} if s_t < 0, 1 if s_t = 0),"
            f" {low:g}, {high:g})",
            "  prev_t = 0 where s_t < 0, else g_t",
            "  theta_t = theta_{t-1} - sign(prev_t) * step_size_t",
        ]
    )


RPROP = AlgorithmSpec(
    name="rprop",
    title="Rprop",
    summary="a step size per coordinate, grown while the gradient keeps its sign and shrunk when it flips",
    hyperparams=RpropHyperparams,
    state_slots=state_slots,
    init_state=init_state,
    scalars=scalars,
    reference_update=reference_update,
    describe_rule=describe,
    module=sys.modules[__name__],
    presets={"torch": {}},
    notes={
        "optax": "optax.rprop has these defaults but its scale_by_rprop applies the step computed one step earlier "
        "(its first step moves nothing); descend does not run that variant: torch's rule runs with torch's defaults",
        "keras": "Keras has no Rprop: torch's rule runs with torch's defaults",
        "paper": "Riedmiller & Braun's Rprop undoes the previous step where the gradient's sign flips (weight "
        "backtracking); descend does not run that variant: torch's iRprop- runs with torch's defaults",
        "article": not_in_article("Rprop"),
    },
    torch_name="Rprop",
)
