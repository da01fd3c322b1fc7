r"""Muon: momentum orthogonalised by a Newton–Schulz iteration, for the 2-D weight matrices of hidden layers.

With :math:`B_0 = 0`, for a parameter matrix :math:`\theta` of shape :math:`A \times B`:

.. math::

    B_t &= B_{t-1} + (1 - \mu)(g_t - B_{t-1}) \\
    U_t &= \begin{cases} g_t + \mu (B_t - g_t) & \text{nesterov} \\ B_t & \text{otherwise} \end{cases} \\
    X_0 &= U_t / \max(\lVert U_t \rVert_F, \epsilon) \quad\text{(transposed first when } A > B\text{)} \\
    X_{k+1} &= a X_k + (b\, X_k X_k^\top + c\, (X_k X_k^\top)^2) X_k, \qquad k = 0, \dots, K - 1 \\
    O_t &= X_K \quad\text{(transposed back)} \\
    \theta_t &= (1 - \eta\lambda)\, \theta_{t-1} - \eta\, s(A, B)\, O_t

The quintic iteration with :math:`(a, b, c) = (3.4445, -4.7750, 2.0315)` and :math:`K = 5` steps takes every
singular value of :math:`X_0` (at most 1 after the normalisation) to about 0.7 to 1.2, so :math:`O_t` approximates
the orthogonal factor :math:`UV^\top` of :math:`U_t = U \Sigma V^\top`: the step has the same size in every direction
of the matrix. The decay is decoupled and multiplied by the unadjusted rate, as in torch. The rate is scaled per
matrix by ``adjust_lr_fn``:

- ``None`` or ``"original"`` (Jordan's): :math:`s = \sqrt{\max(1, A / B)}`;
- ``"match_rms_adamw"`` (Liu et al.): :math:`s = 0.2 \sqrt{\max(A, B)}`, which gives the update the root mean
  square of a typical AdamW update, so that AdamW's learning rate and weight decay carry over.

The rule is not elementwise: the iteration reads the whole matrix, so Muon takes 2-D parameters only (torch's
message, torch's check at construction) and the fused kernels do not run it; the matrix products go through BLAS
(``@`` on NumPy arrays or torch tensors) and the rest is a few passes over the matrix. The momentum and the Nesterov
mix are lerps computed as torch computes them (from the nearer end: ``start + w (end - start)`` for a weight
below one half, else ``end - (end - start)(1 - w)``).

Precision (``ns_dtype``). torch runs the iteration in bfloat16: the update is rounded to bfloat16, each product is
accumulated in float32 and rounded to bfloat16, and the last iterate is added to the parameter in its own dtype.
descend's default, ``ns_dtype="bfloat16"``, computes exactly that: every iterate is rounded to bfloat16 (to
nearest, ties to even), with the products accumulated in float32 through float32 BLAS, which on CPUs without
bfloat16 matrix units is several times faster than torch's bfloat16 products and gives the same numbers up to the
order of float32 accumulation. ``"float32"`` and ``"float64"`` run the iteration in that dtype without rounding (what
optax and Keras do in the parameter's dtype). A float64 update reaches bfloat16 through float32 (two roundings where
torch rounds once; they differ only for values within 2^-29 of a bfloat16 tie).

Conventions. torch's ``Muon`` (torch 2.9 and later) is the "torch" convention, with its defaults (lr 1e-3, weight
decay 0.1, momentum 0.95, Nesterov on, 5 steps, eps 1e-7). The "paper" convention is Jordan's reference code: lr 0.02
and no weight decay; its code adds 1e-7 to the norm where torch takes the larger of the two (not a flag). optax's
``contrib.muon`` corrects its momentum for bias and scales by :math:`\sqrt{\max(1, B/A)}`, and Keras's ``Muon`` sums its
momentum (:math:`m = \mu m + g`) and runs 6 steps: descend runs neither variant.

References:
    Jordan, Jin, Boza, You, Cesista, Newhouse & Bernstein (2024), "Muon: An optimizer for hidden layers in neural
    networks", blog post, https://kellerjordan.github.io/posts/muon/ (the rule, the coefficients and
    ``"original"``).
    Liu, Su, Yao, Jiang, Lai, Du, Qin, Xu, Lu, Chen, et al. (2025), "Muon is Scalable for LLM Training",
    arXiv:2502.16982 (``"match_rms_adamw"``, decoupled weight decay).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import KW_ONLY, dataclass
from typing import Any, NamedTuple

from descend.algorithms._spec import AlgorithmSpec, Hyperparams, _as_real, check_bool, check_choice, check_real
from descend.algorithms.conventions import not_in_article

ADJUST_LR_FNS = (None, "original", "match_rms_adamw")
NS_DTYPES = ("bfloat16", "float32", "float64")
MAX_NS_STEPS = 100  # torch's limit: fewer than 100 steps


def _at_least_zero(label: str, name: str, value: Any) -> float:
    """torch's check and message for a non-negative hyperparameter (``"momentum should be >= 0 but is: -1.0"``),
    with descend's requirement that it be finite."""
    x = _as_real(name, value)
    if not math.isfinite(x):
        raise ValueError(f"{label} should be a finite number >= 0 but is: {value} ({name})")
    if x < 0:
        raise ValueError(f"{label} should be >= 0 but is: {value} ({name})")
    return x


def _check_coefficients(value: Any) -> tuple[float, float, float]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 3:
        raise ValueError(f"Coefficients must be a tuple of exactly 3 values; got ns_coefficients={value!r}")
    return tuple(check_real(f"ns_coefficients[{i}]", v) for i, v in enumerate(value))  # type: ignore[return-value]


def _check_steps(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"ns_steps must be a whole number >= 0, got {value!r}")
    if value >= MAX_NS_STEPS:
        raise ValueError(
            f"Number of steps must be less than {MAX_NS_STEPS} for computational efficiency; got ns_steps={value}"
        )
    return value


def _check_adjust(value: Any) -> str | None:
    if not (value is None or (isinstance(value, str) and value in ADJUST_LR_FNS)):
        allowed = ", ".join(map(repr, ADJUST_LR_FNS))
        raise ValueError(f"Adjust learning rate function {value} is not supported; allowed values are {allowed}")
    return value


@dataclass(frozen=True)
class MuonHyperparams(Hyperparams):
    lr: float = 1e-3
    weight_decay: float = 0.1
    momentum: float = 0.95
    nesterov: bool = True
    ns_coefficients: tuple[float, float, float] = (3.4445, -4.775, 2.0315)
    eps: float = 1e-7
    ns_steps: int = 5
    adjust_lr_fn: str | None = None
    _: KW_ONLY
    ns_dtype: str = "bfloat16"
    maximize: bool = False

    def validate(self) -> MuonHyperparams:
        return dataclasses.replace(
            self,
            lr=_at_least_zero("Learning rate", "lr", self.lr),
            weight_decay=_at_least_zero("weight decay", "weight_decay", self.weight_decay),
            momentum=_at_least_zero("momentum", "momentum", self.momentum),
            nesterov=check_bool("nesterov", self.nesterov),
            ns_coefficients=_check_coefficients(self.ns_coefficients),
            eps=check_real("eps", self.eps, low=0.0),
            ns_steps=_check_steps(self.ns_steps),
            adjust_lr_fn=_check_adjust(self.adjust_lr_fn),
            ns_dtype=check_choice("ns_dtype", self.ns_dtype, NS_DTYPES),
            maximize=check_bool("maximize", self.maximize),
        )


class NewtonSchulz(NamedTuple):
    """The iteration's settings. Each number is rounded to the iteration's dtype where it is used (a Python float
    beside an array of that dtype), not to the parameter's compute dtype."""

    a: float
    b: float
    c: float
    eps: float
    steps: int
    dtype: str


class MuonScalars(NamedTuple):
    maximize: bool
    nesterov: bool
    decay: bool  # decoupled weight decay is on
    momentum: float  # mu
    one_minus_momentum: float  # 1 - mu
    decay_factor: float  # 1 - lr * weight_decay
    neg_lr: float  # -lr * s(A, B), the rate adjusted for this parameter's shape
    ns: NewtonSchulz


def lr_ratio(adjust_lr_fn: str | None, shape: tuple[int, ...]) -> float:
    """The factor ``adjust_lr_fn`` scales the rate by for a ``shape`` of (rows, columns), as torch computes it."""
    rows, cols = shape[:2]
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    return math.sqrt(max(1, rows / cols))


def scalars(
    hp: MuonHyperparams,
    step: int,
    host: dict[str, float] | None = None,
    first: bool = False,
    shape: tuple[int, ...] | None = None,
) -> MuonScalars:
    """The per-step scalars of a parameter of ``shape`` (the rate depends on it; required)."""
    if shape is None or len(shape) != 2:
        raise ValueError(f"Muon's scalars depend on the parameter's shape, which must be 2-D; got {shape!r}")
    a, b, c = hp.ns_coefficients
    mu = float(hp.momentum)
    return MuonScalars(
        maximize=bool(hp.maximize),
        nesterov=bool(hp.nesterov),
        decay=hp.weight_decay != 0,
        momentum=mu,
        one_minus_momentum=1.0 - mu,
        decay_factor=1.0 - hp.lr * hp.weight_decay,
        neg_lr=-(hp.lr * lr_ratio(hp.adjust_lr_fn, shape)),
        ns=NewtonSchulz(float(a), float(b), float(c), float(hp.eps), int(hp.ns_steps), hp.ns_dtype),
    )


def state_slots(hp: MuonHyperparams) -> tuple[str, ...]:
    return ("momentum_buffer",)


def init_state(xp: Any, param: Any, hp: MuonHyperparams) -> dict[str, Any]:
    return {"momentum_buffer": xp.zeros_like(param)}


# -- the rule ---------------------------------------------------------------------------------------------------------


def _lerp(start: Any, end: Any, weight: float, one_minus_weight: float, small: bool) -> Any:
    """``start + weight * (end - start)`` as torch computes it: from ``end`` when the weight is one half or more."""
    if small:
        return start + weight * (end - start)
    return end - (end - start) * one_minus_weight


def to_bfloat16(xp: Any, x: Any) -> Any:
    """``x`` (float32) rounded to the nearest bfloat16 (ties to even), kept in float32; NaN stays NaN."""
    bits = x.view(xp.int32)
    bits = bits + (0x7FFF + ((bits >> 16) & 1))
    rounded = (bits & -65536).view(xp.float32)
    return xp.where(x != x, x, rounded)


def orthogonalise(xp: Any, update: Any, ns: NewtonSchulz) -> Any:
    """The Newton–Schulz iteration on a 2-D ``update``: its approximate orthogonal factor, in the iteration's dtype
    (float32 holding bfloat16 values for ``"bfloat16"``)."""
    bf16 = ns.dtype == "bfloat16"
    x = xp.asarray(update, dtype=xp.float64 if ns.dtype == "float64" else xp.float32)

    def rounded(y: Any) -> Any:
        return to_bfloat16(xp, y) if bf16 else y

    x = rounded(x)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    norm = rounded(xp.sqrt((x * x).sum().reshape(1)))
    floor = rounded(xp.full_like(norm, ns.eps))
    x = rounded(x / xp.maximum(norm, floor))
    for _ in range(ns.steps):
        gram = rounded(x @ x.T)
        poly = rounded(ns.b * gram + ns.c * (gram @ gram))
        x = rounded(ns.a * x + poly @ x)
    return x.T if tall else x


def reference_update(xp: Any, param: Any, grad: Any, state: dict[str, Any], s: MuonScalars) -> None:
    if s.maximize:
        grad = -grad
    buf = state["momentum_buffer"]
    buf[...] = _lerp(buf, grad, s.one_minus_momentum, s.momentum, s.one_minus_momentum < 0.5)
    update = _lerp(grad, buf, s.momentum, s.one_minus_momentum, s.momentum < 0.5) if s.nesterov else buf
    ortho = xp.asarray(orthogonalise(xp, update, s.ns), dtype=param.dtype)
    if s.decay:
        param *= s.decay_factor
    param += s.neg_lr * ortho


# -- describe ---------------------------------------------------------------------------------------------------------


def describe(hp: MuonHyperparams) -> str:
    a, b, c = hp.ns_coefficients
    mu = hp.momentum
    scale = {
        None: "sqrt(max(1, A/B))",
        "original": "sqrt(max(1, A/B))",
        "match_rms_adamw": "0.2 * sqrt(max(A, B))",
    }[hp.adjust_lr_fn]
    lines = [
        "Muon (momentum orthogonalised by Newton-Schulz) on A x B matrices, with B_0 = 0:",
        "  g_t = " + ("-" if hp.maximize else "") + "grad f(theta_{t-1})" + ("   (maximize)" if hp.maximize else ""),
        f"  B_t = B_{{t-1}} + (1 - {mu:g}) * (g_t - B_{{t-1}})",
        f"  U_t = g_t + {mu:g} * (B_t - g_t)   (Nesterov)" if hp.nesterov else "  U_t = B_t",
        f"  X_0 = U_t / max(||U_t||_F, {hp.eps:g}), transposed when A > B"
        + ("   (in bfloat16, products accumulated in float32)" if hp.ns_dtype == "bfloat16" else f"   ({hp.ns_dtype})"),
        f"  {hp.ns_steps} times: X = {a:g} * X + ({b:g} * X X^T + {c:g} * (X X^T)^2) X",
        "  O_t = X, transposed back",
    ]
    if hp.weight_decay:
        lines.append(
            f"  theta_{{t-1}} = (1 - {hp.lr:g} * {hp.weight_decay:g}) * theta_{{t-1}}   (decoupled weight decay)"
        )
    lines.append(f"  theta_t = theta_{{t-1}} - {hp.lr:g} * {scale} * O_t")
    return "\n".join(lines)


MUON = AlgorithmSpec(
    name="muon",
    title="Muon",
    summary="momentum orthogonalised by a Newton-Schulz iteration, for hidden weight matrices (Jordan et al. 2024)",
    hyperparams=MuonHyperparams,
    state_slots=state_slots,
    init_state=init_state,
    scalars=scalars,
    reference_update=reference_update,
    describe_rule=describe,
    module=sys.modules[__name__],
    presets={"torch": {}, "paper": {"lr": 0.02, "weight_decay": 0.0}},
    notes={
        "paper": "the reference code adds 1e-7 to the norm, where torch divides by the larger of the norm and eps "
        "(not a flag)",
        "optax": "optax's contrib.muon corrects its momentum for bias, scales by sqrt(max(1, B/A)) and adds eps to "
        "the norm; descend does not run that variant: torch's rule runs with torch's defaults",
        "keras": "Keras's Muon sums its momentum (m = momentum * m + g) and runs 6 steps; descend does not run that "
        "variant: torch's rule runs with torch's defaults",
        "article": not_in_article("Muon"),
    },
    torch_name="Muon",
    has_step=False,
    whole_tensor=True,
    param_ndim=2,
)
