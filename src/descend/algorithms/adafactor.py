r"""Adafactor: Adam's second moment kept as row and column averages, with a relative step size and update clipping.

For a parameter :math:`\theta` with at least two dimensions, of shape :math:`(\ldots, m, n)`, with
:math:`R_0 = 0` (shape :math:`(\ldots, m, 1)`, ``row_var``), :math:`C_0 = 0` (shape :math:`(\ldots, 1, n)`,
``col_var``), the decay exponent :math:`\tau \le 0` (``beta2_decay``), the epsilons :math:`\epsilon_1, \epsilon_2`
(``eps``), the clipping threshold :math:`d` and the weight decay :math:`\lambda`:

.. math::

    w_t &= t^{\tau} \qquad (= 1 - \hat\beta_{2,t}) \\
    \rho_t &= \min\left(\eta, 1/\sqrt{t}\right), \qquad
        \alpha_t = \max\left(\epsilon_2, \operatorname{RMS}(\theta_{t-1})\right) \rho_t \\
    \theta_{t-1} &\leftarrow (1 - \eta\lambda)\, \theta_{t-1} \quad\text{(decoupled weight decay)} \\
    R_t &= R_{t-1} + w_t \left(\operatorname{mean}_{j}(g_t^2) - R_{t-1}\right), \qquad
        C_t = C_{t-1} + w_t \left(\operatorname{mean}_{i}(g_t^2) - C_{t-1}\right) \\
    \hat V_t &= \frac{R_t C_t}{\max\left(\operatorname{mean}_i R_t, \epsilon_1\right)} \\
    U_t &= \frac{g_t}{\sqrt{\max(\hat V_t, \epsilon_1^2)}}, \qquad
        \theta_t = \theta_{t-1} - \frac{\alpha_t}{\max\left(1, \operatorname{RMS}(U_t) / d\right)}\, U_t

The means run over the last axis (:math:`j`, for :math:`R`) and the one before it (:math:`i`, for :math:`C` and for
the mean of :math:`R`), separately for each index of the leading axes; RMS is the root mean square over the whole
tensor. A parameter with fewer than two dimensions keeps the full average ``variance``
(:math:`\hat V_t = V_t = V_{t-1} + w_t (g_t^2 - V_{t-1})`) instead. So the state of an :math:`m \times n` matrix
holds :math:`m + n` numbers, against Adam's :math:`2mn`: the "sublinear memory" of the paper's title. The averages
are torch's ``lerp``, in its two forms: :math:`V + w(T - V)` for :math:`w < 0.5`, :math:`T - (T - V)(1 - w)`
otherwise.

Conventions. This is torch's ``Adafactor`` (defaults lr 1e-2, beta2_decay -0.8, eps (None, 1e-3), d 1, no weight
decay), which departs from the paper in two ways its documentation states: the learning rate caps :math:`\rho_t`
(the paper's cap is the constant 0.01, torch's default) and scales the decoupled weight decay, and :math:`\epsilon_1`
floors the estimate (:math:`\max(\cdot, \epsilon_1)` and :math:`\epsilon_1^2` above) where the paper adds
:math:`\epsilon_1 = 10^{-30}` to :math:`g_t^2`. ``eps[0] = None`` means the machine epsilon of the parameter's
dtype (torch's ``finfo(dtype).eps``). Where torch's own code differs from this: torch takes that epsilon from the
first parameter of a group and keeps it for the others, which matters only in a group that mixes dtypes (here each
parameter uses its own); and torch divides by zero on an empty parameter, which here keeps its state unchanged.
optax's and Keras's ``adafactor`` follow the paper's epsilon (and optax factors only dimensions of at least 128): no
preset runs them.

Numerical contract. The sums behind the means and the two RMS are written as fixed trees of additions
(:mod:`descend.algorithms._pairwise`), in the compute dtype, so the fused kernel gives the same bits as this rule
whatever its thread count. The update is computed as :math:`U = g / \max(\sqrt{R_i} \sqrt{C_j / D}, \epsilon_1')`
with :math:`D = \max(\operatorname{mean}_i R, \epsilon_1)` and :math:`\epsilon_1'` the root of :math:`\epsilon_1^2` as
the compute dtype rounds it (0 where it underflows, as torch's floor does). That is mathematically torch's
:math:`g \cdot \operatorname{rsqrt}(\max(R_i C_j / D, \epsilon_1^2))`, computed with a root per row and per column
instead of one per element, and one division per element instead of two, so that the kernel's passes are not held
up by arithmetic.
torch sums in its own order, takes the RMS from a float32 norm in float64 and rounds each of its operations, so the
two agree within the documented per-dtype tolerance, not bit for bit.

References:
    Shazeer & Stern (2018), "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost", ICML
    (arXiv:1804.04235), Algorithms 4 and 5.

    PyTorch, ``torch.optim.Adafactor`` (torch 2.5 and later): the variant here, with its epsilon placement and its
    use of the learning rate.
"""

from __future__ import annotations

import dataclasses
import math
import struct
import sys
from dataclasses import KW_ONLY, dataclass
from typing import Any, NamedTuple

from descend.algorithms._pairwise import pair_sum, row_sum, total
from descend.algorithms._spec import AlgorithmSpec, Hyperparams, check_bool, check_real
from descend.algorithms.conventions import not_in_article

#: The machine epsilon of each storage dtype (torch's ``finfo(dtype).eps``): ``eps[0] = None`` stands for it.
MACHINE_EPS = {"float64": 2.0**-52, "float32": 2.0**-23, "bfloat16": 2.0**-7, "float16": 2.0**-10}


def _torch_worded(name: str, value: Any, words: str, **bounds: Any) -> float:
    """``check_real``, with torch's words first ("epsilon1 should be >= 0 but is: -1"), then what is allowed."""
    try:
        return check_real(name, value, **bounds)
    except ValueError as exc:
        raise ValueError(f"{words} but is: {value} ({exc})") from None


def check_eps(value: Any) -> tuple[float | None, float]:
    """Check ``eps`` = (epsilon1 or None, epsilon2): None or a real >= 0, then a real >= 0."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise TypeError(f"eps must be a pair of numbers, got {value!r}; it is (epsilon1 or None, epsilon2)")
    eps1 = value[0]
    if eps1 is not None:
        eps1 = _torch_worded("eps[0]", eps1, "epsilon1 should be >= 0", low=0.0)
    return eps1, _torch_worded("eps[1]", value[1], "epsilon2 should be >= 0", low=0.0)


@dataclass(frozen=True)
class AdafactorHyperparams(Hyperparams):
    lr: float = 1e-2
    beta2_decay: float = -0.8
    eps: tuple[float | None, float] = (None, 1e-3)
    d: float = 1.0
    weight_decay: float = 0.0
    _: KW_ONLY
    maximize: bool = False

    def validate(self) -> AdafactorHyperparams:
        return dataclasses.replace(
            self,
            lr=_torch_worded("lr", self.lr, "Learning rate should be >= 0", low=0.0),
            beta2_decay=_torch_worded("beta2_decay", self.beta2_decay, "beta2_decay should be <= 0", high=0.0),
            eps=check_eps(self.eps),
            d=_torch_worded("d", self.d, "Clipping threshold d should be >= 1", low=1.0),
            weight_decay=_torch_worded("weight_decay", self.weight_decay, "weight_decay should be >= 0", low=0.0),
            maximize=check_bool("maximize", self.maximize),
        )


class AdafactorScalars(NamedTuple):
    maximize: bool
    decay: bool  # decoupled weight decay is on
    high_weight: bool  # w_t >= 0.5: the averages take lerp's second form
    decay_factor: float  # 1 - lr * weight_decay
    weight: float  # w_t = t ** beta2_decay
    one_minus_weight: float
    eps1: float
    eps1_floor: float  # sqrt(eps1 * eps1 rounded to the compute dtype): eps1, or 0 where eps1^2 underflows
    eps2: float
    rho: float  # min(lr, 1 / sqrt(t))
    d: float


def scalars(
    hp: AdafactorHyperparams,
    step: int,
    host: dict[str, float] | None = None,
    first: bool = False,
    *,
    shape: tuple[int, ...] | None = None,
    dtype: str = "float32",
) -> AdafactorScalars:
    """The host scalars of step ``step`` (torch's float64 formulas) for a parameter stored in ``dtype``; they do not
    depend on its ``shape``, which every rule over whole tensors is given."""
    eps1 = MACHINE_EPS[dtype] if hp.eps[0] is None else float(hp.eps[0])
    weight = float(step) ** hp.beta2_decay
    return AdafactorScalars(
        maximize=bool(hp.maximize),
        decay=hp.weight_decay != 0,
        high_weight=weight >= 0.5,
        decay_factor=1.0 - hp.lr * hp.weight_decay,
        weight=weight,
        one_minus_weight=1.0 - weight,
        eps1=eps1,
        eps1_floor=math.sqrt(eps1 * eps1 if dtype == "float64" else _round32(eps1 * eps1)),
        eps2=float(hp.eps[1]),
        rho=min(hp.lr, 1 / (float(step) ** 0.5)),
        d=float(hp.d),
    )


def _round32(x: float) -> float:
    """``x`` rounded to float32 (to nearest), infinite beyond its range."""
    try:
        return struct.unpack("f", struct.pack("f", x))[0]
    except OverflowError:
        return math.inf


def state_slots(hp: AdafactorHyperparams) -> tuple[str, ...]:
    return ("row_var", "col_var", "variance")


def state_shapes(hp: AdafactorHyperparams, shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """The factored averages of a parameter with two dimensions or more, the full one of a vector or a scalar."""
    if len(shape) >= 2:
        return {"row_var": shape[:-1] + (1,), "col_var": shape[:-2] + (1, shape[-1])}
    return {"variance": shape}


def init_state(xp: Any, param: Any, hp: AdafactorHyperparams) -> dict[str, Any]:
    return {k: xp.zeros_like(param, shape=s) for k, s in state_shapes(hp, tuple(param.shape)).items()}


def _lerp(v: Any, target: Any, s: AdafactorScalars) -> Any:
    """torch's lerp of ``v`` towards ``target`` by ``s.weight``, in its two forms."""
    if s.high_weight:
        return target - (target - v) * s.one_minus_weight
    return v + s.weight * (target - v)


def _at_least(xp: Any, x: Any, low: float) -> Any:
    """``max(x, low)`` with NaN kept (NumPy's maximum, torch's clamp)."""
    return xp.maximum(x, xp.zeros_like(x) + low)


def reference_update(xp: Any, param: Any, grad: Any, state: dict[str, Any], s: AdafactorScalars) -> None:
    shape = tuple(param.shape)
    size = math.prod(shape)
    if size == 0:  # no mean to take: the state stays as it is
        return
    if s.maximize:
        grad = -grad
    factored = len(shape) >= 2
    b, m, n = (math.prod(shape[:-2]), shape[-2], shape[-1]) if factored else (1, 1, size)
    p = param.reshape(b, m, n)
    g = grad.reshape(b, m, n)
    alpha = _at_least(xp, xp.sqrt(total(xp, p * p) / size), s.eps2) * s.rho
    if factored:
        sq = g * g
        row_var = _lerp(state["row_var"].reshape(b, m, 1), row_sum(xp, sq) / n, s)
        col_var = _lerp(state["col_var"].reshape(b, 1, n), pair_sum(xp, sq) / m, s)
        den = _at_least(xp, pair_sum(xp, row_var) / m, s.eps1)
        root = xp.sqrt(row_var) * xp.sqrt(col_var / den)  # sqrt(V) = sqrt(R) sqrt(C / den): a root per row, column
        state["row_var"][...] = row_var.reshape(state["row_var"].shape)
        state["col_var"][...] = col_var.reshape(state["col_var"].shape)
    else:
        variance = _lerp(state["variance"].reshape(b, m, n), g * g, s)
        root = xp.sqrt(variance)
        state["variance"][...] = variance.reshape(state["variance"].shape)
    update = g / _at_least(xp, root, s.eps1_floor)  # = g / sqrt(max(V, eps1^2))
    step = alpha / _at_least(xp, xp.sqrt(total(xp, update * update) / size) / s.d, 1.0)
    if s.decay:
        p = p * s.decay_factor
    param[...] = (p - step * update).reshape(shape)  # (no negation: a NaN keeps its sign, as in the kernel)


def describe(hp: AdafactorHyperparams) -> str:
    eps1 = "the dtype's machine epsilon" if hp.eps[0] is None else f"{hp.eps[0]:g}"
    lines = [
        f"Adafactor (factored second moment), with R_0 = C_0 = V_0 = 0 and eps1 = {eps1}:",
        "  g_t = " + ("-" if hp.maximize else "") + "grad f(theta_{t-1})" + ("   (maximize)" if hp.maximize else ""),
        f"  w_t = t^({hp.beta2_decay:g}),  rho_t = min({hp.lr:g}, 1/sqrt(t))",
        f"  alpha_t = max({hp.eps[1]:g}, RMS(theta_{{t-1}})) * rho_t",
    ]
    if hp.weight_decay:
        lines.append(
            f"  theta_{{t-1}} = (1 - {hp.lr:g} * {hp.weight_decay:g}) * theta_{{t-1}}   (decoupled weight decay)"
        )
    lines += [
        "  2 dims or more (over the last two axes):",
        "    R_t = lerp(R_{t-1}, mean over columns of g_t^2, w_t),  C_t = lerp(C_{t-1}, mean over rows of g_t^2, w_t)",
        "    V_t = R_t * C_t / max(mean over rows of R_t, eps1)",
        "  fewer dims:  V_t = lerp(V_{t-1}, g_t^2, w_t)",
        "  U_t = g_t / sqrt(max(V_t, eps1^2))",
        f"  theta_t = theta_{{t-1}} - alpha_t / max(1, RMS(U_t) / {hp.d:g}) * U_t",
    ]
    return "\n".join(lines)


ADAFACTOR = AlgorithmSpec(
    name="adafactor",
    title="Adafactor",
    summary="Adam's second moment kept as row and column averages, with a relative step and update clipping "
    "(Shazeer & Stern 2018)",
    hyperparams=AdafactorHyperparams,
    state_slots=state_slots,
    init_state=init_state,
    scalars=scalars,
    reference_update=reference_update,
    describe_rule=describe,
    module=sys.modules[__name__],
    presets={"torch": {}},
    notes={
        "optax": "optax.adafactor adds epsilon 1e-30 to the squared gradient and factors only dimensions of at "
        "least 128: torch's rule runs with torch's defaults",
        "keras": "Keras's Adafactor adds epsilon_1 to the squared gradient (the paper's placement): torch's rule "
        "runs with torch's defaults",
        "paper": "the paper adds epsilon_1 = 1e-30 to the squared gradient and caps the relative step at 0.01, not "
        "at the learning rate: torch's rule runs with torch's defaults (its lr 1e-2 is the paper's cap)",
        "article": not_in_article("Adafactor"),
    },
    torch_name="Adafactor",
    state_shapes=state_shapes,
    whole_tensor=True,
    scalars_by_dtype=True,
)
