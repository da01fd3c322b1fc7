"""Property tests of the fused kernels at the edges: extreme hyperparameters (lr from 1e-12 to 1e3, betas a hair from
0 and 1, eps 0), zero, huge, tiny, denormal, infinite and NaN gradients, and arrays of any memory layout.

For float32 and float64 the NumPy front gives the same bits with ``backend="fused"`` as with ``"reference"`` (NaN in
the same places), ``"auto"`` gives the reference's bits for non-contiguous arrays (it runs the reference for them and
the kernel for the rest of the group), and ``descend.torch`` (whose ``"auto"`` runs the kernel on contiguous CPU
tensors) gives the NumPy reference's bits. ``tests/test_kernels.py`` covers ordinary values and shapes; this file
the edges. The slow test runs 10,000 examples: ``python -m pytest tests/test_fuzz.py -m slow``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import descend
from descend import kernels
from descend.algorithms import registry
from tests.shapes import torch_grad
from tests.test_kernels_strategies import NAMES, STRATEGIES, make_hp

pytestmark = pytest.mark.skipif(not kernels.available()[0], reason=kernels.available()[1])

ONE = np.nextafter(1.0, 0.0)  # the largest float64 below 1
LR = st.one_of(st.sampled_from([1e-12, 1e-6, 1.0, 1e3]), st.floats(1e-12, 1e3))
BETA = st.sampled_from([0.0, 1e-12, 1e-3, 0.5, 0.9, 0.999, 1 - 1e-7, 1 - 1e-12, ONE])
EPS = st.sampled_from([0.0, 0.0, 5e-324, 1e-45, 1e-30, 1e-8, 1.0])
DECAY = st.sampled_from([0.0, 1e-12, 0.01, 1.0, 1e3])

# Per hyperparameter, the extremes drawn in place of the ordinary values of test_kernels_strategies.
EXTREMES: dict[str, Any] = {
    "lr": LR,
    "betas": st.tuples(BETA, BETA),
    "eps": EPS,
    "eps_root": EPS,
    "weight_decay": DECAY,
    "momentum": BETA,
    "dampening": BETA,
    "alpha": st.one_of(BETA, st.just(1.0)),
    "rho": st.one_of(BETA, st.just(1.0)),
    "beta": BETA,
    "lr_decay": st.sampled_from([0.0, 1e-12, 1.0, 1e3]),
    "initial_accumulator_value": st.sampled_from([0.0, 5e-324, 1e-30, 1.0, 1e30]),
    "momentum_decay": st.sampled_from([0.0, 1e-12, 4e-3, 10.0]),
    "beta2_decay": st.sampled_from([0.0, -1e-12, -0.8, -1.0, -1e3]),
    "d": st.sampled_from([1.0, 1.0 + 1e-12, 1e3, 1e300]),
}

# Scales of the gradients' normal values, and special values sprinkled among them.
SCALES = [0.0, 5e-324, 1e-310, 1e-300, 1e-44, 1e-40, 1e-20, 1.0, 1e20, 1e38, 1e300]
SPECIAL = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -1e-310, 1e-45, 3e38, 1.7e308])
LAYOUTS = ["c", "f", "every other", "reversed", "transposed"]


@st.composite
def hyperparameters(draw: Any, name: str) -> dict[str, Any]:
    kwargs = dict(draw(STRATEGIES[name]))
    for key in list(kwargs):
        if key in EXTREMES and draw(st.booleans()):
            if isinstance(kwargs[key], tuple) and key == "eps":  # Adafactor's (epsilon1 or None, epsilon2)
                kwargs[key] = draw(st.tuples(st.one_of(st.none(), EPS), EPS))
            else:
                kwargs[key] = draw(EXTREMES[key])
    return kwargs


def gradient_values(rng: np.random.Generator, shape: tuple[int, ...], scale: float, special: float) -> np.ndarray:
    """Normal values times ``scale`` (float64; cast by the caller), a fraction ``special`` of them special values."""
    with np.errstate(all="ignore"):
        x = np.asarray(rng.standard_normal(shape) * scale, dtype=np.float64)
    if x.size and special:
        where = rng.random(x.shape) < special
        x[where] = rng.choice(SPECIAL, size=int(where.sum()))
    return x


def laid_out(values: np.ndarray, dtype: Any, layout: str) -> np.ndarray:
    """``values`` in ``dtype``, stored with the memory layout named."""
    with np.errstate(all="ignore"):
        x = values.astype(dtype)
    if layout == "c" or x.ndim == 0:
        return x.copy()
    if layout == "f":
        return np.asfortranarray(x)
    if layout == "every other":
        base = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), dtype)
        view = base[..., ::2]
        view[...] = x
        return view
    if layout == "reversed":
        return np.ascontiguousarray(x[..., ::-1])[..., ::-1]
    return np.ascontiguousarray(x.T).T


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal values with NaN in the same places, and equal bits wherever neither is NaN (so -0.0 is not 0.0)."""
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    if a.dtype != b.dtype or a.shape != b.shape or not np.array_equal(a, b, equal_nan=True):
        return False
    keep = ~np.isnan(a)
    bits = np.uint32 if a.dtype == np.float32 else np.uint64
    return np.array_equal(a[keep].view(bits), b[keep].view(bits))


SHAPE = st.one_of(
    st.just(()),
    st.tuples(st.integers(0, 300)),
    st.tuples(st.integers(1, 12), st.integers(1, 12)),
    st.tuples(st.integers(32_760, 32_780)),  # one side or the other of a kernel chunk boundary
)


@st.composite
def problems(draw: Any, name: str | None = None, layouts: list[str] | None = None) -> dict[str, Any]:
    name = name or draw(st.sampled_from(NAMES))
    shapes = draw(st.lists(SHAPE, min_size=1, max_size=4))
    return {
        "name": name,
        "kwargs": draw(hyperparameters(name)),
        "dtype": draw(st.sampled_from([np.float32, np.float64])),
        "shapes": shapes,
        "param_layouts": [draw(st.sampled_from(layouts or ["c"])) for _ in shapes],
        "grad_layouts": [draw(st.sampled_from(layouts or ["c"])) for _ in shapes],
        "steps": draw(st.integers(1, 6)),
        "seed": draw(st.integers(0, 2**32 - 1)),
        "scale": draw(st.sampled_from(SCALES)),
        "special": draw(st.sampled_from([0.0, 0.0, 0.01, 0.3])),
    }


def run_numpy(problem: dict[str, Any], backend: str) -> tuple[list[np.ndarray], dict[int, dict[str, Any]]]:
    """Train the NumPy front on ``problem`` with ``backend``; return the parameters and the state."""
    rng = np.random.default_rng(problem["seed"])
    dtype, shapes = problem["dtype"], problem["shapes"]
    params = [laid_out(rng.standard_normal(s), dtype, lay) for s, lay in zip(shapes, problem["param_layouts"])]
    opt = descend.OPTIMIZERS[problem["name"]](params, backend=backend, **problem["kwargs"])
    for _ in range(problem["steps"]):
        grads = [
            laid_out(gradient_values(rng, s, problem["scale"], problem["special"]), dtype, lay)
            for s, lay in zip(shapes, problem["grad_layouts"])
        ]
        with np.errstate(all="ignore"):  # overflow and 0/0 happen alike in every path
            opt.step(grads)
    return params, opt.state


def assert_same_run(problem: dict[str, Any], got: tuple, want: tuple, what: str) -> None:
    for i, (p, q) in enumerate(zip(got[0], want[0])):
        assert same(p, q), f"{what}: param {i} differs for {problem}"
    assert got[1].keys() == want[1].keys()
    for i, entry in want[1].items():
        assert got[1][i].keys() == entry.keys()
        for key, value in entry.items():
            if isinstance(value, np.ndarray):
                assert same(got[1][i][key], value), f"{what}: state {key!r} of param {i} differs for {problem}"
            else:
                assert got[1][i][key] == value or (value != value and got[1][i][key] != got[1][i][key]), key


def check_fused(problem: dict[str, Any]) -> None:
    make_hp(problem["name"], problem["kwargs"])
    assert_same_run(problem, run_numpy(problem, "fused"), run_numpy(problem, "reference"), "fused")


def check_auto(problem: dict[str, Any]) -> None:
    make_hp(problem["name"], problem["kwargs"])
    assert_same_run(problem, run_numpy(problem, "auto"), run_numpy(problem, "reference"), "auto")


def check_torch(problem: dict[str, Any]) -> None:
    """descend.torch with backend="auto" (the kernel, on contiguous CPU tensors) against the NumPy reference.

    NAdam is left out: descend.torch keeps its mu_product in a float32 tensor, as torch does, and the NumPy front in
    a float64 number, so their step sizes differ in the last bits by design.
    """
    import torch

    import descend.torch as dt

    make_hp(problem["name"], problem["kwargs"])
    want = run_numpy(problem, "reference")
    rng = np.random.default_rng(problem["seed"])
    dtype, shapes = problem["dtype"], problem["shapes"]
    params = [torch.nn.Parameter(torch.from_numpy(laid_out(rng.standard_normal(s), dtype, "c"))) for s in shapes]
    opt = dt.OPTIMIZERS[problem["name"]](params, backend="auto", **problem["kwargs"])
    for _ in range(problem["steps"]):
        for p, s in zip(params, shapes):
            values = gradient_values(rng, s, problem["scale"], problem["special"])
            p.grad = torch_grad(type(opt), torch.from_numpy(laid_out(values, dtype, "c")))
        opt.step()
    for i, (p, q) in enumerate(zip(params, want[0])):
        assert same(p.detach().numpy(), q), f"torch: param {i} differs for {problem}"
        for key, value in want[1].get(i, {}).items():
            if isinstance(value, np.ndarray):
                assert same(opt.state[p][key].numpy(), value), f"torch: state {key!r} of param {i} for {problem}"


CHECKS = {"fused": check_fused, "auto": check_auto, "torch": check_torch}


def torch_runs_the_kernel() -> bool:
    """Whether descend.torch's "auto" calls the compiled kernel for a contiguous CPU tensor (seen by watching the
    kernels' entry point during one step)."""
    try:
        import torch

        import descend.torch as dt
    except ImportError:
        return False
    calls = []
    real = kernels.run
    kernels.run = lambda jobs, *args: calls.extend(jobs) or real(jobs, *args)
    try:
        w = torch.nn.Parameter(torch.zeros(4))
        w.grad = torch.ones(4)
        dt.Adam([w], backend="auto").step()
    finally:
        kernels.run = real
    return bool(calls)


TORCH_RUNS_KERNEL = torch_runs_the_kernel()
TORCH_KERNEL = pytest.mark.skipif(not TORCH_RUNS_KERNEL, reason="descend.torch does not run the kernels")
# descend.torch keeps host scalars (NAdam's mu_product, ASGD's eta and mu) in float32 tensors, as torch does
TORCH_NAMES = [n for n in NAMES if not registry.get(n).host_slots(registry.get(n).make())]


def _settings(n: int) -> Any:
    return settings(
        max_examples=n, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
    )


@_settings(60)
@given(problem=problems())
def test_fused_equals_reference_at_the_edges(problem: dict[str, Any]) -> None:
    check_fused(problem)


@_settings(60)
@given(problem=problems(layouts=LAYOUTS))
def test_auto_gives_the_reference_bits_for_any_layout(problem: dict[str, Any]) -> None:
    check_auto(problem)


@TORCH_KERNEL
@_settings(40)
@given(name=st.sampled_from(TORCH_NAMES), data=st.data())
def test_torch_front_equals_the_numpy_reference_at_the_edges(name: str, data: st.DataObject) -> None:
    check_torch(data.draw(problems(name)))


@pytest.mark.slow
@_settings(10_000)
@given(mode=st.sampled_from(["fused", "fused", "auto", "torch"]), data=st.data())
def test_ten_thousand_edges(mode: str, data: st.DataObject) -> None:
    if mode == "torch" and not TORCH_RUNS_KERNEL:
        mode = "fused"
    if mode == "torch":
        problem = data.draw(problems(data.draw(st.sampled_from(TORCH_NAMES))))
    else:
        problem = data.draw(problems(layouts=LAYOUTS if mode == "auto" else None))
    CHECKS[mode](problem)


def test_the_edges_are_reached() -> None:
    """The special values do reach the kernel: denormal gradients stay denormal (no flush to zero), and NaN and
    infinite gradients give NaN in both paths alike."""
    tiny = np.full(64, 1e-310)
    problem = {
        "name": "sgd",
        "kwargs": {"lr": 1.0},
        "dtype": np.float64,
        "shapes": [(64,)],
        "param_layouts": ["c"],
        "grad_layouts": ["c"],
        "steps": 1,
        "seed": 0,
        "scale": 0.0,
        "special": 0.0,
    }
    p = np.zeros(64)
    descend.SGD([p], lr=1.0, backend="fused").step([tiny])
    assert np.all(p == -1e-310) and np.all(p != 0)
    check_fused(problem)
    nan = np.array([np.nan, np.inf, -np.inf, 1.0] * 8, dtype=np.float32)
    runs = []
    for backend in ("fused", "reference"):
        q = np.ones(32, np.float32)
        with np.errstate(all="ignore"):
            descend.Adam([q], backend=backend, lr=0.1).step([nan])
        runs.append(q)
    assert same(runs[0], runs[1]) and np.isnan(runs[0][:3]).all() and np.isfinite(runs[0][3::4]).all()
