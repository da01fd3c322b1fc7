"""bfloat16 params: descend's Kahan compensation and stochastic rounding against optimi's Kahan summation and torch's
fused AdamW (bfloat16 state, no compensation), on the MLP case's shapes, interleaved in one process::

    python benchmarks/lowbit_kahan.py
"""

from __future__ import annotations

import statistics
import sys
import time

import torch

import descend.torch as dt
from descend import StateFormat
from descend.bench import CASES


def _params(shapes: list[tuple[int, ...]]) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    ps = [torch.randn(s, generator=gen).to(torch.bfloat16) for s in shapes]
    for p in ps:
        p.grad = (torch.randn(p.shape, generator=gen) * 1e-2).to(torch.bfloat16)
    return ps


def main(repeats: int = 7) -> int:
    import optimi

    shapes = CASES["mlp"]()
    steps = {
        "torch fused (bfloat16 state, no compensation)": torch.optim.AdamW(_params(shapes), fused=True).step,
        "optimi AdamW, kahan_sum=True": optimi.AdamW(_params(shapes), lr=1e-3, kahan_sum=True).step,
    }
    for state in ("float32", "bfloat16"):
        for params in ("kahan", "stochastic"):
            fmt = StateFormat(state, params=params)
            steps[f"descend.torch, {state} state, params={params!r}"] = dt.AdamW(_params(shapes), state_dtype=fmt).step
    times: dict[str, list[float]] = {label: [] for label in steps}
    for step in steps.values():
        step()
    for _ in range(repeats):
        for label, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[label].append(time.perf_counter() - t0)
    base = statistics.median(times["torch fused (bfloat16 state, no compensation)"])
    print("| contestant | ms | vs torch fused |\n|---|---:|---:|")
    for label, ts in times.items():
        ms = statistics.median(ts)
        print(f"| {label} | {ms * 1e3:.2f} | {base / ms:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
