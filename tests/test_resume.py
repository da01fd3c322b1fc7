"""Resuming is exact, writing a checkpoint is atomic, and loading one never runs code.

A child process trains every algorithm for some steps, saves a checkpoint of each (NumPy front: ``descend.save``;
torch front: ``torch.save`` of the model's and the optimizer's state_dicts), then blocks until it is killed with
SIGKILL. This process loads the checkpoints, goes on, and must end with the bits of a run that never stopped.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import descend
from descend.algorithms import (
    ELEMENTWISE,  # LBFGS resumes through state_dicts (tests/test_torch_lbfgs.py, test_lbfgs.py)
)
from tests.shapes import matrices_only, shape_for, torch_grad

ROOT = Path(__file__).resolve().parents[1]
MID, END = 7, 15

# One setting per algorithm that fills every state slot it can keep.
SETTINGS: dict[str, dict[str, Any]] = {
    "sgd": {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
    "momentum": {"lr": 0.05, "beta": 0.9, "nesterov": True},
    "rmsprop": {"lr": 0.01, "momentum": 0.5, "centered": True},
    "adagrad": {"lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.1},
    "adadelta": {"lr": 0.5, "weight_decay": 0.01},
    "adam": {"lr": 0.05, "amsgrad": True, "weight_decay": 0.01},
    "adamw": {"lr": 0.05, "amsgrad": True},
    "adamax": {"lr": 0.05},
    "nadam": {"lr": 0.05, "weight_decay": 0.01},
    "radam": {"lr": 0.05, "decoupled_weight_decay": True, "weight_decay": 0.1},
}


def settings(name: str) -> dict[str, Any]:
    """The setting above, or for an algorithm not listed, its own hyperparameters that keep every state slot."""
    return SETTINGS.get(name) or {"lr": 0.05, **descend.REGISTRY[name].full_state}


# -- the NumPy front ---------------------------------------------------------------------------------------------------


def numpy_problem(name: str) -> tuple[list[np.ndarray], Any]:
    rng = np.random.default_rng(5)
    params = [
        rng.standard_normal((6, 5)),
        rng.standard_normal(shape_for(name, (5,))).astype(np.float32),
        np.asarray(rng.standard_normal(shape_for(name, ()))),
    ]
    return params, descend.OPTIMIZERS[name](params, **settings(name))


def numpy_grads(step: int, params: list[np.ndarray]) -> list[np.ndarray]:
    """Gradients of a quadratic plus noise: they depend on the parameters, so a run that drifts shows it."""
    rng = np.random.default_rng(1000 + step)
    return [np.asarray(0.5 * p + rng.standard_normal(p.shape), dtype=p.dtype) for p in params]


def numpy_child(folder: str, steps: int) -> None:
    """Run in the child: train every algorithm, save each, say so, then block until killed."""
    for name in ELEMENTWISE:
        params, opt = numpy_problem(name)
        for step in range(steps):
            opt.step(numpy_grads(step, params))
        descend.save(Path(folder) / f"{name}.npz", opt, step=steps)
    print("saved", flush=True)
    sys.stdin.read()


# -- the torch front ---------------------------------------------------------------------------------------------------


def torch_problem(name: str) -> tuple[Any, Any]:
    import torch

    import descend.torch as dt

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    params = [p for p in model.parameters() if p.ndim == 2 or not matrices_only(name)]
    return model, dt.OPTIMIZERS[name](params, **settings(name))


def torch_grads(step: int, model: Any, cls: type | None = None) -> None:
    """Elementwise gradients (no matrix products, whose sums could be ordered differently in another process)."""
    import torch

    gen = torch.Generator().manual_seed(1000 + step)
    for p in model.parameters():
        grad = 0.5 * p.detach() + torch.randn(p.shape, generator=gen)
        p.grad = grad if cls is None else torch_grad(cls, grad)  # (sparse for SparseAdam's class)


def torch_child(folder: str, steps: int) -> None:
    import torch

    for name in ELEMENTWISE:
        model, opt = torch_problem(name)
        for step in range(steps):
            torch_grads(step, model, type(opt))
            opt.step()
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": steps}, Path(folder) / f"{name}.pt")
    print("saved", flush=True)
    sys.stdin.read()


# -- running a child and killing it ------------------------------------------------------------------------------------


def start(code: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the child ended on its own: {proc.returncode}"


def run_and_kill(target: str, folder: Path) -> None:
    proc = start(f"from tests.test_resume import {target}; {target}({str(folder)!r}, {MID})")
    try:
        line = proc.stdout.readline()
        if line.strip() != "saved":
            proc.kill()
            raise AssertionError(f"the child did not save: {line!r} {proc.communicate()[1]}")
        kill(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()
        proc.stdout.close()
        proc.stderr.close()


# -- resume is exact ---------------------------------------------------------------------------------------------------


def test_numpy_resume_after_sigkill_is_bit_exact(tmp_path: Path) -> None:
    run_and_kill("numpy_child", tmp_path)
    for name in ELEMENTWISE:
        params, opt = numpy_problem(name)
        extra = descend.load(tmp_path / f"{name}.npz", opt)
        assert extra == {"step": MID}
        for step in range(MID, END):
            opt.step(numpy_grads(step, params))

        expected, straight = numpy_problem(name)
        for step in range(END):
            straight.step(numpy_grads(step, expected))
        for i, (p, q) in enumerate(zip(params, expected)):
            assert p.dtype == q.dtype and p.tobytes() == q.tobytes(), f"{name}: param {i} differs after resuming"
        for i, entry in straight.state.items():
            for key, value in entry.items():
                assert np.asarray(opt.state[i][key]).tobytes() == np.asarray(value).tobytes(), f"{name}: {key}"


def test_torch_resume_after_sigkill_is_bit_exact(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    run_and_kill("torch_child", tmp_path)
    for name in ELEMENTWISE:
        model, opt = torch_problem(name)
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()  # the checkpoint, not the seed, must supply the weights
        saved = torch.load(tmp_path / f"{name}.pt", weights_only=True)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        for step in range(saved["step"], END):
            torch_grads(step, model, type(opt))
            opt.step()

        expected, straight = torch_problem(name)
        for step in range(END):
            torch_grads(step, expected, type(straight))
            straight.step()
        for (key, p), q in zip(model.state_dict().items(), expected.state_dict().values()):
            assert torch.equal(p, q), f"{name}: {key} differs after resuming"
        for p, q in zip(model.parameters(), expected.parameters()):
            mine, theirs = opt.state[p], straight.state[q]
            assert list(mine) == list(theirs), name
            for key in theirs:
                if not isinstance(theirs[key], torch.Tensor):  # SparseAdam's step is an int, as torch's
                    assert type(mine[key]) is type(theirs[key]) and mine[key] == theirs[key], f"{name}: {key}"
                    continue
                assert mine[key].dtype == theirs[key].dtype and torch.equal(mine[key], theirs[key]), f"{name}: {key}"


# -- writing is atomic -------------------------------------------------------------------------------------------------

SAVER = """
import sys
import numpy as np
import descend

path, start = sys.argv[1], int(sys.argv[2])
params = [np.zeros(1_500_000), np.zeros((300, 7), np.float32)]
opt = descend.Adam(params)
opt.step([np.zeros_like(p) for p in params])
for i in range(start, start + 1_000_000):
    for p in params:
        p[...] = i
    for entry in opt.state.values():
        entry["step"] = i
        for key in ("exp_avg", "exp_avg_sq"):
            entry[key][...] = i
    descend.save(path, opt, version=i)
    print(i, flush=True)
"""


def test_a_kill_during_save_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    """A child saves a 12 MB checkpoint over and over, each time with every value set to the save's number; killed
    at random moments, it leaves a file that loads and holds one save whole, never a mix or a torn file."""
    path = tmp_path / "ckpt.npz"
    rng = random.Random(0)
    during_a_save = 0
    for round_ in range(12):
        proc = subprocess.Popen(
            [sys.executable, "-c", SAVER, str(path), str(100 * round_)], stdout=subprocess.PIPE, text=True
        )
        try:
            first = proc.stdout.readline()
            assert first.strip() == str(100 * round_), first
            for _ in range(rng.randint(0, 2)):
                proc.stdout.readline()
            time.sleep(rng.uniform(0.0, 0.1))  # a random moment, most likely inside the next save
            kill(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        leftovers = [p for p in tmp_path.iterdir() if p.name != path.name]
        during_a_save += any(p.name.startswith(f".{path.name}.") for p in leftovers)
        for p in leftovers:
            p.unlink()  # a kill cannot clean up after itself; what matters is that the checkpoint is whole
        params = [np.full(1_500_000, -1.0), np.full((300, 7), -1.0, np.float32)]
        opt = descend.Adam(params)
        extra = descend.load(path, opt)
        i = extra["version"]
        assert 100 * round_ <= i < 100 * round_ + 1_000_000
        assert all(np.all(p == i) for p in params), "the parameters come from more than one save"
        for entry in opt.state.values():
            assert entry["step"] == i and np.all(entry["exp_avg"] == i) and np.all(entry["exp_avg_sq"] == i)
        if during_a_save >= 3:
            break
    assert during_a_save, "no kill landed during a save, so atomicity was not exercised"


# -- loading never runs code -------------------------------------------------------------------------------------------


class _Payload:
    """Unpickling this writes a file: proof that loading ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def test_a_pickled_object_in_a_checkpoint_is_refused_unrun(tmp_path: Path) -> None:
    params, opt = numpy_problem("adam")
    opt.step(numpy_grads(0, params))
    good = descend.save(tmp_path / "good.npz", opt)
    with np.load(good, allow_pickle=False) as data:
        entries = {k: data[k] for k in data.files}
    marker = tmp_path / "ran"
    for key in ("param/0", "state/0/exp_avg", "meta"):
        evil = dict(entries)
        evil[key] = np.array([_Payload(marker)], dtype=object)
        path = tmp_path / "evil.npz"
        np.savez(path, **evil)
        before = [p.copy() for p in params]
        with pytest.raises(ValueError, match="Object arrays cannot be loaded when allow_pickle=False"):
            descend.load(path, opt)
        assert not marker.exists(), f"loading ran the pickled code in {key!r}"
        assert all(p.tobytes() == q.tobytes() for p, q in zip(params, before))
    with np.load(path, allow_pickle=True) as data:  # the file does carry code: a trusting load runs it
        data["meta"]
    assert marker.read_text() == "ran"


def test_a_pickled_callable_in_a_torch_checkpoint_is_refused_unrun(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    model, opt = torch_problem("adam")
    torch_grads(0, model)
    opt.step()
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "hook": _Payload(marker)}, path)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        torch.load(path, weights_only=True)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the file does carry code: a trusting load runs it
    assert marker.read_text() == "ran"


# -- a file that does not fit is rejected with a clear message ---------------------------------------------------------


def test_a_numpy_checkpoint_of_another_model_is_refused(tmp_path: Path) -> None:
    other = [np.zeros((5, 6)), np.zeros(5, np.float32), np.zeros(())]
    descend.save(tmp_path / "other.npz", descend.Adam(other, **SETTINGS["adam"]))
    params, opt = numpy_problem("adam")
    opt.step(numpy_grads(0, params))
    before = [p.copy() for p in params], json.dumps({k: int(v["step"]) for k, v in opt.state.items()})
    with pytest.raises(
        ValueError,
        match=r"parameter 0 in .*other.npz has shape \(5, 6\) and dtype float64; the "
        r"optimizer's has shape \(6, 5\)",
    ):
        descend.load(tmp_path / "other.npz", opt)
    assert all(p.tobytes() == q.tobytes() for p, q in zip(params, before[0]))
    assert json.dumps({k: int(v["step"]) for k, v in opt.state.items()}) == before[1]


def test_a_torch_checkpoint_of_another_model_is_refused(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    import descend.torch as dt

    wide = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2))
    wide_opt = dt.Adam(wide.parameters(), **SETTINGS["adam"])
    torch_grads(0, wide)
    wide_opt.step()
    torch.save({"model": wide.state_dict(), "opt": wide_opt.state_dict()}, tmp_path / "wide.pt")
    model, opt = torch_problem("adam")
    torch_grads(0, model)
    opt.step()
    saved = torch.load(tmp_path / "wide.pt", weights_only=True)
    state_before = {k: v.clone() for k, v in opt.state[next(model.parameters())].items()}
    with pytest.raises(RuntimeError, match=r"size mismatch for 0.weight"):
        model.load_state_dict(saved["model"])  # torch's own check (it copies the tensors that fit)
    with pytest.raises(
        ValueError,
        match=r"state 'exp_avg' for param 0 has shape \(6, 5\), but the parameter has "
        r"shape \(4, 5\)",
    ):
        opt.load_state_dict(saved["opt"])
    after = opt.state[next(model.parameters())]
    assert all(torch.equal(after[k], v) for k, v in state_before.items())


def test_a_kill_leaves_no_file_in_place_of_a_first_checkpoint(tmp_path: Path) -> None:
    """Killed during its very first save, a run leaves no checkpoint at all (only a temporary file), so a resume
    finds nothing rather than a torn file."""
    path = tmp_path / "first.npz"
    code = (
        "import sys, numpy as np, descend\n"
        "import descend.checkpoint as c\n"
        "real = np.savez\n"
        "def slow(f, **arrays):\n"
        "    f.write(b'PK partial')\n"
        "    f.flush()\n"
        "    print('writing', flush=True)\n"
        "    sys.stdin.read()\n"
        "c.np.savez = slow\n"
        f"descend.save({str(path)!r}, descend.Adam([np.zeros(3)]))\n"
    )
    proc = start(code)
    try:
        assert proc.stdout.readline().strip() == "writing"
        kill(proc)
    finally:
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()
    assert not path.exists()
    assert [p.name.startswith(".first.npz.") for p in tmp_path.iterdir()] == [True]
    assert os.path.getsize(next(tmp_path.iterdir())) == len(b"PK partial")
