"""descend.LBFGS (the NumPy front): the closure contract, agreement with torch.optim.LBFGS within the documented
tolerances, state_dicts, bad input on both fronts, and steps that raise."""

from __future__ import annotations

import copy
import itertools
import math
import pickle
from typing import Any

import numpy as np
import pytest

import descend
from descend.algorithms import REGISTRY
from tests.bad_input_helpers import assert_unchanged, snapshot

torch = pytest.importorskip("torch")

import descend.torch as dt  # noqa: E402
from tests.lbfgs_problems import PROBLEMS  # noqa: E402
from tests.tolerances import LBFGS_NUMPY_FLOAT32, LBFGS_NUMPY_FLOAT64, assert_close  # noqa: E402


def rosenbrock(w: np.ndarray) -> Any:
    def closure() -> tuple[float, list[np.ndarray]]:
        x, y = w
        grad = np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)], dtype=w.dtype)
        return float((1 - x) ** 2 + 100 * (y - x * x) ** 2), [grad]

    return closure


def test_it_reaches_the_minimum_of_rosenbrock() -> None:
    w = np.array([-1.2, 1.0])
    opt = descend.LBFGS([w], line_search_fn="strong_wolfe", tolerance_change=1e-14)
    for _ in range(5):
        opt.step(rosenbrock(w))
    assert_close(w, [1.0, 1.0], {"rtol": 0, "atol": 1e-6})
    assert opt.state[0]["n_iter"] < 60 and list(opt.state[0])[:2] == ["func_evals", "n_iter"]


# -- against torch.optim.LBFGS ---------------------------------------------------------------------------------------

CASES = list(itertools.product(PROBLEMS, [None, "strong_wolfe"], ["float32", "float64"], [{}, {"history_size": 3}]))


# Steps and iterations per step compared with torch: longer in float64 than in float32 (see tests/tolerances.py).
HORIZON = {"float64": (3, 4), "float32": (2, 3)}


@pytest.mark.parametrize(
    ("problem", "line_search", "dtype", "extra"), CASES, ids=[f"{a}-{b}-{c}-{d}" for a, b, c, d in CASES]
)
def test_follows_torch_within_the_documented_tolerance(problem: str, line_search: Any, dtype: str, extra: dict) -> None:
    """The closure gives both fronts the same loss and gradient bits at the same point (see tests/lbfgs_problems.py);
    the losses, parameters and state against torch's (see tests/tolerances.py). State vectors are compared at the
    scale of the first gradient, the size of the terms whose rounding they carry."""
    tdtype = getattr(torch, dtype)
    tol = LBFGS_NUMPY_FLOAT32 if dtype == "float32" else LBFGS_NUMPY_FLOAT64
    steps, max_iter = HORIZON[dtype]
    kwargs = {"line_search_fn": line_search, "max_iter": max_iter, "lr": 0.5 if extra else 1, **extra}
    prob = PROBLEMS[problem]
    ours, theirs = prob.numpy_params(tdtype), prob.torch_params(tdtype)
    scale = max(float(np.max(np.abs(g))) for g in prob.numpy_closure(ours)()[1])
    opt, ref = descend.LBFGS(ours, **kwargs), torch.optim.LBFGS(theirs, **kwargs)
    for _ in range(steps):
        ours_loss = opt.step(prob.numpy_closure(ours))
        assert_close(ours_loss, ref.step(prob.torch_closure(theirs)).detach().item(), tol, "loss")
    for p, q in zip(ours, theirs):
        assert p.dtype == q.detach().numpy().dtype
        assert_close(p, q, tol)
    mine, theirs_state = opt.state[0], ref.state[theirs[0]]
    assert list(mine) == list(theirs_state)
    assert (mine["func_evals"], mine["n_iter"]) == (theirs_state["func_evals"], theirs_state["n_iter"])
    assert len(mine["old_dirs"]) == len(theirs_state["old_dirs"]) > 0
    for key in ("d", "prev_flat_grad", "old_dirs", "old_stps", "ro", "H_diag", "t", "prev_loss"):
        a, b = mine[key], theirs_state[key]
        vectors = key in ("d", "prev_flat_grad", "old_dirs", "old_stps")
        for x, y in zip(a, b) if isinstance(b, list) else [(a, b)]:
            y = y.detach().numpy() if isinstance(y, torch.Tensor) else y
            assert_close(x, y, {"rtol": tol["rtol"], "atol": tol["atol"] * scale if vectors else 0.0}, key)


# -- the closure contract ----------------------------------------------------------------------------------------------


def test_none_is_a_zero_gradient_and_one_array_serves_one_parameter() -> None:
    w, frozen = np.array([2.0, -1.0]), np.array([5.0])
    a = descend.LBFGS([w, frozen], max_iter=3)
    loss = a.step(lambda: (float(w @ w), [2 * w, None]))
    assert loss == 5.0 and frozen[0] == 5.0
    v = np.array([2.0, -1.0])
    b = descend.LBFGS([v], max_iter=3)
    b.step(lambda: (float(v @ v), 2 * v))
    assert np.array_equal(v, w)


def test_the_closure_may_reuse_its_buffers_and_its_loss_is_returned_as_given() -> None:
    w, v = np.array([3.0, 1.0, -2.0]), np.array([3.0, 1.0, -2.0])
    buffer = np.empty(3)
    marker = np.float64(0.0)

    def reusing() -> tuple[Any, list[np.ndarray]]:
        np.multiply(w, 2.0, out=buffer)
        return np.float64(w @ w) + marker, [buffer]

    a, b = descend.LBFGS([w], line_search_fn="strong_wolfe"), descend.LBFGS([v], line_search_fn="strong_wolfe")
    first = a.step(reusing)
    b.step(lambda: (float(v @ v), [2 * v]))
    assert type(first) is np.float64 and first == 14.0
    assert np.array_equal(w, v)
    for key, value in a.state[0].items():
        assert repr(value) == repr(b.state[0][key]), key


BAD_CLOSURES = [
    ("none", None, r"LBFGS.step needs a closure that returns \(loss, grads\); got None"),
    ("loss only", lambda w: lambda: 1.0, r"must return \(loss, grads\).*returned 1.0 of type float"),
    ("three", lambda w: lambda: (1.0, [w], 0), r"must return \(loss, grads\).*returned a tuple of 3 entries"),
    ("text loss", lambda w: lambda: ("1", [w]), r"loss must be a real number, got '1' of type str"),
    ("vector loss", lambda w: lambda: (w, [w]), r"loss must be a real number, got an array of shape \(2,\)"),
    ("no grads", lambda w: lambda: (1.0, []), r"grads must be a list with one array \(or None\) per parameter \(1\)"),
    ("wrong shape", lambda w: lambda: (1.0, [np.ones(3)]), r"grads\[0\] must be an array of shape \(2,\) and dtype"),
    ("wrong dtype", lambda w: lambda: (1.0, [w.astype(np.float32)]), r"dtype float64, like its parameter; got an arr"),
    ("list grad", lambda w: lambda: (1.0, [[1.0, 2.0]]), r"grads\[0\] must be an array.*got a list of 2 entries"),
]


@pytest.mark.parametrize(("what", "make", "match"), BAD_CLOSURES, ids=[c[0] for c in BAD_CLOSURES])
def test_a_bad_closure_is_refused_and_changes_nothing(what: str, make: Any, match: str) -> None:
    w = np.array([-1.2, 1.0])
    opt = descend.LBFGS([w], max_iter=3)
    opt.step(rosenbrock(w))
    before = snapshot(opt)
    with pytest.raises(TypeError, match=match):
        opt.step(make(w) if make is not None else None)
    assert_unchanged(opt, before)


def failing(closure: Any, on_call: int) -> Any:
    calls = itertools.count(1)

    def wrapped() -> Any:
        if next(calls) == on_call:
            raise FloatingPointError("the model failed")
        return closure()

    return wrapped


@pytest.mark.parametrize(("line_search", "on_call"), [("strong_wolfe", 2), ("strong_wolfe", 4), (None, 3)])
def test_a_closure_that_raises_mid_step_changes_nothing(line_search: Any, on_call: int) -> None:
    """With strong_wolfe, calls 2 and later are the line search's, made with the parameters at a trial point: they
    are put back, the state is untouched, and the next steps give the bits of a run that never failed."""
    prob = PROBLEMS["mlp"]
    ours, twin = prob.numpy_params(torch.float64), prob.numpy_params(torch.float64)
    opt = descend.LBFGS(ours, line_search_fn=line_search, max_iter=5)
    ref = descend.LBFGS(twin, line_search_fn=line_search, max_iter=5)
    for _ in range(2):
        opt.step(prob.numpy_closure(ours))
        ref.step(prob.numpy_closure(twin))
    before = snapshot(opt)
    with pytest.raises(FloatingPointError, match="the model failed"):
        opt.step(failing(prob.numpy_closure(ours), on_call))
    assert_unchanged(opt, before)
    for _ in range(2):
        opt.step(prob.numpy_closure(ours))
        ref.step(prob.numpy_closure(twin))
    assert snapshot(opt) == snapshot(ref)


# -- state_dicts -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("line_search", [None, "strong_wolfe"])
def test_save_mid_run_load_and_continue_gives_the_uninterrupted_bits(line_search: Any) -> None:
    prob = PROBLEMS["mlp"]
    straight = prob.numpy_params(torch.float32)
    uninterrupted = descend.LBFGS(straight, line_search_fn=line_search, max_iter=6, history_size=4)
    for _ in range(5):
        uninterrupted.step(prob.numpy_closure(straight))
    params = prob.numpy_params(torch.float32)
    first = descend.LBFGS(params, line_search_fn=line_search, max_iter=6, history_size=4)
    for _ in range(2):
        first.step(prob.numpy_closure(params))
    saved = pickle.loads(pickle.dumps(first.state_dict()))
    copies = [p.copy() for p in params]
    resumed = descend.LBFGS(copies)  # the hyperparameters come back with the state_dict
    resumed.load_state_dict(saved)
    for _ in range(3):
        resumed.step(prob.numpy_closure(copies))
    assert snapshot(resumed) == snapshot(uninterrupted)


def test_a_state_dict_is_a_snapshot() -> None:
    w = np.array([-1.2, 1.0])
    opt = descend.LBFGS([w], max_iter=3)
    opt.step(rosenbrock(w))
    held = opt.state_dict()
    frozen = copy.deepcopy(held)
    opt.step(rosenbrock(w))
    assert snapshot(type("S", (), {"param_groups": [], "state_dict": lambda s: held})()) == snapshot(
        type("S", (), {"param_groups": [], "state_dict": lambda s: frozen})()
    )


BAD_STATE_DICTS = [
    ("adam's", lambda sd: sd.update(descend.Adam([np.zeros(2)]).state_dict()), r"lacks history_size, line_search_fn"),
    ("long d", lambda sd: sd["state"][0].update(d=np.zeros(3)), r"'d' must be a flat vector of the parameters' 2"),
    ("int d", lambda sd: sd["state"][0].update(d=np.zeros(2, int)), r"'d' must be a flat vector"),
    ("unknown key", lambda sd: sd["state"][0].update(exp_avg=np.zeros(2)), r"unknown keys \['exp_avg'\]"),
    ("ragged", lambda sd: sd["state"][0]["old_stps"].append(np.zeros(2)), r"one entry per pair"),
    ("bad count", lambda sd: sd["state"][0].update(n_iter=-1), r"'n_iter' must be a count"),
    ("text t", lambda sd: sd["state"][0].update(t="1"), r"'t' must be a real number, got '1'"),
    ("two groups", lambda sd: sd["param_groups"].append({}), r"LBFGS state_dict has one param group"),
    ("bad lr", lambda sd: sd["param_groups"][0].update(lr=-1.0), r"Invalid learning rate: -1.0"),
]


@pytest.mark.parametrize(("what", "mutate", "match"), BAD_STATE_DICTS, ids=[c[0] for c in BAD_STATE_DICTS])
def test_a_state_dict_that_does_not_fit_is_refused_whole(what: str, mutate: Any, match: str) -> None:
    w = np.array([-1.2, 1.0])
    opt = descend.LBFGS([w], max_iter=3)
    opt.step(rosenbrock(w))
    opt.step(rosenbrock(w))
    state_dict = opt.state_dict()
    mutate(state_dict)
    before = snapshot(opt)
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(state_dict)
    assert_unchanged(opt, before)


def test_a_smaller_history_takes_effect_at_the_next_step() -> None:
    w = np.array([-1.2, 1.0])
    opt = descend.LBFGS([w], max_iter=10)
    opt.step(rosenbrock(w))
    assert len(opt.state[0]["old_dirs"]) > 3
    opt.param_groups[0]["history_size"] = 3
    opt.step(rosenbrock(w))
    assert len(opt.state[0]["old_dirs"]) == len(opt.state[0]["ro"]) == 3


def test_a_step_keeps_to_max_iter_and_max_eval() -> None:
    w = np.array([-1.2, 1.0])
    opt = descend.LBFGS([w], max_iter=6, max_eval=4, line_search_fn="strong_wolfe")
    evals, iters = 0, 0
    for _ in range(6):
        opt.step(rosenbrock(w))
        # the line search's first trial is not counted against its budget (as in torch): one more at most
        assert opt.state[0]["func_evals"] - evals <= 4 + 1 and opt.state[0]["n_iter"] - iters <= 6
        evals, iters = opt.state[0]["func_evals"], opt.state[0]["n_iter"]


# -- bad input, both fronts ------------------------------------------------------------------------------------------

NAN = math.nan
BAD_HYPERPARAMETERS = [
    ("lr", -1.0, ValueError, r"Invalid learning rate: -1.0; allowed range is \[0.0, inf\]"),
    ("lr", NAN, ValueError, r"Invalid learning rate: nan; it must be a finite number in \[0.0, inf\]"),
    ("lr", math.inf, ValueError, r"Invalid learning rate: inf; it must be a finite number"),
    ("lr", "1", TypeError, r"lr must be a real number, got '1' of type str"),
    ("max_iter", 0, ValueError, r"Invalid max_iter value: 0; it must be an integer of at least 1"),
    ("max_iter", 2.5, TypeError, r"max_iter must be an integer of at least 1, got 2.5 of type float"),
    ("max_iter", True, TypeError, r"max_iter must be an integer of at least 1, got True of type bool"),
    ("max_eval", 0, ValueError, r"Invalid max_eval value: 0; it must be an integer of at least 1"),
    ("max_eval", "25", TypeError, r"max_eval must be an integer of at least 1, got '25' of type str"),
    ("history_size", -3, ValueError, r"Invalid history_size value: -3; it must be an integer of at least 1"),
    ("tolerance_grad", -1e-7, ValueError, r"Invalid tolerance_grad value: -1e-07; allowed range is \[0.0, inf\]"),
    ("tolerance_change", NAN, ValueError, r"Invalid tolerance_change value: nan; it must be a finite number"),
    ("line_search_fn", "armijo", ValueError, r"Invalid line_search_fn value: 'armijo'; allowed values are None and"),
    ("line_search_fn", 1, ValueError, r"Invalid line_search_fn value: 1; allowed values are None and 'strong_wolfe'"),
]


def _numpy_lbfgs(**kwargs: Any) -> tuple[Any, Any]:
    w = np.array([-1.2, 1.0])
    return descend.LBFGS([w], **kwargs), rosenbrock(w)


def _torch_lbfgs(**kwargs: Any) -> tuple[Any, Any]:
    params = PROBLEMS["rosenbrock"].torch_params(torch.float64)
    return dt.LBFGS(params, **kwargs), PROBLEMS["rosenbrock"].torch_closure(params)


@pytest.mark.parametrize("front", [_numpy_lbfgs, _torch_lbfgs], ids=["numpy", "torch"])
@pytest.mark.parametrize(
    ("arg", "value", "error", "match"), BAD_HYPERPARAMETERS, ids=[f"{a}-{v!r}" for a, v, _, _ in BAD_HYPERPARAMETERS]
)
def test_bad_hyperparameter(front: Any, arg: str, value: Any, error: type, match: str) -> None:
    """Refused by the constructor, and when set in the param group mid-run, by the next step with nothing changed."""
    with pytest.raises(error, match=match):
        front(**{arg: value})
    opt, closure = front(max_iter=3)
    opt.step(closure)
    before = snapshot(opt)
    good = opt.param_groups[0][arg]
    opt.param_groups[0][arg] = value
    with pytest.raises(error, match=match):
        opt.step(closure)
    opt.param_groups[0][arg] = good
    assert_unchanged(opt, before)


def test_numpy_groups_and_params() -> None:
    w = np.zeros(3)
    with pytest.raises(ValueError, match=r"doesn't support per-parameter options \(parameter groups\)"):
        descend.LBFGS([{"params": [w]}, {"params": [np.zeros(2)]}])
    with pytest.raises(ValueError, match=r"appears more than once"):
        descend.LBFGS([w, w])
    with pytest.raises(ValueError, match=r"share memory"):
        descend.LBFGS([w[:2], w[1:]])
    with pytest.raises(TypeError, match=r"single ndarray of shape \(3,\); wrap it in a list"):
        descend.LBFGS(w)
    with pytest.raises(TypeError, match=r"dtype int64; descend updates float32 and float64"):
        descend.LBFGS([np.zeros(2, int)])
    with pytest.raises(TypeError, match=r"LBFGS: .*unexpected keyword argument 'betas'.*are lr, max_iter"):
        descend.LBFGS([w], betas=(0.9, 0.99))
    with pytest.raises(ValueError, match=r"nothing to optimize"):
        descend.LBFGS([np.zeros(0)]).step(lambda: (0.0, [np.zeros(0)]))


def test_the_spec_says_it_is_closure_driven() -> None:
    spec = REGISTRY["lbfgs"]
    assert not spec.elementwise and spec.torch_name == "LBFGS"
    assert all(s.elementwise for n, s in REGISTRY.items() if n != "lbfgs")
    assert not hasattr(spec, "reference_update") and spec.state_keys[-1] == "al"
    assert "Not available under keras: Keras has no L-BFGS" in spec.describe(convention="keras")
    assert "strong-Wolfe" in descend.LBFGS([np.zeros(2)], convention="paper").describe()


def test_a_checkpoint_refuses_it_clearly(tmp_path: Any) -> None:
    w = np.array([-1.2, 1.0])
    opt = descend.LBFGS([w])
    for call in (lambda: descend.save(tmp_path / "c.npz", opt), lambda: descend.load(tmp_path / "c.npz", opt)):
        with pytest.raises(TypeError, match=r"LBFGS keeps lists of history vectors.*pickle instead"):
            call()
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_contiguous_params_and_grads_train_like_contiguous_copies(dtype: type) -> None:
    rng = np.random.default_rng(1)
    views = [rng.standard_normal((5, 8)).astype(dtype)[:, ::2], rng.standard_normal((4, 6)).astype(dtype).T]
    copies = [np.ascontiguousarray(v).copy() for v in views]
    targets = [rng.standard_normal(v.shape).astype(dtype) for v in views]

    def closure_of(params: list[np.ndarray], odd: bool) -> Any:
        def closure() -> tuple[float, list[np.ndarray]]:
            grads = [np.asarray(p - c, dtype=dtype) for p, c in zip(params, targets)]
            grads = [np.asfortranarray(g) for g in grads] if odd else grads  # gradients in another memory order
            return float(sum(0.5 * np.sum((p - c) ** 2) for p, c in zip(params, targets))), grads

        return closure

    strided, contiguous = descend.LBFGS(views, max_iter=4), descend.LBFGS(copies, max_iter=4)
    for _ in range(3):
        strided.step(closure_of(views, True))
        contiguous.step(closure_of(copies, False))
    assert all(np.ascontiguousarray(v).tobytes() == c.tobytes() for v, c in zip(views, copies))
    assert snapshot(strided)[1] == snapshot(contiguous)[1]
