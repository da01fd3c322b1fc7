"""The lab with a closure-driven optimizer (L-BFGS): one optimizer per run, the runs independent of each other, the
same random numbers as an elementwise optimizer's, both frameworks, and ``descend compare --optimizers lbfgs``."""

from __future__ import annotations

import json

import numpy as np
import pytest

import descend
from descend.lab import problems
from descend.lab.closure_runs import ClosureRuns
from descend.lab.contestants import Contestant, get_contestant
from descend.lab.runner import run, run_many

LBFGS = get_contestant("lbfgs")


def test_the_lab_runs_one_iteration_per_step() -> None:
    assert LBFGS.needs_closure and not get_contestant("adam").needs_closure
    assert LBFGS.fixed == {"max_iter": 1} and LBFGS.defaults("torch")["max_eval"] == 1


@pytest.mark.parametrize("problem", ["rosenbrock", "noisy-quadratic", "logistic-breast-cancer"])
def test_each_run_is_the_run_on_its_own(problem: str) -> None:
    """A run gives, bit for bit, the same with more runs beside it: the optimizers do not mix the runs' rows (a
    function problem starts its first run at the usual point and the others jittered, so runs keep their places)."""
    p = problems.get(problem)
    three = run(p, LBFGS, {"lr": 0.5}, 12, [0, 1, 2], keep_path=False)
    for kept in ([0], [0, 1]):
        fewer = run(p, LBFGS, {"lr": 0.5}, 12, kept, keep_path=False)
        assert np.array_equal(three.loss[:, : len(kept)], fewer.loss, equal_nan=True), (problem, kept)
    assert not np.array_equal(three.loss[:, 1], three.loss[:, 2])


def test_settings_side_by_side_are_the_settings_one_at_a_time() -> None:
    p = problems.get("beale")
    both = run_many(p, LBFGS, [{"lr": 0.1}, {"lr": 1.0}], 20, [0, 1], keep_path=False)
    for setting, result in zip([{"lr": 0.1}, {"lr": 1.0}], both):
        alone = run(p, LBFGS, setting, 20, [0, 1], keep_path=False)
        assert np.array_equal(result.loss, alone.loss, equal_nan=True)
        assert result.hyperparams["lr"] == setting["lr"] and result.hyperparams["max_iter"] == 1


def test_every_evaluation_of_an_update_sees_the_same_noise() -> None:
    """Three iterations and a line search per update call the closure several times; each call sees the noise of
    the update, and the generators end where one draw per update leaves them, as an elementwise optimizer's do."""
    p = problems.get("noisy-quadratic")
    rngs = problems.run_rngs(p.stream, [0, 1])
    twins = problems.run_rngs(p.stream, [0, 1])
    params = p.init(rngs)
    p.init(twins)
    many = Contestant("lbfgs-3", "lbfgs", {"max_iter": 3, "line_search_fn": "strong_wolfe"})
    runs = ClosureRuns(p, descend.LBFGS, params, 2, [dict(many.fixed)], "torch", rngs)
    calls = []
    original = p.grad

    def counting(rows, step, gens):  # noqa: ANN001, ANN202
        calls.append(gens[0].bit_generator.state["state"]["state"])
        return original(rows, step, gens)

    p.grad = counting
    try:
        runs.step(1)
    finally:
        del p.grad
    assert len(calls) > 2 * 2 and len(set(calls)) == 2  # many evaluations, one noise draw per run
    for rng, twin in zip(rngs, twins):
        p.grad(params, 1, [twin])
        assert rng.bit_generator.state == twin.bit_generator.state


def test_a_torch_problem_runs_with_descend_torch_and_follows_its_numpy_twin() -> None:
    pytest.importorskip("torch")
    numpy_run = run(problems.get("logistic-breast-cancer"), LBFGS, {"lr": 0.2}, 10, [0], keep_path=False)
    torch_run = run(problems.get("torch-logistic-breast-cancer"), LBFGS, {"lr": 0.2}, 10, [0], keep_path=False)
    np.testing.assert_allclose(torch_run.loss, numpy_run.loss, rtol=1e-9)  # torch's fused multiply-add: ulps
    assert not np.array_equal(numpy_run.loss[0], numpy_run.loss[-1])


def test_descend_compare_with_lbfgs(tmp_path) -> None:  # noqa: ANN001
    typer_testing = pytest.importorskip("typer.testing")
    from descend.cli import app

    args = ["compare", "--optimizers", "lbfgs,sgd", "--problems", "rosenbrock,line-fit", "--steps", "40"]
    result = typer_testing.CliRunner().invoke(app, [*args, "--seeds", "2", "--out", str(tmp_path), "--jobs", "1"])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    lbfgs = [row for row in rows if row["optimizer"] == "lbfgs"]
    assert {row["problem"] for row in lbfgs} == {"rosenbrock", "line-fit"}
    assert all(row["final_loss"] is not None for row in lbfgs)
