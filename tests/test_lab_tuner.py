"""The runner and the tuner: batched runs equal single runs, the tuner finds known-best rates, divergence counts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from descend.lab import problems as P
from descend.lab.contestants import CONTESTANTS, get_contestant, parse_names
from descend.lab.runner import RunResult, run, run_many
from descend.lab.tuner import lr_grid, score, tune


def test_tuner_finds_one_over_l_for_gradient_descent_on_an_isotropic_quadratic():
    # With Hessian 10*I, gradient descent with lr = 1/L = 0.1 lands on the minimum in one step; larger rates
    # overshoot (0.316 multiplies the error by -2.16 each step), smaller ones are slower.
    bowl = P.quadratic(condition=1.0, curvature=10.0, name="bowl")
    found = tune(bowl, CONTESTANTS["sgd"], steps=40, seeds=[1, 2], base={})
    assert found.best["lr"] == pytest.approx(0.1)
    tried = {t["lr"]: t["score"] for t in found.trials}
    assert tried[0.316] > 10 > tried[0.0316] > tried[0.1]


def test_tuner_widens_the_grid_when_the_best_rate_is_on_its_edge():
    bowl = P.quadratic(condition=1.0, curvature=10.0, name="bowl")
    found = tune(bowl, CONTESTANTS["sgd"], steps=40, seeds=[1], base={}, grid=(1e-3,))
    assert found.best["lr"] == pytest.approx(0.1)
    lrs = [t["lr"] for t in found.trials]
    assert lrs[:3] == [1e-3, 1e-4, 1e-2]  # both ways from a single point, then on in the direction that helped
    assert lrs[3] == 0.1


def test_tuning_momentum_tries_each_value():
    found = tune(
        P.get("booth"), CONTESTANTS["adam"], steps=30, seeds=[1], base={}, grid=(0.1,), tune_momentum=True, refine=False
    )
    assert sorted(t["betas"] for t in found.trials) == [0.5, 0.9, 0.99]
    assert found.best["betas"][1] == 0.999  # beta2 is left alone


def test_lr_grid_is_log_spaced():
    assert lr_grid(1e-3, 1.0, 1) == (0.001, 0.01, 0.1, 1.0)
    assert lr_grid(0.01, 1.0, 2) == (0.01, 0.0316, 0.1, 0.316, 1.0)
    with pytest.raises(ValueError, match="low"):
        lr_grid(1.0, 0.1)


@pytest.mark.parametrize("name", ["saddle", "noisy-quadratic", "logistic-breast-cancer", "line-fit"])
def test_side_by_side_settings_give_the_same_runs_as_one_at_a_time(name):
    problem = P.get(name)
    settings = [{"lr": 0.01}, {"lr": 0.3}]
    together = run_many(problem, CONTESTANTS["nadam"], settings, 25, [0, 1])
    for hp, batched in zip(settings, together):
        alone = run(problem, CONTESTANTS["nadam"], hp, 25, [0, 1])
        np.testing.assert_array_equal(alone.loss, batched.loss)
        assert alone.hyperparams == batched.hyperparams


def test_divergence_is_recorded_and_disqualifies():
    result = run(P.get("rosenbrock"), CONTESTANTS["sgd"], {"lr": 1.0}, 50, [0, 1])
    assert np.all(np.isnan(result.final_loss))
    assert not result.success.any()
    assert score(P.get("rosenbrock"), result)[0] == math.inf


def test_steps_to_tolerance_and_success():
    result = run(P.get("booth"), CONTESTANTS["adam"], {"lr": 0.5}, 300, [0, 1, 2])
    assert result.success.all()
    gaps = result.loss - 0.0
    for i in range(3):
        first = result.steps.index(int(result.steps_to_tol[i]))
        assert gaps[first, i] <= 1e-6 and np.all(gaps[:first, i] > 1e-6)


def test_adam_drifts_the_wrong_way_on_the_counterexample_and_amsgrad_does_not():
    problem = P.get("amsgrad-counterexample")
    base = dict(problem.source_hyperparams)
    adam = run(problem, CONTESTANTS["adam"], {**base, "lr": 0.1}, 2020, [0, 1, 2])
    amsgrad = run(problem, CONTESTANTS["amsgrad"], {**base, "lr": 0.1}, 2020, [0, 1, 2])
    np.testing.assert_allclose(adam.distance, 2.0)  # x = +1, the worst point
    assert np.mean(amsgrad.distance) < 1.5
    # With the paper's step size lr / sqrt(t), Adam ends near +1 and AMSGrad well on the way to -1.
    adam = run(problem, CONTESTANTS["adam"], {**base, "lr": 1.0}, 2020, [0], schedule="inverse-sqrt")
    amsgrad = run(problem, CONTESTANTS["amsgrad"], {**base, "lr": 1.0}, 2020, [0], schedule="inverse-sqrt")
    assert adam.distance[0] > 1.5 and amsgrad.distance[0] < 0.5
    with pytest.raises(ValueError, match="schedule"):
        run(problem, CONTESTANTS["adam"], base, 5, [0], schedule="cosine")


def test_result_json_round_trip():
    result = run(P.get("beale"), CONTESTANTS["amsgrad"], {"lr": 0.1}, 20, [0, 1])
    again = RunResult.from_json(result.to_json())
    np.testing.assert_array_equal(again.path, result.path)
    assert again.hyperparams == result.hyperparams


def test_names_are_checked():
    assert get_contestant("Nesterov").fixed == {"momentum": 0.9, "nesterov": True}
    with pytest.raises(ValueError, match="'adamm'.*known optimizers"):
        get_contestant("adamm")
    with pytest.raises(ValueError, match="twice"):
        parse_names("adam,adam", CONTESTANTS, "optimizers", [])
    with pytest.raises(ValueError, match="empty list"):
        parse_names(" , ", CONTESTANTS, "optimizers", [])
