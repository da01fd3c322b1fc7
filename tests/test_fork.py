"""The kernels after fork: a forked child (os.fork, multiprocessing's "fork" start method) of a parent whose steps
started the OpenMP pool steps on one thread and gives the parent's bits, and may ask for more threads again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import descend

pytestmark = pytest.mark.skipif(
    not descend.kernels.available()[0] or not hasattr(os, "fork"), reason="needs the compiled kernels and os.fork"
)

# Runs in its own process: a child that hangs must not hang pytest. Every wait has a deadline; a child that misses
# it is killed and the script says which step hung.
SCRIPT = r"""
import multiprocessing
import os
import pickle
import sys
import time

import numpy as np
import torch

import descend
import descend.torch as dt

N = 3 * 32768 + 5  # more than one chunk: the parent's steps run an OpenMP region
MODE, DEADLINE = sys.argv[1], float(sys.argv[2])
rng = np.random.default_rng(0)
np_params = [rng.standard_normal(N), rng.standard_normal(N).astype(np.float32)]
np_opt = descend.Adam(np_params, lr=0.01)
t_params = [torch.nn.Parameter(torch.from_numpy(rng.standard_normal(N).astype(np.float32)))]
t_opt = dt.Adam(t_params, lr=0.01)
grads = [[rng.standard_normal(N).astype(p.dtype) for p in np_params] for _ in range(4)]
t_grads = [torch.from_numpy(rng.standard_normal(N).astype(np.float32)) for _ in range(4)]


def step(k):
    # Step k of both optimizers; returns the bytes of every parameter afterwards.
    np_opt.step(grads[k])
    t_params[0].grad = t_grads[k]
    t_opt.step()
    return [p.tobytes() for p in np_params] + [t_params[0].detach().numpy().tobytes()]


def in_child():
    # What a child reports: its thread count, step 2 on it, then after set_num_threads(2), step 3 on two threads.
    threads = descend.kernels.get_num_threads()
    first = step(2)
    descend.set_num_threads(2)
    return threads, first, descend.kernels.get_num_threads(), step(3)


assert descend.kernels.get_num_threads() > 1, "the parent must run multi-threaded for this test"
step(0)
step(1)

if MODE == "os.fork":  # the child leaves its results in a file
    out = sys.argv[3]
    pid = os.fork()
    if pid == 0:
        with open(out, "wb") as f:
            pickle.dump(in_child(), f)
        os._exit(0)
    start = time.monotonic()
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() - start > DEADLINE:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            sys.exit("HUNG: the os.fork child's step did not return")
        time.sleep(0.01)
    with open(out, "rb") as f:
        results = [pickle.load(f)]
else:  # multiprocessing with the fork start method: two workers, each forked from this parent
    with multiprocessing.get_context("fork").Pool(2) as pool:
        pending = [pool.apply_async(in_child) for _ in range(2)]
        try:
            results = [p.get(timeout=DEADLINE) for p in pending]
        except multiprocessing.TimeoutError:
            pool.terminate()
            sys.exit("HUNG: a multiprocessing worker's step did not return")

expected = (step(2), step(3))
for threads, first, threads_after, second in results:
    name = MODE
    assert threads == 1, f"{name}: a forked child runs {threads} threads, expected 1 until set_num_threads"
    assert threads_after == 2, f"{name}: after set_num_threads(2) the child runs {threads_after} threads"
    assert first == expected[0], f"{name}: the child's one-thread step differs from the parent's"
    assert second == expected[1], f"{name}: the child's two-thread step differs from the parent's"
print("OK")
"""


@pytest.mark.parametrize("mode", ["os.fork", "pool"])
def test_a_forked_child_steps_on_one_thread_and_gives_the_parents_bits(tmp_path: Path, mode: str) -> None:
    script = tmp_path / "fork_child.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = dict(os.environ, OMP_NUM_THREADS="4", PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen(
        [sys.executable, str(script), mode, "20", str(tmp_path / "child.pickle")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,  # its own process group: a hung grandchild is killed with it
    )
    try:
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"the fork test script hung past 120 s:\n{out}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0 and out.strip().endswith("OK"), out
