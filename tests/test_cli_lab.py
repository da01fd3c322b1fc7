"""The command line, run in-process: compare, fit-line, train, bench, list, describe, and the refusals."""

from __future__ import annotations

import csv
import sys
import types

import pytest
from PIL import Image
from typer.testing import CliRunner

from descend.cli import app

runner = CliRunner()
SMALL = ["--optimizers", "sgd,adam", "--problems", "saddle,logistic-breast-cancer", "--steps", "30", "--seeds", "2"]


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_compare_writes_tables_results_pictures_and_report(tmp_path):
    out = tmp_path / "run"
    result = invoke("compare", *SMALL, "--out", str(out), "--jobs", "1")
    assert result.exit_code == 0, result.output
    assert "Logistic regression on breast-cancer" in result.output and "test acc" in result.output
    names = sorted(p.name for p in out.iterdir())
    for expected in ("results.json", "results.csv", "report.html", "loss_saddle.png", "contour_saddle.png",
                     "paths_saddle.gif", "loss_logistic-breast-cancer.png"):
        assert expected in names
    report = (out / "report.html").read_text()
    for picture in out.glob("*.*"):
        if picture.suffix in (".png", ".gif"):
            with Image.open(picture) as image:
                image.verify()
            assert picture.name in report
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [(r["problem"], r["optimizer"]) for r in rows] == [
        ("saddle", "sgd"), ("saddle", "adam"), ("logistic-breast-cancer", "sgd"), ("logistic-breast-cancer", "adam")]


def test_compare_is_deterministic_given_the_seed(tmp_path):
    args = ["--optimizers", "momentum,rmsprop", "--problems", "noisy-quadratic", "--steps", "25", "--seeds", "2",
            "--no-plots", "--seed", "7"]
    for name in ("a", "b"):
        assert invoke("compare", *args, "--out", str(tmp_path / name)).exit_code == 0

    def table(name):
        return [{k: v for k, v in row.items() if k not in ("wall_time", "seconds_to_tol")}
                for row in csv.DictReader((tmp_path / name / "results.csv").open())]

    assert table("a") == table("b")


def test_compare_resume_skips_finished_runs(tmp_path):
    args = ["compare", "--optimizers", "sgd", "--problems", "booth", "--steps", "20", "--no-plots",
            "--out", str(tmp_path)]
    assert invoke(*args).exit_code == 0
    again = invoke(*args, "--resume")
    assert again.exit_code == 0 and "kept 1 runs" in again.output


def test_compare_with_a_users_expression_and_a_fixed_rate(tmp_path):
    result = invoke("compare", "--expr", "(1-x)**2 + 10*(y-x**2)**2", "--start", "-1,1", "--optimizers", "adam,sgd",
                    "--steps", "40", "--seeds", "1", "--lr", "0.01", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "contour_expr.png").exists()
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert {r["lr"] for r in rows} == {"0.01"} and {r["problem"] for r in rows} == {"expr"}


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--optimizers", "sgd,adamm"], "adamm"),
        (["--problems", "rosenbrok"], "rosenbrok"),
        (["--steps", "-5"], "greater than or equal to 1"),
        (["--steps", "0"], "greater than or equal to 1"),
        (["--seeds", "0"], "seeds"),
        (["--lr", "-1"], "lr"),
        (["--convention", "jax"], "jax"),
        (["--expr", "__import__('os').system('echo hi')"], "not allowed"),
        (["--expr", "x.__class__"], "attribute"),
        (["--expr", "x**99999"], "exponent"),
        (["--expr", "x+y", "--start", "1"], "start"),
        (["--start", "1,2"], "--start"),
    ],
)
def test_bad_arguments_exit_2_with_a_message_and_write_nothing(tmp_path, args, says):
    out = tmp_path / "never"
    result = invoke("compare", *args, "--out", str(out))
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert not out.exists()


def test_an_unwritable_output_folder_exits_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = invoke("compare", *SMALL, "--out", str(blocker / "below"))
    assert result.exit_code == 2 and "cannot be written" in result.output
    assert blocker.read_text() == "x"


def test_fit_line_draws_its_plot(tmp_path):
    target = tmp_path / "fit.png"
    result = invoke("fit-line", "--epochs", "5", "--plot", str(target))
    assert result.exit_code == 0, result.output
    with Image.open(target) as image:
        assert image.width > 400
    assert invoke("fit-line", "--plot", str(tmp_path / "fit.jpg")).exit_code == 2
    assert not (tmp_path / "fit.jpg").exists()


def test_train_reports_test_accuracy_or_says_why_it_cannot(monkeypatch):
    from descend.lab import train as train_module

    ok, _ = train_module.torch_status()
    result = invoke("train", "--dataset", "iris", "--model", "softmax", "--optimizers", "adam,nesterov",
                    "--epochs", "2")
    if ok:
        assert result.exit_code == 0, result.output
        assert "test accuracy" in result.output and "nesterov" in result.output
    else:
        assert result.exit_code == 2 and "descend.torch" in result.output
    monkeypatch.setattr(train_module, "torch_status", lambda: (False, "descend.torch cannot be imported (test)"))
    missing = invoke("train", "--epochs", "1")
    assert missing.exit_code == 2 and "needs torch and descend.torch" in missing.output
    assert invoke("train", "--model", "logistic", "--dataset", "wine").exit_code == 2
    assert invoke("train", "--dataset", "mnist").exit_code == 2


def test_bench_runs_descend_bench_or_says_it_is_unavailable(monkeypatch):
    calls = []
    fake = types.ModuleType("descend.bench")
    fake.main = lambda argv: calls.append(argv) or 0
    monkeypatch.setitem(sys.modules, "descend.bench", fake)
    monkeypatch.setattr(sys.modules["descend"], "bench", fake, raising=False)
    assert invoke("bench", "--quick").exit_code == 0
    assert calls == [["--quick"]]
    monkeypatch.setitem(sys.modules, "descend.bench", None)  # makes the import fail
    monkeypatch.delattr(sys.modules["descend"], "bench", raising=False)
    result = invoke("bench")
    assert result.exit_code == 2 and "not available" in result.output


def test_list_and_describe():
    listed = invoke("list")
    assert listed.exit_code == 0
    for word in ("nesterov", "amsgrad", "rosenbrock", "amsgrad-counterexample", "mlp-digits", "torch", "reference"):
        assert word in listed.output
    assert invoke("describe", "adam", "--convention", "keras").exit_code == 0
    assert invoke("describe", "adamm").exit_code == 2


@pytest.mark.parametrize("command", ["compare", "train", "bench", "fit-line", "list", "describe"])
def test_every_command_has_help_with_an_example(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0 and "Example" in result.output


def test_default_output_folder_and_resume_of_the_latest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["compare", "--optimizers", "adagrad", "--problems", "booth", "--steps", "15", "--seeds", "1", "--no-plots"]
    assert invoke(*args).exit_code == 0
    (folder,) = (tmp_path / "descend-runs").iterdir()
    assert (folder / "results.json").exists() and (folder / "runs" / "booth__adagrad.json").exists()
    again = invoke(*args, "--resume")
    assert again.exit_code == 0 and "kept 1 runs" in again.output
    assert len(list((tmp_path / "descend-runs").iterdir())) == 1
