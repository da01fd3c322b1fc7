"""The verdict (ranks, overall ranking, performance profiles), why runs stop, fair settings and honest pictures."""

from __future__ import annotations

import math
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from descend.lab import problems as P
from descend.lab.compare import CompareConfig, compare, like_with_like
from descend.lab.contestants import CONTESTANTS
from descend.lab.plots import _limits, loss_plot, stop_note, visible_path
from descend.lab.runner import RunResult, run
from descend.lab.tables import format_rows
from descend.lab.verdict import profile, steps_to_target, verdict


def _row(problem, optimizer, **values):
    base = {
        "problem": problem,
        "optimizer": optimizer,
        "runs": 3,
        "diverged": 0,
        "undefined": 0,
        "gap": None,
        "final_loss": None,
        "success_rate": None,
        "steps_to_tol": None,
    }
    return {**base, **values}


def _outcome(rows, problems, optimizers):
    return SimpleNamespace(
        rows=lambda: rows, problems=[SimpleNamespace(name=p) for p in problems], optimizers=optimizers
    )


def test_ranks_follow_the_stated_rule():
    rows = [
        # with a tolerance: more successes first, then fewer steps, then the gap; all diverged is last
        _row("f", "a", success_rate=1.0, steps_to_tol=50.0, gap=1e-9, final_loss=1e-9),
        _row("f", "b", success_rate=1.0, steps_to_tol=20.0, gap=1e-7, final_loss=1e-7),
        _row("f", "c", success_rate=2 / 3, steps_to_tol=5.0, gap=1e-12, final_loss=1e-12),
        _row("f", "d", success_rate=0.0, diverged=3),
        # on data: test accuracy first
        _row("data", "a", final_loss=0.3, gap=0.3, test_accuracy=0.91),
        _row("data", "b", final_loss=0.1, gap=0.1, test_accuracy=0.95),
        _row("data", "c", final_loss=0.2, gap=0.2, test_accuracy=0.95),
        _row("data", "d", final_loss=0.5, gap=0.5, test_accuracy=0.5),
        # no minimum known: the final loss; equal losses share their ranks
        _row("expr", "a", final_loss=2.0),
        _row("expr", "b", final_loss=1.0),
        _row("expr", "c", final_loss=1.0),
        _row("expr", "d", final_loss=None, undefined=3),
    ]
    v = verdict(_outcome(rows, ["f", "data", "expr"], ["a", "b", "c", "d"]))
    assert [v.rank[("f", o)] for o in "abcd"] == [2, 1, 3, 4]
    assert [v.rank[("data", o)] for o in "abcd"] == [3, 1, 2, 4]
    assert [v.rank[("expr", o)] for o in "abcd"] == [3, 1.5, 1.5, 4]
    assert v.optimizers == ["b", "c", "a", "d"]
    assert v.mean_rank["b"] == pytest.approx(3.5 / 3)
    assert v.cell[("f", "d")] == "diverged" and v.cell[("expr", "d")] == "left the domain"
    assert v.cell[("f", "c")] == "2/3, gap 1.0e-12" and v.cell[("data", "b")] == "95.0%"
    assert v.headline(3).startswith("b ranks first overall")
    tied = verdict(_outcome([_row("e", "a", final_loss=1.0), _row("e", "b", final_loss=1.0)], ["e"], ["a", "b"]))
    assert tied.headline(1).startswith("a and b share first")


def test_steps_to_target_needs_more_than_half_the_runs():
    assert steps_to_target([10, -1, 30]) == 30
    assert steps_to_target([10, -1]) == math.inf
    assert steps_to_target([10, 20]) == 15
    assert steps_to_target([-1, -1, 5]) == math.inf


def test_performance_profiles_count_unsolved_problems_for_everyone():
    times = {"p1": {"a": 10.0, "b": 20.0}, "p2": {"a": math.inf, "b": 5.0}, "p3": {"a": math.inf, "b": math.inf}}
    taus, rho = profile(times, ["a", "b"], taus=[1.0, 1.9, 2.0, 100.0])
    np.testing.assert_allclose(rho["a"], [1 / 3, 1 / 3, 1 / 3, 1 / 3])
    np.testing.assert_allclose(rho["b"], [1 / 3, 1 / 3, 2 / 3, 2 / 3])
    _, zero = profile({"p": {"a": 0.0, "b": 3.0}}, ["a", "b"], taus=[1.0, 3.0])  # 0 steps counts as 1
    np.testing.assert_allclose(zero["b"], [0.0, 1.0])


def test_an_optimizer_that_ran_on_none_of_the_problems_has_no_profile(tmp_path):
    # Muon runs only where there are matrices: it is not drawn as solving 0% of problems it never saw
    times = {"p1": {"a": 10.0}, "p2": {"a": math.inf, "b": 5.0}}
    _, rho = profile(times, ["a", "muon", "b"], taus=[1.0, 2.0])
    assert sorted(rho) == ["a", "b"]
    np.testing.assert_allclose(rho["b"], [1.0, 1.0])  # over the one problem it ran on
    from descend.lab import verdict_plots

    path = verdict_plots.profile_plot(np.array([1.0, 2.0]), rho, ["a", "muon", "b"], tmp_path / "p.png", "two")
    assert path.exists() and path.stat().st_size > 0


def test_runs_that_leave_the_domain_are_told_from_runs_that_diverge():
    domain = P.from_expression("x - log(x) + y**2", (3.0, 1.0))
    left = run(domain, CONTESTANTS["sgd"], {"lr": 5.0}, 20, [0, 1])
    assert left.stopped == ["undefined", "undefined"] and all(s > 0 for s in left.stop_step)
    assert "left the function's domain" in stop_note(left)
    blown = run(P.get("rosenbrock"), CONTESTANTS["sgd"], {"lr": 1.0}, 50, [0, 1])
    assert blown.stopped == ["diverged", "diverged"]
    assert stop_note(blown).startswith("all 2 runs diverged by step")
    fine = run(P.get("booth"), CONTESTANTS["adam"], {"lr": 0.1}, 20, [0])
    assert fine.stopped == [""] and fine.stop_step == [-1] and stop_note(fine) == ""
    again = RunResult.from_json(left.to_json())
    assert again.stopped == left.stopped and again.stop_step == left.stop_step
    with pytest.raises(ValueError, match="outside the function's domain"):
        P.from_expression("log(x) + y", (-1.0, 0.0))


def test_a_run_that_leaves_the_domain_is_reported_as_such():
    domain = P.from_expression("x - log(x) + y**2", (3.0, 1.0))
    outcome = compare(CompareConfig(optimizers=["sgd", "adam"], problems=[domain], steps=20, seeds=2, lr=5.0))
    headers, cells = format_rows(outcome.rows())
    assert "(2/2 left the domain)" in cells[0]
    assert "diverged" not in " ".join(cells[0])


def test_weight_decay_is_off_where_the_problem_defines_its_minimiser():
    adamw = CONTESTANTS["adamw"]
    assert adamw.defaults("torch")["weight_decay"] == 0.01
    assert like_with_like(P.get("booth"), adamw, CompareConfig()) == {"weight_decay": 0.0}
    assert like_with_like(P.get("logistic-breast-cancer"), adamw, CompareConfig()) == {}
    assert like_with_like(P.get("booth"), adamw, CompareConfig(like_with_like=False)) == {}
    assert like_with_like(P.get("booth"), CONTESTANTS["adam"], CompareConfig()) == {}
    outcome = compare(CompareConfig(optimizers=["adam", "adamw"], problems=["booth"], steps=30, seeds=1, lr=0.1))
    adam, adamw_row = outcome.rows()
    assert (
        adamw_row["adjusted"] == "weight_decay=0"
        and outcome.cells[("booth", "adamw")].result.hyperparams["weight_decay"] == 0.0
    )
    assert adamw_row["final_loss"] == adam["final_loss"]  # with decay off, AdamW is Adam
    kept = compare(
        CompareConfig(optimizers=["adamw"], problems=["booth"], steps=30, seeds=1, lr=0.1, like_with_like=False)
    )
    assert kept.rows()[0]["final_loss"] != adam["final_loss"]


def test_loss_axis_holds_every_final_loss_but_not_a_run_on_its_way_to_infinity():
    steps = np.arange(5)
    blows_up = np.array([100.0, 1e5, 1e300, np.nan, np.nan])
    succeeds = np.array([100.0, 5.0, 1e-2, 1e-3, 2.7e-4])
    curves = {"blows up": (steps, blows_up, blows_up, blows_up), "succeeds": (steps, succeeds, succeeds, succeeds)}
    low, high = _limits(curves, log=True)
    assert low < 2.7e-4 and 100.0 < high < 1e10


def test_the_loss_plot_of_a_diverging_comparison_warns_of_nothing(tmp_path):
    rosen = P.from_expression("(1-x)**2 + 100*(y-x**2)**2", (-1.0, 2.0))
    results = {
        name: run(rosen, CONTESTANTS[name], {"lr": 0.01}, 120, [0, 1, 2])
        for name in ("sgd", "momentum", "nesterov", "adam", "adamw")
    }
    assert results["sgd"].stopped[0] == "diverged" and results["momentum"].stopped == ["", "", ""]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss_plot(rosen, results, tmp_path / "loss.png")
    assert (tmp_path / "loss.png").stat().st_size > 1000


def test_a_path_is_drawn_only_up_to_where_it_leaves_the_picture():
    box = (-1.0, 1.0, -1.0, 1.0)
    pts = np.array([[0.0, 0.0], [0.5, 0.5], [2.5, 0.0], [1e9, 1e9], [np.nan, np.nan]])
    shown, left = visible_path(pts, box)
    assert left == 3 and shown.tolist() == pts[:3].tolist()
    inside = np.array([[0.0, 0.0], [0.1, 0.2]])
    assert visible_path(inside, box)[1] is None
