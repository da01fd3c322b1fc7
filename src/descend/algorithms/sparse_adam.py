r"""SparseAdam: Adam on the entries a sparse gradient holds, the rest left as they are ("lazy" Adam).

For an embedding table, whose gradient holds the rows a batch looked up, the moments and the parameter change only at
those entries; an entry the batch did not touch keeps its moments undecayed and its value unmoved. For step
:math:`t \ge 1` with :math:`m_0 = v_0 = 0`, at every entry :math:`i` the gradient holds (duplicates summed first):

.. math::

    m_{t,i} &= m_{t-1,i} + (1 - \beta_1)(g_{t,i} - m_{t-1,i}) \\
    v_{t,i} &= v_{t-1,i} + (1 - \beta_2)(g_{t,i}^2 - v_{t-1,i}) \\
    \theta_{t,i} &= \theta_{t-1,i}
        - \eta \frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t} \frac{m_{t,i}}{\sqrt{v_{t,i}} + \epsilon}

and every other entry of :math:`\theta`, :math:`m` and :math:`v` is unchanged. :math:`t` counts the steps at which the
parameter had a gradient, whichever entries it held, so an entry seen rarely is corrected as if it had been seen at
every step. Two things differ from Adam even where every entry is present: the second moment is written as a step
towards :math:`g^2` (as the first moment is), and :math:`\epsilon` is added to the root of the uncorrected
:math:`v_t`, the bias corrections being folded into the step size (Keras's "epsilon hat" placement). There is no
weight decay (torch's class has none).

The torch front takes sparse gradients only (``torch.nn.Embedding(..., sparse=True)`` makes them), as torch's does: it
coalesces each, updates the entries it holds and leaves the others untouched, and refuses a dense gradient with
torch's message. The NumPy front has no sparse arrays: it takes dense gradients and counts every entry as present,
which is what the torch front does with a sparse gradient that lists every entry.

The order of operations is torch's ``sparse_adam``: the moment updates ``(g - m) * (1 - beta1)`` and
``(g*g - v) * (1 - beta2)`` are added to the old moments, and the step is ``(-step_size) * (m / (sqrt(v) + eps))``;
the fused kernel copies it.

References:
    Kingma & Ba (2015), "Adam: A Method for Stochastic Optimization", arXiv:1412.6980, Algorithm 1 and the
    efficiency remark before section 2.1 (the folded bias corrections).
    torch.optim.SparseAdam (torch/optim/sparse_adam.py and ``sparse_adam`` in torch/optim/_functional.py).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass
from typing import Any, NamedTuple

from descend.algorithms._spec import AlgorithmSpec, Hyperparams, check_betas, check_bool, check_real


@dataclass(frozen=True)
class SparseAdamHyperparams(Hyperparams):
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    maximize: bool = False

    def validate(self) -> SparseAdamHyperparams:
        # torch's bounds: a learning rate and an epsilon above zero (Adam's allow zero)
        return dataclasses.replace(
            self,
            lr=check_real("lr", self.lr, low=0.0, low_open=True),
            betas=check_betas(self.betas),
            eps=check_real("eps", self.eps, low=0.0, low_open=True),
            maximize=check_bool("maximize", self.maximize),
        )


class SparseAdamScalars(NamedTuple):
    maximize: bool
    one_minus_beta1: float
    one_minus_beta2: float
    eps: float
    neg_step_size: float  # -lr * sqrt(1 - beta2^t) / (1 - beta1^t)


def scalars(hp: Any, step: int, host: dict[str, float] | None = None, first: bool = False) -> SparseAdamScalars:
    beta1, beta2 = hp.betas
    step_size = hp.lr * math.sqrt(1.0 - beta2**step) / (1.0 - beta1**step)
    return SparseAdamScalars(
        maximize=bool(hp.maximize),
        one_minus_beta1=1.0 - beta1,
        one_minus_beta2=1.0 - beta2,
        eps=float(hp.eps),
        neg_step_size=-step_size,
    )


def state_slots(hp: Any) -> tuple[str, ...]:
    return ("exp_avg", "exp_avg_sq")


def init_state(xp: Any, param: Any, hp: Any) -> dict[str, Any]:
    return {slot: xp.zeros_like(param) for slot in state_slots(hp)}


def reference_update(xp: Any, param: Any, grad: Any, state: dict[str, Any], s: SparseAdamScalars) -> None:
    if s.maximize:
        grad = -grad
    exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
    m_step = (grad - exp_avg) * s.one_minus_beta1
    v_step = (grad * grad - exp_avg_sq) * s.one_minus_beta2
    exp_avg += m_step
    exp_avg_sq += v_step
    param += s.neg_step_size * (exp_avg / (xp.sqrt(exp_avg_sq) + s.eps))


def describe(hp: Any) -> str:
    beta1, beta2 = hp.betas
    g = ("-" if hp.maximize else "") + "grad f(theta_{t-1})"
    return "\n".join(
        [
            "SparseAdam (lazy Adam), for t = 1, 2, ... with m_0 = v_0 = 0, at each entry the gradient holds:",
            f"  g_t = {g}, duplicate entries summed" + ("   (maximize)" if hp.maximize else ""),
            f"  m_t = m_{{t-1}} + (1 - {beta1:g}) * (g_t - m_{{t-1}})",
            f"  v_t = v_{{t-1}} + (1 - {beta2:g}) * (g_t^2 - v_{{t-1}})",
            f"  theta_t = theta_{{t-1}} - {hp.lr:g} * sqrt(1 - {beta2:g}^t) / (1 - {beta1:g}^t)"
            f" * m_t / (sqrt(v_t) + {hp.eps:g})",
            "  every entry the gradient does not hold keeps theta, m and v as they are; t counts the steps at which",
            "  the parameter had a gradient (the NumPy front's dense gradients hold every entry)",
        ]
    )


SPARSE_ADAM = AlgorithmSpec(
    name="sparse_adam",
    title="SparseAdam",
    summary="Adam on the entries a sparse gradient holds (embedding rows), the others untouched: lazy Adam",
    hyperparams=SparseAdamHyperparams,
    state_slots=state_slots,
    init_state=init_state,
    scalars=scalars,
    reference_update=reference_update,
    describe_rule=describe,
    module=sys.modules[__name__],
    presets={"torch": {}},
    notes={
        "optax": "optax has no sparse Adam (its gradients are dense): torch's rule runs with torch's defaults",
        "keras": "Keras has no sparse Adam (TensorFlow Addons' LazyAdam is no longer maintained): torch's rule runs "
        "with torch's defaults",
        "paper": "Kingma & Ba define Adam on dense gradients; lazy Adam has no paper of its own: torch's rule runs "
        "with torch's defaults",
        "article": "the article does not cover sparse gradients: torch's rule runs with torch's defaults",
    },
    torch_name="SparseAdam",
)
