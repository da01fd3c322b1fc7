"""The command line, run in-process: compare, fit-line, train, bench, list, describe, and the refusals."""

from __future__ import annotations

import csv
import json
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
    for expected in (
        "results.json",
        "results.csv",
        "report.html",
        "loss_saddle.png",
        "contour_saddle.png",
        "paths_saddle.gif",
        "loss_logistic-breast-cancer.png",
    ):
        assert expected in names
    report = (out / "report.html").read_text()
    for picture in out.glob("*.*"):
        if picture.suffix in (".png", ".gif"):
            with Image.open(picture) as image:
                image.verify()
            assert picture.name in report
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [(r["problem"], r["optimizer"]) for r in rows] == [
        ("saddle", "sgd"),
        ("saddle", "adam"),
        ("logistic-breast-cancer", "sgd"),
        ("logistic-breast-cancer", "adam"),
    ]


def test_compare_is_deterministic_given_the_seed(tmp_path):
    args = [
        "--optimizers",
        "momentum,rmsprop",
        "--problems",
        "noisy-quadratic",
        "--steps",
        "25",
        "--seeds",
        "2",
        "--no-plots",
        "--seed",
        "7",
    ]
    for name in ("a", "b"):
        assert invoke("compare", *args, "--out", str(tmp_path / name)).exit_code == 0

    def table(name):
        return [
            {k: v for k, v in row.items() if k not in ("wall_time", "seconds_to_tol")}
            for row in csv.DictReader((tmp_path / name / "results.csv").open())
        ]

    assert table("a") == table("b")


def test_compare_resume_skips_finished_runs(tmp_path):
    args = [
        "compare",
        "--optimizers",
        "sgd",
        "--problems",
        "booth",
        "--steps",
        "20",
        "--no-plots",
        "--out",
        str(tmp_path),
    ]
    assert invoke(*args).exit_code == 0
    again = invoke(*args, "--resume")
    assert again.exit_code == 0 and "kept 1 runs" in again.output


def test_compare_with_a_users_expression_and_a_fixed_rate(tmp_path):
    result = invoke(
        "compare",
        "--expr",
        "(1-x)**2 + 10*(y-x**2)**2",
        "--start",
        "-1,1",
        "--optimizers",
        "adam,sgd",
        "--steps",
        "40",
        "--seeds",
        "1",
        "--lr",
        "0.01",
        "--out",
        str(tmp_path),
    )
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


@pytest.mark.parametrize("columns", ["40", "200"])
def test_an_output_folder_below_a_file_exits_2_naming_the_file_in_one_line(tmp_path, monkeypatch, columns):
    # a long path, as pytest's --basetemp=/tmp/pytest-of-root/pytest-0/some/long/path gives: output that is not a
    # terminal is never hard-wrapped, whatever the terminal width says
    monkeypatch.setenv("COLUMNS", columns)
    deep = tmp_path.joinpath(*[f"some-long-folder-name-{i}" for i in range(8)])
    deep.mkdir(parents=True)
    blocker = deep / "file"
    blocker.write_text("x")
    result = invoke("compare", *SMALL, "--out", str(blocker / "below"))
    assert result.exit_code == 2
    expected = f"cannot be written: {str(blocker)!r} is in the way, and it is a file, not a folder"
    assert expected in result.output.replace("\n", " ") and expected in result.output.splitlines()[-1]
    assert blocker.read_text() == "x"


def test_output_that_is_not_a_terminal_keeps_long_lines_whole(monkeypatch):
    monkeypatch.setenv("COLUMNS", "30")
    result = invoke("describe", "adam")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert any(line.startswith("hyperparameters: lr=0.001, betas=(0.9, 0.999), eps=1e-08") for line in lines)


def test_reusing_an_output_folder_needs_resume(tmp_path):
    args = [
        "compare",
        "--optimizers",
        "sgd",
        "--problems",
        "booth",
        "--steps",
        "10",
        "--seeds",
        "1",
        "--out",
        str(tmp_path),
    ]
    assert invoke(*args).exit_code == 0
    before = sorted(p.name for p in tmp_path.iterdir())
    again = invoke(*args)
    assert again.exit_code == 2 and "already holds an earlier comparison" in again.output and "--resume" in again.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert invoke(*args, "--resume").exit_code == 0


def test_a_fixed_rate_is_recorded_as_no_tuning(tmp_path):
    args = ["compare", "--optimizers", "sgd", "--problems", "booth", "--steps", "10", "--seeds", "1", "--no-plots"]
    assert invoke(*args, "--lr", "0.01", "--out", str(tmp_path / "fixed")).exit_code == 0
    assert json.loads((tmp_path / "fixed" / "results.json").read_text())["config"]["tune"] is False
    assert invoke(*args, "--out", str(tmp_path / "tuned")).exit_code == 0
    assert json.loads((tmp_path / "tuned" / "results.json").read_text())["config"]["tune"] is True


def test_the_verdict_comes_first_and_an_expression_says_where_its_runs_start(tmp_path):
    result = invoke(
        "compare",
        "--expr",
        "x**2 + y**2",
        "--start",
        "1,2",
        "--problems",
        "booth",
        "--optimizers",
        "sgd,adam",
        "--steps",
        "20",
        "--seeds",
        "2",
        "--no-plots",
        "--out",
        str(tmp_path),
    )
    assert result.exit_code == 0, result.output
    assert "your function runs beside booth; run 1 starts at 1,2, runs 2 to 2 at points around it" in result.output
    assert result.output.index("Verdict:") < result.output.index("Booth")
    data = json.loads((tmp_path / "results.json").read_text())
    assert [r["optimizer"] for r in data["verdict"]["overall"]] and set(data["verdict"]["ranks"]) == {"booth", "expr"}


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--expr", "x + " + "9" * 400], "too large for a float"),
        (["--steps", str(10**12)], "steps must be at most 1,000,000"),
        (["--seeds", str(10**9)], "seeds must be at most 1,000"),
        (["--steps", "1000000", "--seeds", "500"], "GiB is allowed"),
        (["--expr", "log(x) + y", "--start", "-1,0"], "outside the function's domain"),
    ],
)
def test_huge_or_undefined_inputs_exit_2_with_a_message(tmp_path, args, says):
    result = invoke("compare", *args, "--out", str(tmp_path / "never"))
    assert result.exit_code == 2 and result.exception is None or isinstance(result.exception, SystemExit)
    assert says in result.output
    assert not (tmp_path / "never").exists()


def _edit_saved_run(folder, edit):
    path = folder / "runs" / "booth__sgd.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["result"].__setitem__("loss", "lots"),
        lambda d: d["result"].__setitem__("seeds", [0, 1, 2, 3]),
        lambda d: d["result"].__setitem__("hyperparams", [1, 2]),
        lambda d: d.__setitem__("trials", [{"lr": "fast"}]),
        lambda d: d["result"].pop("final_loss"),
        lambda d: d["result"].__setitem__("path", [[1.0]]),
    ],
    ids=["loss text", "seeds", "hyperparams list", "trial lr", "missing key", "path shape"],
)
def test_resume_refuses_edited_run_files_and_keeps_them(tmp_path, edit):
    args = [
        "compare",
        "--optimizers",
        "sgd",
        "--problems",
        "booth",
        "--steps",
        "10",
        "--seeds",
        "1",
        "--no-plots",
        "--out",
        str(tmp_path),
    ]
    assert invoke(*args).exit_code == 0
    path = _edit_saved_run(tmp_path, edit)
    edited = path.read_text()
    result = invoke(*args, "--resume")
    assert result.exit_code == 2 and "--resume cannot read the saved run" in result.output, result.output
    assert str(path) in result.output and path.read_text() == edited


def test_resume_refuses_a_run_file_that_is_not_a_regular_file(tmp_path):
    args = [
        "compare",
        "--optimizers",
        "sgd",
        "--problems",
        "booth",
        "--steps",
        "10",
        "--seeds",
        "1",
        "--no-plots",
        "--out",
        str(tmp_path),
    ]
    assert invoke(*args).exit_code == 0
    path = tmp_path / "runs" / "booth__sgd.json"
    path.unlink()
    path.symlink_to("/dev/zero")
    result = invoke(*args, "--resume")
    assert result.exit_code == 2 and "is not a regular file" in result.output
    assert path.is_symlink()


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
    result = invoke(
        "train", "--dataset", "iris", "--model", "softmax", "--optimizers", "adam,nesterov", "--epochs", "2"
    )
    if ok:
        assert result.exit_code == 0, result.output
        assert "test accuracy" in result.output and "nesterov" in result.output
    else:
        assert result.exit_code == 2 and "descend.torch" in result.output
    monkeypatch.setattr(train_module, "torch_status", lambda: (False, "descend.torch cannot be imported (test)"))
    missing = invoke("train", "--epochs", "1")
    assert missing.exit_code == 2 and "needs torch and descend.torch" in missing.output
    assert "pip install torch==2.13.0" in missing.output
    assert invoke("train", "--model", "logistic", "--dataset", "wine").exit_code == 2
    assert invoke("train", "--dataset", "mnist").exit_code == 2


def test_bench_runs_descend_bench_or_says_it_is_unavailable(monkeypatch):
    calls = []
    fake = types.ModuleType("descend.bench")
    fake.main = lambda argv: calls.append(argv) or 0
    monkeypatch.setitem(sys.modules, "descend.bench", fake)
    monkeypatch.setattr(sys.modules["descend"], "bench", fake, raising=False)
    assert invoke("bench", "--quick").exit_code == 0
    assert invoke("bench").exit_code == 0  # no options: the quick run
    assert invoke("bench", "--all").exit_code == 0
    assert calls == [["--quick"], ["--quick"], []]
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


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the worker processes from /proc")
def test_sigterm_stops_the_workers_and_leaves_no_debris(tmp_path):
    import os
    import signal
    import subprocess
    import time
    from pathlib import Path

    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "descend.cli",
            "compare",
            "--problems",
            "rosenbrock,beale",
            "--optimizers",
            "sgd,adam,momentum",
            "--steps",
            "50000",
            "--jobs",
            "2",
            "--no-plots",
            "--out",
            str(out),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    children: list[str] = []
    for _ in range(600):  # until both workers run
        tasks = Path(f"/proc/{proc.pid}/task")
        children = [c for t in tasks.glob("*") for c in (t / "children").read_text().split()] if tasks.exists() else []
        if len(children) >= 2 or proc.poll() is not None:
            break
        time.sleep(0.05)
    assert len(children) >= 2, "the workers never started"
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    assert "interrupted" in output and "Traceback" not in output
    for child in children:
        assert not Path(f"/proc/{child}").exists() or "zombie" in Path(f"/proc/{child}/status").read_text()
    assert not list(out.rglob("*.tmp"))


def test_bench_quick_prints_a_header_progress_and_rows(capsys):
    from descend import bench

    assert bench.main(["--quick", "--contestants", "naive", "--repeats", "1"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    header = lines.index(bench.table([]).splitlines()[0])
    rows = [i for i, line in enumerate(lines) if line.startswith("| mlp | ")]
    assert [lines[i].split(" | ")[1] for i in rows] == ["sgd", "adam"] and header < rows[0]
    assert "[1/2] mlp sgd" in captured.err and "[2/2] mlp adam" in captured.err


def test_compare_help_names_every_default_optimizer() -> None:
    from descend.lab.contestants import DEFAULT_OPTIMIZERS

    result = CliRunner().invoke(app, ["compare", "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0
    said = " ".join(result.output.split())
    text = said[said.index("With no arguments:") : said.index("They run on")]
    named = {w.strip(",.()") for w in text.replace(" and ", " ").split()}
    assert set(DEFAULT_OPTIMIZERS) <= named, set(DEFAULT_OPTIMIZERS) - named
