r"""Lion: the sign of an interpolated momentum, found by program search.

With :math:`m_0 = 0`:

.. math::

    \theta_{t-1} &\leftarrow (1 - \eta\lambda)\, \theta_{t-1} \quad\text{(decoupled weight decay)} \\
    c_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
    \theta_t &= \theta_{t-1} - \eta \operatorname{sign}(c_t) \\
    m_t &= \beta_2 m_{t-1} + (1 - \beta_2) g_t

Every coordinate moves by exactly :math:`\eta` (or not at all where :math:`c_t = 0`), so Lion's update has a larger
norm than Adam's at the same rate: the paper uses a learning rate 3 to 10 times smaller than AdamW's and a weight
decay as many times larger. It keeps one state slot (``exp_avg``), against Adam's two, and no step count.

Conventions. The defaults are those of the paper's reference code and of lion-pytorch, bitsandbytes and optimi
(lr 1e-4, betas (0.9, 0.99), no weight decay): descend's "torch" convention, since torch has no Lion. optax's
``lion`` defaults to a weight decay of 1e-3 (the "optax" convention) and Keras' ``Lion`` to a learning rate of 1e-3
(the "keras" convention). All of them multiply the decay by the learning rate, as here. The order of operations is
lion-pytorch's: decay, then the signed step, then the moment; ``sign`` of 0 is 0, and of NaN is NaN (NumPy's).

References:
    Chen, Liang, Huang, Real, Wang, Pham, Dong, Luong, Hsieh, Lu & Le (2023), "Symbolic Discovery of Optimization
    Algorithms", NeurIPS, Algorithm 2 (arXiv:2302.06675).
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import KW_ONLY, dataclass
from typing import Any, NamedTuple

from descend.algorithms._spec import AlgorithmSpec, Hyperparams, check_betas, check_bool, check_real


@dataclass(frozen=True)
class LionHyperparams(Hyperparams):
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    _: KW_ONLY
    maximize: bool = False

    def validate(self) -> LionHyperparams:
        return dataclasses.replace(
            self,
            lr=check_real("lr", self.lr, low=0.0),
            betas=check_betas(self.betas),
            weight_decay=check_real("weight_decay", self.weight_decay, low=0.0),
            maximize=check_bool("maximize", self.maximize),
        )


class LionScalars(NamedTuple):
    maximize: bool
    decay: bool  # decoupled weight decay is on
    decay_factor: float  # 1 - lr * weight_decay
    beta1: float
    one_minus_beta1: float
    beta2: float
    one_minus_beta2: float
    neg_lr: float


def scalars(hp: LionHyperparams, step: int, host: dict[str, float] | None = None, first: bool = False) -> LionScalars:
    beta1, beta2 = hp.betas
    return LionScalars(
        maximize=bool(hp.maximize),
        decay=hp.weight_decay != 0,
        decay_factor=1.0 - hp.lr * hp.weight_decay,
        beta1=float(beta1),
        one_minus_beta1=1.0 - beta1,
        beta2=float(beta2),
        one_minus_beta2=1.0 - beta2,
        neg_lr=-float(hp.lr),
    )


def state_slots(hp: LionHyperparams) -> tuple[str, ...]:
    return ("exp_avg",)


def init_state(xp: Any, param: Any, hp: LionHyperparams) -> dict[str, Any]:
    return {"exp_avg": xp.zeros_like(param)}


def reference_update(xp: Any, param: Any, grad: Any, state: dict[str, Any], s: LionScalars) -> None:
    if s.maximize:
        grad = -grad
    if s.decay:
        param *= s.decay_factor
    exp_avg = state["exp_avg"]
    c = exp_avg * s.beta1 + s.one_minus_beta1 * grad
    param += s.neg_lr * xp.sign(c)
    exp_avg *= s.beta2
    exp_avg += s.one_minus_beta2 * grad


def describe(hp: LionHyperparams) -> str:
    beta1, beta2 = hp.betas
    lines = [
        "Lion (the sign of an interpolated momentum), with m_0 = 0:",
        "  g_t = " + ("-" if hp.maximize else "") + "grad f(theta_{t-1})" + ("   (maximize)" if hp.maximize else ""),
    ]
    if hp.weight_decay:
        lines.append(
            f"  theta_{{t-1}} = (1 - {hp.lr:g} * {hp.weight_decay:g}) * theta_{{t-1}}   (decoupled weight decay)"
        )
    lines += [
        f"  c_t = {beta1:g} * m_{{t-1}} + (1 - {beta1:g}) * g_t",
        f"  theta_t = theta_{{t-1}} - {hp.lr:g} * sign(c_t)",
        f"  m_t = {beta2:g} * m_{{t-1}} + (1 - {beta2:g}) * g_t",
    ]
    return "\n".join(lines)


LION = AlgorithmSpec(
    name="lion",
    title="Lion",
    summary="the sign of an interpolated momentum: every coordinate moves by the learning rate (Chen et al. 2023)",
    hyperparams=LionHyperparams,
    state_slots=state_slots,
    init_state=init_state,
    scalars=scalars,
    reference_update=reference_update,
    describe_rule=describe,
    module=sys.modules[__name__],
    presets={"optax": {"weight_decay": 1e-3}, "keras": {"lr": 1e-3}, "paper": {}},
    notes={
        "torch": "torch.optim has no Lion: the paper's rule runs with the defaults of its reference code (as "
        "lion-pytorch, bitsandbytes and optimi)",
        "optax": "optax.lion has no default learning rate (the paper's 1e-4 is kept)",
        "keras": "Keras's Lion decays the weights as here (decoupled, times the learning rate)",
        "article": "the article does not cover Lion: the paper's rule runs with the paper's defaults",
    },
    has_step=False,
)
