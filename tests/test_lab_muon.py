"""Muon with AdamW in the lab: where it runs, that each run steps on its own, the reports with its blank cells, and
the benchmark's Muon case."""

from __future__ import annotations

import numpy as np
import pytest

from descend import bench
from descend.lab import problems
from descend.lab.compare import CompareConfig, compare, runs_on
from descend.lab.contestants import DEFAULT_OPTIMIZERS, get_contestant, param_shapes
from descend.lab.report import write_pictures, write_report
from descend.lab.runner import run, run_many
from descend.lab.tables import verdict_cells
from descend.lab.verdict import verdict


def test_it_runs_where_a_problem_has_a_matrix() -> None:
    assert "muon-adamw" in DEFAULT_OPTIMIZERS
    assert param_shapes(problems.get("mlp-digits")) == [(64, 32), (32,), (32, 10), (10,)]
    assert runs_on(problems.get("softmax-iris"), "muon-adamw") and runs_on(problems.get("mlp-digits"), "muon-adamw")
    assert not runs_on(problems.get("rosenbrock"), "muon-adamw") and not runs_on(problems.get("line-fit"), "muon-adamw")
    assert not runs_on(problems.get("softmax-iris"), "muon")  # Muon alone: the biases are not matrices
    assert runs_on(problems.get("rosenbrock"), "adam")
    with pytest.raises(ValueError, match=r"muon runs on none of the problems \(softmax-iris\)"):
        CompareConfig(optimizers=["muon"], problems=["softmax-iris"]).checked()


def test_the_optimizer_it_builds() -> None:
    contestant = get_contestant("muon-adamw")
    p = problems.get("mlp-digits")
    result = run(p, contestant, {"lr": 0.01}, steps=3, seeds=[0, 1])
    hp = result.hyperparams
    assert hp["lr"] == hp["adamw_lr"] == 0.01 and hp["adjust_lr_fn"] == "match_rms_adamw"
    assert "momentum" in hp and "adamw_betas" in hp and "use_muon" not in hp


@pytest.mark.parametrize("name", ["mlp-digits", "torch-softmax-wine"])
def test_each_run_steps_on_its_own(name: str) -> None:
    """Muon reads a run's whole matrix, so the lab steps each run's slice apart: the runs of a batch are the runs
    made one by one, and two settings side by side are each made alone. Bit for bit with NumPy; torch's batched
    matrix products (the problem's loss, over the runs at once) may round the last bit differently by batch size."""
    p, contestant = problems.get(name), get_contestant("muon-adamw")
    both = run_many(p, contestant, [{"lr": 0.01}, {"lr": 0.05}], steps=20, seeds=[0, 1])
    alone = [run(p, contestant, {"lr": lr}, steps=20, seeds=[seed]) for lr in (0.01, 0.05) for seed in (0, 1)]
    for k, result in enumerate(both):
        for i in range(2):
            expected = alone[2 * k + i].loss[:, 0]
            if p.framework == "numpy":
                assert np.array_equal(result.loss[:, i], expected)
            else:
                np.testing.assert_allclose(result.loss[:, i], expected, rtol=1e-12, atol=0)
    assert both[0].final_loss.mean() < both[0].loss[0].mean()


def test_a_comparison_leaves_the_cells_where_it_does_not_run_blank(tmp_path: object) -> None:
    config = CompareConfig(
        optimizers=["adam", "muon-adamw"], problems=["saddle", "softmax-iris"], steps=20, seeds=2, tune=False
    )
    outcome = compare(config, tmp_path)
    assert set(outcome.cells) == {("saddle", "adam"), ("softmax-iris", "adam"), ("softmax-iris", "muon-adamw")}
    assert outcome.ran("saddle") == ["adam"] and outcome.ran("softmax-iris") == ["adam", "muon-adamw"]
    rows = [(r["problem"], r["optimizer"]) for r in outcome.rows()]
    assert rows == [("saddle", "adam"), ("softmax-iris", "adam"), ("softmax-iris", "muon-adamw")]
    result = verdict(outcome)
    assert set(result.rank) == set(outcome.cells)
    assert result.mean_rank["muon-adamw"] == result.rank[("softmax-iris", "muon-adamw")]
    headers, cells = verdict_cells(outcome, result)
    muon_line = next(line for line in cells if line[0] == "muon-adamw")
    adam_line = next(line for line in cells if line[0] == "adam")
    assert muon_line[headers.index("saddle")] == "— (not run)"
    assert muon_line[headers.index("mean rank")].endswith(" (1 of 2)")  # averaged over the one problem it ran on
    assert "of" not in adam_line[headers.index("mean rank")]
    pictures = write_pictures(outcome, tmp_path)
    report = write_report(outcome, tmp_path, pictures).read_text(encoding="utf-8")
    assert "muon-adamw" in report and (tmp_path / "results.csv").read_text().count("muon-adamw") == 1


def test_the_benchmark_runs_muon_on_matrices_only(monkeypatch: pytest.MonkeyPatch) -> None:
    assert bench.takes("muon", "gpt2-small-hidden") and not bench.takes("muon", "mlp") and bench.takes("adam", "mlp")
    assert len(bench.CASES["gpt2-small-hidden"]()) == 48
    monkeypatch.setitem(bench.CASES, "tiny", lambda: [(8, 12), (12, 8)])
    rows = bench.run("tiny", "muon", repeats=1)
    labels = {r["contestant"] for r in rows}
    assert {"descend (NumPy)", "descend.torch", "torch.optim"} <= labels and "roofline" not in labels
    assert all(r["GB/s"] is None and r["ms"] > 0 for r in rows)
    assert "| tiny | muon | torch.optim |" in bench.table(rows)
