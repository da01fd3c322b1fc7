"""Two threads stepping one optimizer: no crash, no lost update.

What a shared optimizer promises across threads: each step runs whole, one after the other (the engine holds a lock
per optimizer for the step), and the gradients a step reads stay alive until its kernel is done, even when another
thread assigns a new ``.grad`` meanwhile. The order in which the threads' steps run is the threads' own.
Each case runs in a child process, so that a crash fails the test instead of ending the run.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

TORCH_SCRIPT = """
import threading, torch, descend.torch as dt
N = 1 << 24
p = torch.nn.Parameter(torch.zeros(N))
opt = dt.Adam([p], lr=1e-3)
p.grad = torch.ones(N); opt.step(); opt.step()
def work():
    for _ in range(50):
        p.grad = torch.ones(N)
        opt.step()
threads = [threading.Thread(target=work) for _ in range(2)]
[t.start() for t in threads]; [t.join() for t in threads]
print(int(opt.state[p]["step"].item()), bool(torch.isfinite(p).all()))
"""

NUMPY_SCRIPT = """
import threading, numpy as np, descend
N = 1 << 20
w = np.zeros(N, np.float32)
opt = descend.Adam([w], lr=1e-3)
def work():
    for _ in range(200):
        opt.step([np.ones(N, np.float32)])
threads = [threading.Thread(target=work) for _ in range(2)]
[t.start() for t in threads]; [t.join() for t in threads]
print(opt.state[0]["step"], bool(np.isfinite(w).all()))
"""


def _run(script: str) -> str:
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, f"the child ended with {out.returncode}: {out.stderr[-2000:]}"
    return out.stdout.strip()


def test_two_threads_on_one_torch_optimizer_neither_crash_nor_lose_a_step() -> None:
    pytest.importorskip("torch")
    assert _run(TORCH_SCRIPT) == "102 True"


def test_two_threads_on_one_numpy_optimizer_lose_no_step() -> None:
    assert _run(NUMPY_SCRIPT) == "400 True"
