"""Every tolerance the tests use, in one place, each with its reason.

Comparisons against ``torch.optim`` cannot be exact: torch computes ``lerp`` with a fused multiply-add in its
vectorised CPU path, keeps NAdam's ``mu_product`` and the step count in float32 tensors, and rounds Python scalars
to the tensor's dtype at slightly different points than we do. The differences are a few ulps per step and grow
slowly over a run, so the bounds below are per dtype, for runs of up to about 50 steps.
"""

from __future__ import annotations

import numpy as np

# float64 against torch: each step differs by a few ulps (about 1e-16 relative); 50 steps with division by small
# second moments can amplify that by a few orders of magnitude.
TORCH_FLOAT64 = {"rtol": 1e-10, "atol": 1e-12}
# float32 against torch: the same ulp-level differences at float32's 6e-8 epsilon, amplified in the same way; Adam's
# division by sqrt(v) + eps with v near 0 makes early steps sensitive, hence the absolute term.
TORCH_FLOAT32 = {"rtol": 2e-5, "atol": 2e-6}
# bf16/fp16 against torch: torch rounds after every elementwise op in the low precision, descend computes in fp32 and
# rounds once on store, so results differ by a few units in the last place of an 8- or 11-bit mantissa.
TORCH_BFLOAT16 = {"rtol": 5e-2, "atol": 5e-2}
TORCH_FLOAT16 = {"rtol": 1e-2, "atol": 1e-2}
# NAdam in float64 against torch: torch keeps mu_product in a float32 tensor whatever the params' dtype, so its step
# coefficients carry float32 rounding (about 6e-8 relative) that descend's float64 host value does not.
TORCH_NADAM_FLOAT64 = {"rtol": 1e-6, "atol": 1e-8}
# ASGD in float64, descend's NumPy front against torch: torch keeps the rate eta in a float32 tensor (descend.torch
# too) and steps with the value read back from it, so every step's rate carries float32 rounding (about 6e-8
# relative) that the NumPy front's float64 host value does not.
# The rate multiplies the gradient, so where the step nearly cancels the unit-scale parameter the difference is about
# 6e-8 of the step itself, hence an absolute term at float32's epsilon; over 25 steps it grows to a few 1e-7 relative.
TORCH_ASGD_FLOAT64 = {"rtol": 1e-6, "atol": 1e-7}

# Muon against torch: both round every Newton-Schulz iterate to bfloat16, but the float32 sums inside the matrix
# products run in other orders (float32 BLAS here, torch's bfloat16 kernels there), so now and then an entry rounds to
# the neighbouring bfloat16 value, and the iteration carries such a flip on to its neighbours. The orthogonalised
# update's entries (below 1.2 in size) then differ by at most one bfloat16 unit at 1, 2^-7 (the largest seen over
# random shapes and scales is 0.0059). A step moves a parameter by lr * s(A, B) times such an entry, so after T steps
# the parameters, and the momentum of gradients that depend on them, differ by at most T * lr * s * 2^-7.
MUON_UPDATE_ATOL = 2.0**-7


def torch_muon_tolerance(steps: int, step_size: float) -> dict[str, float]:
    """Muon against torch.optim.Muon after ``steps`` steps of ``step_size`` = lr * s(A, B) (see above)."""
    return {"rtol": 0.0, "atol": steps * step_size * MUON_UPDATE_ATOL}


# torch's optimizer database runs Muon for 20 steps at lr up to 0.01 on matrices with s(A, B) up to sqrt(5/3).
TORCH_MUON_DB = torch_muon_tolerance(20, 0.01 * (5 / 3) ** 0.5)
# Schedule-Free AdamW against the schedulefree package (torch operations): the same operations in the same order, but
# torch's vectorised lerp and addcmul round differently from descend's one operation at a time. Over 30 steps the
# largest relative difference measured was 2.6e-7 in float32 (a few ulps) and 2e-15 in float64, in y and in x alike;
# the bounds leave ten times that. The running sums (lr_max, weight_sum) agree exactly, both kept in float64.
SCHEDULEFREE_FLOAT32 = {"rtol": 3e-6, "atol": 3e-7}
SCHEDULEFREE_FLOAT64 = {"rtol": 2e-14, "atol": 1e-15}
# L-BFGS, descend.torch against torch.optim: none. The torch front runs torch's own tensor operations in torch's order
# (see descend.torch._closure), so its parameters and state are torch's bit for bit.
# L-BFGS, the NumPy front against torch.optim: torch's `add_(w, alpha=a)` is a fused multiply-add (one rounding) where
# NumPy rounds the product first, and its dot products and sums add in another order. The two-loop recursion and the
# curvature pairs amplify those ulps from one iteration to the next (a difference of gradients divided by a small
# y . s): over 3 steps of 4 iterations, float64 stays under 1e-12 relative on the test problems; float32 reaches about
# 3e-5 relative after 2 steps of 3 iterations and parts for good over longer runs, where a stopping test passes one
# iteration earlier on one side, so its comparison is kept that short. State vectors are compared at the scale of the
# first gradient, the size of the terms whose rounding they carry.
LBFGS_NUMPY_FLOAT64 = {"rtol": 1e-9, "atol": 1e-11}
LBFGS_NUMPY_FLOAT32 = {"rtol": 3e-4, "atol": 3e-5}
# Adafactor in float64 with a tensor lr, against torch: torch keeps the tensor through its step-size arithmetic
# (rho_t = min(lr, 1/sqrt(t)) and alpha_t become float32 tensors, as the lr is), so each step's size carries float32
# rounding (about 6e-8 relative) that descend's float64 host scalars do not; over 30 steps a few 1e-8 of a unit
# parameter.
TORCH_ADAFACTOR_TENSOR_LR_FLOAT64 = {"rtol": 1e-6, "atol": 1e-7}

# A transcription of a formula in float64 (the article's code, a closed form) against descend's float64 path: the same
# operations in a different order, so only rounding separates them.
TRANSCRIPTION_FLOAT64 = {"rtol": 1e-12, "atol": 1e-14}

# Convergence to a known optimum, as optax's own tests use (10k steps, rtol = atol = 3e-2).
CONVERGENCE = {"rtol": 3e-2, "atol": 3e-2}


def torch_tolerance(dtype: object, algorithm: str | None = None) -> dict[str, float]:
    """The tolerance for comparing descend with torch.optim in ``dtype`` (a NumPy or torch dtype, or its name)."""
    name = str(dtype).replace("torch.", "")
    if algorithm == "muon":
        return TORCH_MUON_DB
    if algorithm == "nadam" and name == "float64":
        return TORCH_NADAM_FLOAT64
    if algorithm == "asgd" and name == "float64":
        return TORCH_ASGD_FLOAT64
    table = {
        "float64": TORCH_FLOAT64,
        "float32": TORCH_FLOAT32,
        "bfloat16": TORCH_BFLOAT16,
        "float16": TORCH_FLOAT16,
    }
    try:
        return table[name]
    except KeyError:
        raise ValueError(f"no tolerance for dtype {dtype!r}") from None


def assert_close(actual: object, expected: object, tolerance: dict[str, float], what: str = "") -> None:
    """``np.testing.assert_allclose`` with a tolerance from this module, converting torch tensors first."""

    def as_array(x: object) -> np.ndarray:
        if hasattr(x, "detach"):
            x = x.detach().cpu().double().numpy()  # type: ignore[attr-defined]
        return np.asarray(x, dtype=np.float64)

    np.testing.assert_allclose(as_array(actual), as_array(expected), err_msg=what, **tolerance)
