"""The torch front's steady-state checks on many small tensors: torch's C functions against the Python attributes.

descend.torch's steady state (descend.engine.plan) checks, before each step, every parameter, gradient and state
tensor of a group: that nothing between two steps has moved or reshaped them. It reads their metadata with torch's
stable C functions for compiled code where this torch has them, else through each tensor's Python attributes. This
benchmark steps Adam on many small float32 tensors with both, side by side in one process (the same shapes, rounds
interleaved, one step of each contestant per round, a 64 MB pass between steps so that each step starts with the
caches a training step would leave), against torch's ``fused=True`` Adam and descend's NumPy front, and reports
medians.

Examples:
    python benchmarks/plan_checks.py --tensors 2000 --size 1000 --repeats 25
    python benchmarks/plan_checks.py --out docs/benchmarks.md   # appends a section
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

import descend
import descend.torch as dt
from descend.bench import publish, stamp
from descend.engine import plan as _plan


def _contestants(tensors: int, size: int) -> dict[str, tuple[Callable[[], None], Callable[[], None]]]:
    """Per contestant, (give its gradients, step): each has its own parameters, state and gradients."""
    out: dict[str, tuple[Callable[[], None], Callable[[], None]]] = {}
    shim = _plan._SHIM

    def torch_one(name: str, make: Callable[[list], torch.optim.Optimizer], checks: object = None) -> None:
        gen = torch.Generator().manual_seed(0)
        params = [torch.randn(size, generator=gen).requires_grad_() for _ in range(tensors)]
        grads = [torch.randn(size, generator=gen) * 1e-2 for _ in range(tensors)]
        _plan._SHIM = checks  # read when a plan is recorded: each optimizer keeps the checks it was planned with
        opt = make(params)

        def give() -> None:
            for p, g in zip(params, grads):
                p.grad = g

        for _ in range(3):  # state, then the plan
            give()
            opt.step()
        out[name] = (give, opt.step)

    torch_one("torch fused", lambda ps: torch.optim.Adam(ps, lr=1e-3, fused=True))
    if shim is not None:
        torch_one("descend.torch, torch's C functions", lambda ps: dt.Adam(ps, lr=1e-3), shim)
    torch_one("descend.torch, Python attributes", lambda ps: dt.Adam(ps, lr=1e-3), None)
    _plan._SHIM = shim

    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(size).astype(np.float32) for _ in range(tensors)]
    grads = [rng.standard_normal(size).astype(np.float32) * 1e-2 for _ in range(tensors)]
    opt = descend.Adam(arrays, lr=1e-3)
    for _ in range(3):
        opt.step(grads)
    out["descend (NumPy)"] = (lambda: None, lambda: opt.step(grads))
    return out


def run(tensors: int, size: int, repeats: int) -> dict[str, float]:
    """Median milliseconds per step of each contestant."""
    contestants = _contestants(tensors, size)
    evict = np.ones(8_000_000)  # 64 MB
    times: dict[str, list[float]] = {name: [] for name in contestants}
    for _ in range(repeats):
        for name, (give, step) in contestants.items():
            give()
            evict += 1.0
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tensors", type=int, default=2000, help="parameters (default 2000)")
    parser.add_argument("--size", type=int, default=1000, help="elements per parameter (default 1000)")
    parser.add_argument("--repeats", type=int, default=25, help="timed rounds (medians are reported)")
    parser.add_argument("--out", help="a Markdown file to append the results to")
    args = parser.parse_args(argv)
    if args.tensors < 1 or args.size < 1 or args.repeats < 1:
        parser.error("--tensors, --size and --repeats must be at least 1")
    ms = run(args.tensors, args.size, args.repeats)
    fused = ms["torch fused"]
    lines = [
        f"## Adam on {args.tensors:,} tensors of {args.size:,} elements: the torch front's steady-state checks",
        "",
        stamp(),
        f"- `python benchmarks/plan_checks.py --tensors {args.tensors} --size {args.size} --repeats {args.repeats}`",
        "",
        "| contestant | ms | vs torch fused |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {value:.2f} | {fused / value:.2f}x |" for name, value in ms.items()]
    publish(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
