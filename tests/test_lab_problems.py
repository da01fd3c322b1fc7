"""The lab's problems: gradients against finite differences, known minima, and the registry's errors."""

from __future__ import annotations

import numpy as np
import pytest

from descend.lab import problems as P

# Problems with exact, hand-written gradients (the torch twins use autograd; they are checked against these below).
EXACT = [
    name
    for name, p in P.PROBLEMS.items()
    if getattr(p, "noise", 0) == 0 and p.family != "online" and name != "line-fit" and p.framework == "numpy"
]


def _finite_difference(problem: P.Problem, params: list[np.ndarray], h: float = 1e-6) -> list[np.ndarray]:
    out = []
    for arr in params:
        grad = np.zeros_like(arr)
        flat, gflat = arr.reshape(arr.shape[0], -1), grad.reshape(arr.shape[0], -1)
        for j in range(min(flat.shape[1], 12)):  # a dozen coordinates per array is plenty and keeps it fast
            old = flat[:, j].copy()
            flat[:, j] = old + h
            up = problem.loss(params)
            flat[:, j] = old - h
            down = problem.loss(params)
            flat[:, j] = old
            gflat[:, j] = (up - down) / (2 * h)
        out.append(grad)
    return out


@pytest.mark.parametrize("name", EXACT)
def test_gradients_match_finite_differences(name, monkeypatch):
    problem = P.get(name)
    if isinstance(problem, P.DataProblem):
        monkeypatch.setattr(problem, "batch_size", None)  # the full-batch gradient is the loss's gradient
    rngs = P.run_rngs(name, [0, 1, 2])
    params = problem.init(rngs)
    analytic = problem.grad(params, 1, rngs)
    numeric = _finite_difference(problem, params)
    for a, n in zip(analytic, numeric):
        cols = min(a.reshape(3, -1).shape[1], 12)
        np.testing.assert_allclose(a.reshape(3, -1)[:, :cols], n.reshape(3, -1)[:, :cols], rtol=1e-5, atol=1e-6)


def test_line_fit_gradient_is_one_sample_in_order():
    problem = P.get("line-fit")
    params = [np.array([[0.3, -0.2]])]
    for step in (1, 2, 21):
        i = (step - 1) % problem.x.size
        r = problem.y[i] - (0.3 * problem.x[i] - 0.2)
        np.testing.assert_allclose(problem.grad(params, step, [])[0], [[-2 * problem.x[i] * r, -2 * r]])


@pytest.mark.parametrize("name", [n for n, p in P.PROBLEMS.items() if isinstance(p, P.Function2D)])
def test_known_minima_have_the_stated_value(name):
    problem = P.get(name)
    for point in problem.optima:
        value = problem.loss([np.array([point])])[0]
        assert value == pytest.approx(problem.f_min, abs=1e-6)


def test_runs_start_from_the_usual_point_then_jitter_reproducibly():
    problem = P.get("rosenbrock")
    first = problem.init(P.run_rngs("rosenbrock", [0, 1, 2]))[0]
    again = problem.init(P.run_rngs("rosenbrock", [0, 1, 2]))[0]
    np.testing.assert_array_equal(first[0], [-2.0, 2.0])
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first[1], first[2])
    # A run does not depend on the runs beside it.
    np.testing.assert_array_equal(problem.init(P.run_rngs("rosenbrock", [0, 1]))[0][1], first[1])


def test_amsgrad_counterexample_gradients_and_projection():
    problem = P.get("amsgrad-counterexample")
    x = [np.array([[0.5]])]
    assert problem.grad(x, 1, [])[0][0, 0] == 1010.0
    assert problem.grad(x, 2, [])[0][0, 0] == -10.0
    assert problem.grad(x, 102, [])[0][0, 0] == 1010.0
    far = [np.array([[3.0], [-7.0]])]
    problem.project(far)
    np.testing.assert_array_equal(far[0], [[1.0], [-1.0]])
    assert problem.loss([np.array([[-1.0]])])[0] == pytest.approx(problem.f_min)


def test_saddle_is_clipped_to_its_square():
    problem = P.get("saddle")
    p = [np.array([[5.0, -9.0]])]
    problem.project(p)
    np.testing.assert_array_equal(p[0], [[2.0, -2.0]])


def test_quadratic_condition_number_is_the_hessian_s():
    q = P.quadratic(condition=50.0, curvature=2.0)
    centre = q.optima[0]
    np.testing.assert_array_equal(q.grad([centre[None, :].copy()], 1, [])[0], [[0.0, 0.0]])
    h = np.array([q.grad([(centre + e)[None, :]], 1, [])[0][0] for e in np.eye(2)])
    eig = np.linalg.eigvalsh(h)
    np.testing.assert_allclose(eig, [2.0 / 50.0, 2.0])
    with pytest.raises(ValueError, match="condition"):
        P.quadratic(condition=0.5)


def test_data_problem_split_and_accuracy():
    problem = P.get("softmax-iris")
    x_train, y_train, x_test, y_test = problem.data()
    assert len(x_train) + len(x_test) == 150 and len(x_test) == 38
    np.testing.assert_allclose(x_train.mean(axis=0), 0.0, atol=1e-12)
    params = problem.init(P.run_rngs(problem.name, [0, 1]))
    acc = problem.metrics(params)["test_accuracy"]
    assert acc.shape == (2,) and np.all((0 <= acc) & (acc <= 1))


def test_unknown_problem_is_named_in_the_error():
    with pytest.raises(ValueError, match="'nope'.*rosenbrock"):
        P.get("nope")


@pytest.mark.skipif(P.torch_missing() is not None, reason="torch or descend.torch is not importable here")
@pytest.mark.parametrize("name", ["softmax-iris", "logistic-breast-cancer", "mlp-digits"])
def test_torch_twins_train_like_the_numpy_problems(name):
    # Same data, starts and minibatches; autograd and descend.torch against hand-written gradients and descend's
    # NumPy front: float64 rounding is all that separates them.
    import torch

    from descend.lab.contestants import CONTESTANTS
    from descend.lab.runner import run

    threads = torch.get_num_threads()
    # (SparseAdam's torch class takes gradients that list every entry, which its NumPy front counts in a dense one)
    for optimizer in ("adam", "nesterov", "sparse_adam"):
        mine = run(P.get(name), CONTESTANTS[optimizer], {"lr": 0.05}, 15, [0, 1])
        twin = run(P.get(f"torch-{name}"), CONTESTANTS[optimizer], {"lr": 0.05}, 15, [0, 1])
        np.testing.assert_allclose(twin.loss, mine.loss, rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(twin.metrics["test_accuracy"], mine.metrics["test_accuracy"])
    assert torch.get_num_threads() == threads  # the runs' single-thread setting is undone


def test_torch_problems_are_refused_clearly_without_torch(monkeypatch):
    from descend.lab import compare as compare_module

    monkeypatch.setattr(compare_module, "torch_missing", lambda: "ModuleNotFoundError: No module named 'torch'")
    config = compare_module.CompareConfig(optimizers=["adam"], problems=["torch-softmax-iris"], steps=5)
    with pytest.raises(ValueError, match="torch-softmax-iris need torch and descend.torch"):
        compare_module.compare(config)
