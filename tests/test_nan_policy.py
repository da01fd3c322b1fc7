"""nan_policy= on both fronts and backends: propagate (as torch), skip the whole step, or raise naming the parameter."""

from __future__ import annotations

import numpy as np
import pytest

import descend
from descend import kernels
from descend.algorithms import ELEMENTWISE
from descend.kernels._layout import KERNELS
from tests.shapes import shape_for, torch_grad

torch = pytest.importorskip("torch")

import descend.torch as dt  # noqa: E402

BACKENDS = ["reference"] + (["fused"] if kernels.available()[0] else [])
ALGORITHMS = list(ELEMENTWISE)  # nan_policy is the engine's; a closure-driven algorithm does not run there


def _numpy(name: str, backend: str, policy: str):
    if backend == "fused" and name not in KERNELS:
        pytest.skip(f"{name} has no fused kernel")
    params = [np.ones(shape_for(name, (5,))), np.ones((2, 3))]
    opt = descend.OPTIMIZERS[name](params, lr=0.1, backend=backend, nan_policy=policy)
    opt.step([np.full(params[0].shape, 0.5), np.full((2, 3), 0.5)])
    return params, opt


def _bad_numpy_grads(value: float, first: tuple[int, ...] = (5,)) -> list[np.ndarray]:
    g = np.full((2, 3), 0.5)
    g[1, 2] = value
    return [np.full(first, 0.5), g]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ALGORITHMS)
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_numpy_skip_changes_nothing_and_counts(name: str, backend: str, value: float) -> None:
    params, opt = _numpy(name, backend, "skip")
    before = [p.copy() for p in params], opt.state_dict()
    opt.step(_bad_numpy_grads(value, params[0].shape))
    assert opt.skipped_steps == 1
    for p, q in zip(params, before[0]):
        assert p.tobytes() == q.tobytes()
    after = opt.state_dict()["state"]
    for i, entry in before[1]["state"].items():
        for k, v in entry.items():
            assert np.asarray(after[i][k]).tobytes() == np.asarray(v).tobytes()
    opt.step([np.full(params[0].shape, 0.5), np.full((2, 3), 0.5)])  # a finite step afterwards runs as usual
    assert opt.skipped_steps == 1 and not np.array_equal(params[0], before[0][0])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["adam", "sgd", "nadam"])
def test_numpy_raise_names_the_parameter_and_changes_nothing(name: str, backend: str) -> None:
    params, opt = _numpy(name, backend, "raise")
    before = [p.copy() for p in params]
    with pytest.raises(ValueError, match=r"gradient of parameter 1 \(shape \(2, 3\)\) holds NaN or infinite"):
        opt.step(_bad_numpy_grads(np.nan))
    for p, q in zip(params, before):
        assert p.tobytes() == q.tobytes()


@pytest.mark.parametrize("backend", BACKENDS)
def test_numpy_propagate_is_the_default_and_lets_nan_through(backend: str) -> None:
    params, opt = _numpy("adam", backend, "propagate")
    assert descend.Adam([np.ones(1)]).nan_policy == "propagate"
    opt.step(_bad_numpy_grads(np.nan))
    assert np.isnan(params[1][1, 2]) and np.all(np.isfinite(params[0]))
    assert opt.skipped_steps == 0


def _torch(name: str, backend: str, policy: str):
    if backend == "fused" and name not in KERNELS:
        pytest.skip(f"{name} has no fused kernel")
    params = [torch.ones(shape_for(name, (5,)), requires_grad=True), torch.ones(2, 3, requires_grad=True)]
    opt = dt.OPTIMIZERS[name](params, lr=0.1, backend=backend, nan_policy=policy)
    for p in params:
        p.grad = torch_grad(type(opt), torch.full_like(p, 0.5))
    opt.step()
    return params, opt


def _bad_torch_grads(params, value: float, cls: type | None = None) -> None:
    for p in params:
        grad = torch.full_like(p, 0.5)
        if p is params[1]:
            grad[1, 2] = value
        p.grad = grad if cls is None else torch_grad(cls, grad)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ALGORITHMS)
def test_torch_skip_changes_nothing_and_counts(name: str, backend: str) -> None:
    params, opt = _torch(name, backend, "skip")
    before = [p.detach().clone() for p in params]
    state = {k: v.clone() for st in opt.state.values() for k, v in st.items() if isinstance(v, torch.Tensor)}
    _bad_torch_grads(params, float("inf"), type(opt))
    opt.step()
    assert opt.skipped_steps == 1
    for p, q in zip(params, before):
        assert torch.equal(p.detach(), q)
    after = {k: v for st in opt.state.values() for k, v in st.items() if isinstance(v, torch.Tensor)}
    assert all(torch.equal(after[k], v) for k, v in state.items())


@pytest.mark.parametrize("backend", BACKENDS)
def test_torch_raise_and_propagate(backend: str) -> None:
    params, opt = _torch("adamw", backend, "raise")
    _bad_torch_grads(params, float("nan"), type(opt))
    before = [p.detach().clone() for p in params]
    with pytest.raises(ValueError, match=r"gradient of parameter 1 \(shape \(2, 3\)\)"):
        opt.step()
    assert all(torch.equal(p.detach(), q) for p, q in zip(params, before))
    params, opt = _torch("adamw", backend, "propagate")
    _bad_torch_grads(params, float("nan"), type(opt))
    opt.step()
    assert torch.isnan(params[1][1, 2]) and opt.skipped_steps == 0


def test_bad_policy_is_refused_on_both_fronts() -> None:
    with pytest.raises(ValueError, match=r"Invalid nan_policy 'ignore'.*'propagate', 'skip', 'raise'"):
        descend.Adam([np.ones(1)], nan_policy="ignore")
    with pytest.raises(ValueError, match=r"Invalid nan_policy 'ignore'"):
        dt.Adam([torch.ones(1, requires_grad=True)], nan_policy="ignore")


def test_torch_policy_survives_pickling() -> None:
    import pickle

    opt = dt.Adam([torch.ones(1, requires_grad=True)], nan_policy="skip")
    opt.skipped_steps = 3
    copy = pickle.loads(pickle.dumps(opt))
    assert copy.nan_policy == "skip" and copy.skipped_steps == 3


@pytest.mark.skipif(not kernels.available()[0], reason="the fused kernels are not built")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_kernel_finds_the_first_non_finite_tensor(dtype: torch.dtype, value: float) -> None:
    name = str(dtype).removeprefix("torch.")
    tensors = [torch.ones(n, dtype=dtype) for n in (0, 7, 200_000, 3)]
    assert kernels.first_nonfinite([t.data_ptr() for t in tensors], [t.numel() for t in tensors], name) == -1
    tensors[3][1] = value
    tensors[2][150_000] = value  # in the part a second thread reads
    assert kernels.first_nonfinite([t.data_ptr() for t in tensors], [t.numel() for t in tensors], name) == 2
    big = torch.full((3,), torch.finfo(dtype).max, dtype=dtype)  # huge but finite
    assert kernels.first_nonfinite([big.data_ptr()], [3], name) == -1


def test_the_first_bad_parameter_is_named_across_layouts_and_dtypes() -> None:
    # parameter 1 is non-contiguous (checked without the kernel), parameter 2 is float32: the first bad one is named
    a, c = np.ones(4), np.ones(3, np.float32)
    b_base = np.ones((4, 4))
    b = b_base[:, ::2]
    opt = descend.SGD([a, b, c], lr=0.1, nan_policy="raise")
    gb = np.ones((4, 4))[:, ::2]
    gb[2, 1] = np.inf
    gc = np.array([1.0, np.nan, 1.0], np.float32)
    with pytest.raises(ValueError, match="gradient of parameter 1 "):
        opt.step([np.ones(4), gb, gc])
    with pytest.raises(ValueError, match="gradient of parameter 2 "):
        opt.step([np.ones(4), np.ones((4, 4))[:, ::2], gc])


@pytest.mark.parametrize("cls", ["Adam", "SparseAdam"])
@pytest.mark.filterwarnings("ignore:optimizer contains a parameter group with duplicate parameters")
def test_torch_skip_with_a_parameter_listed_twice_changes_nothing(cls: str) -> None:
    """A parameter listed twice is updated in two rounds; a step skipped for another parameter's NaN skips both."""
    a, b = torch.zeros(3, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    opt = getattr(dt, cls)([a, b, a], lr=0.1, nan_policy="skip")
    if cls == "SparseAdam":
        a.grad = torch.sparse_coo_tensor([[0, 1]], torch.tensor([1.0, 2.0], dtype=torch.float64), (3,))
        b.grad = torch.sparse_coo_tensor([[0]], torch.tensor([float("nan")], dtype=torch.float64), (2,))
    else:
        a.grad = torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64)
        b.grad = torch.tensor([float("nan"), 0.0], dtype=torch.float64)
    opt.step()
    assert opt.skipped_steps == 1
    assert torch.equal(a, torch.zeros(3, dtype=torch.float64)) and torch.equal(b, torch.zeros(2, dtype=torch.float64))
    assert not opt.state.get(a) and not opt.state.get(b)
