"""Muon: torch.optim.Muon's rule, checked against torch, against the mathematics, and for what it refuses."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not hasattr(torch.optim, "Muon"):  # pragma: no cover - torch before 2.9
    pytest.skip("torch.optim.Muon needs torch 2.9 or later", allow_module_level=True)

from torch.optim._muon import _adjust_lr, _zeropower_via_newtonschulz  # noqa: E402

import descend  # noqa: E402
import descend.engine.torch_xp as txp  # noqa: E402
import descend.torch as dt  # noqa: E402
from descend.algorithms.muon import MUON, NewtonSchulz, lr_ratio, orthogonalise, to_bfloat16  # noqa: E402
from tests.bad_input_helpers import assert_unchanged, snapshot  # noqa: E402
from tests.tolerances import MUON_UPDATE_ATOL, TORCH_FLOAT64, assert_close, torch_muon_tolerance  # noqa: E402

SHAPES = [(8, 5), (5, 8), (12, 12), (1, 7)]
CASES = [
    ("defaults", {}),
    ("paper's rate, no decay", {"lr": 0.02, "weight_decay": 0.0}),
    ("heavy ball", {"lr": 0.01, "nesterov": False}),
    ("low momentum", {"lr": 0.01, "momentum": 0.3}),
    ("match_rms_adamw", {"lr": 0.005, "adjust_lr_fn": "match_rms_adamw", "weight_decay": 0.2}),
    ("three cubic steps", {"lr": 0.01, "ns_steps": 3, "ns_coefficients": (1.5, -0.5, 0.0), "eps": 1e-5}),
    ("tensor lr", {"lr": torch.tensor(0.01), "adjust_lr_fn": "original"}),
]
QUINTIC = (3.4445, -4.775, 2.0315)


def _params(dtype: torch.dtype, seed: int = 0) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=gen, dtype=torch.float64).to(dtype)) for s in SHAPES]


def _grads(params: list[torch.Tensor], step: int) -> list[torch.Tensor]:
    """Gradients that depend on the parameters, so that a difference in one step feeds the next."""
    gen = torch.Generator().manual_seed(100 + step)
    return [0.5 * p.detach() + torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype) for p in params]


def _fresh(kwargs: dict) -> dict:
    return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}


# -- bfloat16 rounding ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("xp", [np, txp], ids=["numpy", "torch"])
def test_bfloat16_rounding_is_torchs(xp: object) -> None:
    """Round to nearest, ties to even, overflow to infinity, NaN kept: the bits of torch's own conversion."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200_000, generator=gen) * torch.exp(torch.randn(200_000, generator=gen) * 25)
    special = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-40, -3e-39, 3.4e38, -3.39e38, 1 + 2**-8, 1 + 3 * 2**-8]
    x = torch.cat([x, torch.tensor(special), -torch.tensor(special)])
    x = torch.cat([x, torch.tensor([0x7FFFFFFF, 0x7FC00001], dtype=torch.int32).view(torch.float32)])  # NaN payloads
    expected = x.to(torch.bfloat16).float()
    got = to_bfloat16(xp, x if xp is txp else x.numpy())
    got = torch.as_tensor(np.asarray(got))
    assert torch.equal(got.isnan(), expected.isnan())
    finite = ~expected.isnan()
    assert torch.equal(got[finite].view(torch.int32), expected[finite].view(torch.int32))


# -- the iteration ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(64, 96), (96, 64), (48, 48), (1, 40), (40, 1)])
@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_the_iteration_is_torchs_within_a_bfloat16_unit(shape: tuple[int, int], scale: float) -> None:
    gen = torch.Generator().manual_seed(sum(shape))
    g = torch.randn(shape, generator=gen) * scale
    ns = NewtonSchulz(*QUINTIC, 1e-7, 5, "bfloat16")
    theirs = _zeropower_via_newtonschulz(g, QUINTIC, 5, 1e-7).float()
    for xp, arg in ((txp, g), (np, g.numpy())):
        ours = torch.as_tensor(np.asarray(orthogonalise(xp, arg, ns)))
        assert ours.shape == g.shape and ours.dtype == torch.float32
        assert torch.equal(ours, ours.to(torch.bfloat16).float()), "every entry is a bfloat16 value"
        assert (ours - theirs).abs().max().item() <= MUON_UPDATE_ATOL
    first = orthogonalise(txp, g, NewtonSchulz(*QUINTIC, 1e-7, 1, "bfloat16"))
    theirs_first = _zeropower_via_newtonschulz(g, QUINTIC, 1, 1e-7).float()
    assert (first == theirs_first).float().mean().item() >= 0.99, "the first iterate agrees bit for bit, nearly all"


@pytest.mark.parametrize("shape", [(30, 12), (12, 30), (16, 16)])
def test_the_cubic_iteration_converges_to_the_orthogonal_factor(shape: tuple[int, int]) -> None:
    """With Newton-Schulz's classic cubic coefficients (1.5, -0.5, 0) the iterates converge to U V^T of the SVD."""
    rng = np.random.default_rng(1)
    u, _, vt = np.linalg.svd(rng.standard_normal(shape), full_matrices=False)
    g = u @ np.diag(np.linspace(1.0, 4.0, min(shape))) @ vt  # singular values from 1 to 4
    o = orthogonalise(np, g, NewtonSchulz(1.5, -0.5, 0.0, 1e-7, 60, "float64"))
    assert o.shape == g.shape and o.dtype == np.float64
    np.testing.assert_allclose(o, u @ vt, rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", [(40, 24), (24, 40)])
def test_the_quintic_iteration_bounds_the_singular_values(shape: tuple[int, int]) -> None:
    """Jordan's coefficients take every singular value to about 0.7 to 1.2 in five steps, keeping the vectors."""
    rng = np.random.default_rng(2)
    u, _, vt = np.linalg.svd(rng.standard_normal(shape), full_matrices=False)
    g = u @ np.diag(np.geomspace(0.1, 10.0, min(shape))) @ vt  # a condition number of 100
    o = orthogonalise(np, g, NewtonSchulz(*QUINTIC, 1e-7, 5, "float64"))
    s = np.linalg.svd(o, compute_uv=False)
    assert 0.6 < s.min() and s.max() < 1.25
    np.testing.assert_allclose(u.T @ o @ vt.T, np.diag(np.diag(u.T @ o @ vt.T)), atol=1e-10)  # same vectors
    o32 = orthogonalise(np, g.astype(np.float32), NewtonSchulz(*QUINTIC, 1e-7, 5, "float32"))
    assert o32.dtype == np.float32
    np.testing.assert_allclose(o32, o, rtol=0, atol=1e-5)


def test_a_zero_gradient_gives_a_zero_update() -> None:
    """The norm is floored at eps, so a zero matrix stays zero (no division by zero), as in torch."""
    for dtype in ("bfloat16", "float32", "float64"):
        o = orthogonalise(np, np.zeros((3, 4)), NewtonSchulz(*QUINTIC, 1e-7, 5, dtype))
        assert not np.any(o) and np.all(np.isfinite(o))


@pytest.mark.parametrize("shape", [(8, 5), (5, 8), (768, 3072), (1, 1)])
@pytest.mark.parametrize("fn", [None, "original", "match_rms_adamw"])
def test_the_rate_adjustment_is_torchs(shape: tuple[int, int], fn: str | None) -> None:
    assert 0.02 * lr_ratio(fn, shape) == _adjust_lr(0.02, fn, torch.Size(shape))


# -- against torch.optim.Muon -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize(("desc", "kwargs"), CASES, ids=[c[0] for c in CASES])
def test_matches_torch_muon(desc: str, kwargs: dict, dtype: torch.dtype) -> None:
    """Parameters and momentum after 30 steps, in float32 and float64, tall, wide, square and one-row matrices."""
    steps = 30
    a, b = _params(dtype), _params(dtype)
    ours, theirs = dt.Muon(a, **_fresh(kwargs)), torch.optim.Muon(b, **_fresh(kwargs))
    start = [p.detach().clone() for p in a]
    for t in range(steps):
        for ps in (a, b):
            for p, g in zip(ps, _grads(ps, t)):
                p.grad = g
        ours.step()
        theirs.step()
    lr = float(kwargs.get("lr", 1e-3))
    for i, (p, q) in enumerate(zip(a, b)):
        assert not torch.equal(p, start[i])
        tol = torch_muon_tolerance(steps, lr * lr_ratio(kwargs.get("adjust_lr_fn"), tuple(p.shape)))
        assert_close(p, q, tol, f"param {i}")
        assert list(ours.state[p]) == list(theirs.state[q]) == ["momentum_buffer"]
        assert ours.state[p]["momentum_buffer"].dtype == dtype
        assert_close(ours.state[p]["momentum_buffer"], theirs.state[q]["momentum_buffer"], tol, f"momentum {i}")


def test_the_numpy_front_runs_the_same_rule() -> None:
    """In float64 iterations both fronts compute the same numbers (BLAS sums in their own order); in bfloat16, the
    same up to the flips the tolerance allows."""
    for ns_dtype in ("float64", "bfloat16"):
        ts = _params(torch.float64, seed=3)
        ws = [p.detach().numpy().copy() for p in ts]
        kwargs = {"lr": 0.02, "ns_dtype": ns_dtype, "adjust_lr_fn": "match_rms_adamw"}
        ours, numpy_front = dt.Muon(ts, **kwargs), descend.Muon(ws, **kwargs)
        for t in range(20):
            grads = _grads(ts, t)
            for p, g in zip(ts, grads):
                p.grad = g
            ours.step()
            numpy_front.step([g.numpy().copy() for g in grads])
        for p, w in zip(ts, ws):
            tol = TORCH_FLOAT64 if ns_dtype == "float64" else torch_muon_tolerance(20, 0.02 * lr_ratio("x", p.shape))
            assert_close(p, w, tol)


def test_state_dicts_move_between_descend_and_torch() -> None:
    a, b = _params(torch.float32), _params(torch.float32)
    ours, theirs = dt.Muon(a, lr=0.01), torch.optim.Muon(b, lr=0.01)
    for t in range(5):
        for p, g in zip(a, _grads(a, t)):
            p.grad = g
        ours.step()
    theirs.load_state_dict(ours.state_dict())
    with torch.no_grad():
        for p, q in zip(a, b):
            q.copy_(p)
    back = dt.Muon(_params(torch.float32), lr=0.01)
    back.load_state_dict(theirs.state_dict())
    for key in ours.state_dict()["state"]:
        saved = ours.state_dict()["state"][key]["momentum_buffer"]
        assert torch.equal(back.state_dict()["state"][key]["momentum_buffer"], saved)
        assert torch.equal(theirs.state_dict()["state"][key]["momentum_buffer"], saved)


# -- what it refuses --------------------------------------------------------------------------------------------------


def test_refuses_parameters_that_are_not_matrices_as_torch_does() -> None:
    bad = torch.nn.Parameter(torch.zeros(2, 3, 4))
    match = r"Muon only supports 2D parameters whereas we found a parameter with size: torch.Size\(\[2, 3, 4\]\)"
    with pytest.raises(ValueError, match=match):
        torch.optim.Muon([bad])
    with pytest.raises(ValueError, match=match):
        dt.Muon([torch.nn.Parameter(torch.zeros(2, 2)), bad])
    with pytest.raises(ValueError, match=r"Muon only supports 2D parameters whereas we found .* size: \(3,\)"):
        descend.Muon([np.zeros((2, 2)), np.zeros(3)])
    opt = dt.Muon([torch.nn.Parameter(torch.zeros(2, 2))])
    with pytest.raises(ValueError, match=r"size: torch.Size\(\[3\]\)"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(3)), bad]})
    assert len(opt.param_groups) == 1
    numpy_opt = descend.Muon([np.zeros((2, 2))])
    with pytest.raises(ValueError, match=r"size: \(\)"):
        numpy_opt.add_param_group({"params": [np.zeros(())]})
    assert len(numpy_opt.param_groups) == 1


@pytest.mark.parametrize("make", ["complex", "sparse"])
def test_refuses_complex_and_sparse_at_the_step_with_nothing_changed(make: str) -> None:
    good = torch.nn.Parameter(torch.randn(3, 2))
    if make == "complex":
        odd = torch.nn.Parameter(torch.randn(2, 3, dtype=torch.complex64))
        odd.grad = torch.randn(2, 3, dtype=torch.complex64)
        match = "Muon does not support complex parameters"
    else:
        odd = torch.nn.Parameter(torch.randn(2, 3))
        odd.grad = torch.randn(2, 3).to_sparse()
        match = "Muon does not support sparse gradients"
    opt = dt.Muon([good, odd], lr=0.1)
    good.grad = torch.ones(3, 2)
    before = snapshot(opt)
    with pytest.raises(RuntimeError, match=match):
        opt.step()
    assert_unchanged(opt, before)


def test_the_fused_backend_says_that_no_kernel_runs_muon() -> None:
    p = torch.nn.Parameter(torch.randn(3, 2))
    p.grad = torch.ones(3, 2)
    opt = dt.Muon([p], backend="fused")
    before = snapshot(opt)
    with pytest.raises(ValueError, match=r"backend='fused' cannot update parameter 0 of Muon .* no kernel runs muon"):
        opt.step()
    assert_unchanged(opt, before)
    w = np.ones((3, 2))
    with pytest.raises(ValueError, match=r"no kernel runs muon.*use backend='auto'"):
        descend.Muon([w], backend="fused").step([np.ones((3, 2))])
    assert np.all(w == 1.0)


def test_foreach_says_that_muon_has_no_multi_tensor_form() -> None:
    """Off the CPU the reference runs Muon (its rule reads whole matrices); forcing the multi-tensor path is refused."""
    p = torch.nn.Parameter(torch.randn(3, 2))
    p.grad = torch.ones(3, 2)
    opt = dt.Muon([p], backend="foreach")
    before = snapshot(opt)
    with pytest.raises(ValueError, match=r"backend='foreach' cannot update parameter 0 of Muon: .* no multi-tensor"):
        opt.step()
    assert_unchanged(opt, before)
    meta = torch.nn.Parameter(torch.empty(4, 3, device="meta"))
    meta.grad = torch.empty(4, 3, device="meta")
    on_meta = dt.Muon([meta])
    on_meta.step()  # the reference in torch operations, on the tensors' own device
    assert on_meta.state[meta]["momentum_buffer"].device.type == "meta"


def test_maximize_climbs() -> None:
    w, v = np.zeros((3, 4)), np.zeros((3, 4))
    g = np.arange(12.0).reshape(3, 4) - 5
    up, down = descend.Muon([w], lr=0.1, maximize=True), descend.Muon([v], lr=0.1)
    up.step([g.copy()])
    down.step([-g])
    np.testing.assert_array_equal(w, v)
    assert np.sum(w * g) > 0


def test_describe_states_the_rule_in_force() -> None:
    text = dt.Muon([torch.nn.Parameter(torch.zeros(2, 2))], lr=0.02, adjust_lr_fn="match_rms_adamw").describe()
    assert "0.2 * sqrt(max(A, B))" in text and "in bfloat16" in text and "(Nesterov)" in text
    text = descend.Muon([np.zeros((2, 2))], nesterov=False, ns_dtype="float32", weight_decay=0.0).describe()
    assert "U_t = B_t" in text and "(float32)" in text and "decay" not in text
    assert MUON.describe(convention="optax").startswith("Not available under optax")
