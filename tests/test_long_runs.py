"""Long runs and threads.

100,000 Adam steps on a small model keep the resident memory and Python's traced allocations flat (the second half of
the run holds no more than the first) and end with the same bits on the fused and the reference backends; a short
run of the same checks runs in CI. Two Python threads stepping two optimizers at once through the kernels (which
release the GIL) give the bits of running them one after the other, on both fronts.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from typing import Any

import numpy as np
import pytest

import descend
from descend import kernels

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")

RUN = """
import gc, hashlib, json, os, sys, tracemalloc
import numpy as np
import descend

backend, steps = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
params = [rng.standard_normal((8, 4)).astype(np.float32), rng.standard_normal(4).astype(np.float32),
          rng.standard_normal(16)]
noise = [[rng.standard_normal(p.shape).astype(p.dtype) for p in params] for _ in range(16)]
opt = descend.Adam(params, lr=1e-3, amsgrad=True, weight_decay=0.01, backend=backend)
page = os.sysconf("SC_PAGE_SIZE")

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page

window = max(steps // 20, 1)
starts = (steps // 4, 3 * steps // 4)  # one window of traced allocations in each half, after warming up
rss_samples, retained = [], []
for s in range(steps):
    if s % window == 0:
        rss_samples.append(rss())
    if s in starts:
        gc.collect()
        tracemalloc.start()
    opt.step([p * 0.5 + n for p, n in zip(params, noise[s % 16])])
    if s - window + 1 in starts:
        gc.collect()  # garbage cycles are not leaks
        retained.append(tracemalloc.get_traced_memory()[0])  # allocated in the window and still alive
        tracemalloc.stop()
rss_samples.append(rss())
digest = hashlib.sha256()
for p in params:
    digest.update(p.tobytes())
for entry in opt.state.values():
    for key in sorted(entry):
        digest.update(np.asarray(entry[key]).tobytes())
print(json.dumps({"rss": rss_samples, "retained": retained, "digest": digest.hexdigest(),
                  "step": opt.state[0]["step"], "moved": float(np.abs(params[2] - rng.standard_normal(1)).sum())}))
"""


def run(backend: str, steps: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", RUN, backend, str(steps)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def check_flat(result: dict[str, Any], what: str) -> None:
    rss = result["rss"]
    half = len(rss) // 2
    growth = max(rss[half:]) - max(rss[:half])
    assert growth <= 1024 * 1024, f"{what}: resident memory grew by {growth} bytes in the second half: {rss}"
    first, second = result["retained"]
    # A window keeps the few objects that live across steps (the step count, a few kilobytes); a leak of a few bytes
    # per step over the thousands of steps of a window would exceed this.
    assert first <= 32 * 1024 and second <= first + 8 * 1024, f"{what}: allocations kept alive: {first}, {second}"


def long_run(steps: int) -> None:
    results = {backend: run(backend, steps) for backend in ("fused", "reference")}
    for backend, result in results.items():
        assert result["step"] == steps
        check_flat(result, backend)
    assert results["fused"]["digest"] == results["reference"]["digest"], "fused and reference runs ended apart"


@pytest.mark.skipif(not kernels.available()[0], reason=kernels.available()[1])
def test_a_short_run_is_flat_and_identical_on_both_backends() -> None:
    long_run(3_000)


@pytest.mark.slow
@pytest.mark.skipif(not kernels.available()[0], reason=kernels.available()[1])
def test_100_000_adam_steps_are_flat_and_identical_on_both_backends() -> None:
    long_run(100_000)


def test_a_leak_would_show() -> None:
    """The checks see a leak: the same run keeping a small array alive every step fails them."""
    script = RUN.replace("opt.step([", "kept.append(np.zeros(64)); opt.step([").replace(
        "rss_samples, retained = [], []", "rss_samples, retained, kept = [], [], []"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, "reference", "2000"], capture_output=True, text=True, check=True
    )
    with pytest.raises(AssertionError, match="allocations kept alive|resident memory grew"):
        check_flat(json.loads(out.stdout.strip().splitlines()[-1]), "leaking")


# -- two threads at once -----------------------------------------------------------------------------------------------


def _numpy_job(seed: int, name: str, kwargs: dict[str, Any]) -> Any:
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(70_000).astype(np.float32), rng.standard_normal((100, 701)), np.zeros(7)]
    grads = [[rng.standard_normal(p.shape).astype(p.dtype) for p in params] for _ in range(3)]
    opt = descend.OPTIMIZERS[name](params, backend="fused", **kwargs)

    def step(i: int) -> None:
        opt.step(grads[i % 3])

    return params, opt, step


def _torch_job(seed: int, name: str, kwargs: dict[str, Any]) -> Any:
    torch = pytest.importorskip("torch")
    import descend.torch as dt

    gen = torch.Generator().manual_seed(seed)
    params = [
        torch.nn.Parameter(torch.randn(70_000, generator=gen)),
        torch.nn.Parameter(torch.randn(100, 701, generator=gen, dtype=torch.float64)),
    ]
    grads = [[torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params] for _ in range(3)]
    opt = dt.OPTIMIZERS[name](params, backend="auto", **kwargs)

    def step(i: int) -> None:
        for p, g in zip(params, grads[i % 3]):
            p.grad = g
        opt.step()

    return [p.detach().numpy() for p in params], opt, step


JOBS = [("adam", {"amsgrad": True, "weight_decay": 0.01}), ("rmsprop", {"centered": True, "momentum": 0.9})]


def _bits(arrays: list[np.ndarray]) -> list[bytes]:
    return [a.tobytes() for a in arrays]


@pytest.mark.skipif(not kernels.available()[0], reason=kernels.available()[1])
@pytest.mark.parametrize("front", ["numpy", "torch"])
def test_two_threads_give_the_bits_of_one_after_the_other(front: str) -> None:
    make = _numpy_job if front == "numpy" else _torch_job
    steps = 12
    alone = []
    for seed, (name, kwargs) in enumerate(JOBS):
        params, _, step = make(seed, name, kwargs)
        for i in range(steps):
            step(i)
        alone.append(_bits(params))

    jobs = [make(seed, name, kwargs) for seed, (name, kwargs) in enumerate(JOBS)]
    barrier = threading.Barrier(len(jobs))
    errors: list[BaseException] = []

    def work(step: Any) -> None:
        try:
            barrier.wait()
            for i in range(steps):
                step(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(job[2],)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for k, (params, _, _) in enumerate(jobs):
        assert _bits(params) == alone[k], f"{front}: optimizer {k} differs when run beside another"


@pytest.mark.skipif(not kernels.available()[0], reason=kernels.available()[1])
def test_both_fronts_in_two_threads_at_once() -> None:
    """A NumPy optimizer and a torch one in two threads, each with its own thread count for the kernel."""
    pytest.importorskip("torch")
    alone = []
    for make in (_numpy_job, _torch_job):
        params, _, step = make(3, "adam", {})
        for i in range(10):
            step(i)
        alone.append(_bits(params))
    jobs = [_numpy_job(3, "adam", {}), _torch_job(3, "adam", {})]
    threads = [threading.Thread(target=lambda s=job[2]: [s(i) for i in range(10)]) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [_bits(job[0]) for job in jobs] == alone
