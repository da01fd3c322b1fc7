"""A compiled step against the eager one: ``torch.compile(lambda: opt.step())`` for descend.torch and torch.optim.

Contestants, on the same float32 tensors (each with its own copy and state): descend.torch's eager step, its step
compiled (one ``descend::step`` operator in the graph), the same step behind a graph break (how ``torch.compile`` ran
it before the operator), torch.optim's class compiled the same way (Inductor's code for its single-tensor step), and
(``--fused``) torch's ``fused=True`` eager step where torch has one. Every contestant is warmed up until its graphs
are built (the first compiled step creates the state, the next compiles again with it); rounds are interleaved, one
step of each contestant per round, and each figure is the median of the rounds.

Examples:
    python benchmarks/compile_speed.py --cases 20x1000 gpt2-small 2000x1000 --repeats 15
    python benchmarks/compile_speed.py --cases gpt2-small --out docs/benchmarks.md   # appends a section
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

import descend.torch as dt
from descend.bench import CASES, TORCH_FUSED, stamp

SHAPES = {**CASES, "20x1000": lambda: [(1000,)] * 20}
WARMUP = 4  # steps before timing: state, the first graph, the graph with state, and one more


def _contestants(name: str, shapes: list[tuple[int, ...]], fused: bool) -> dict[str, Callable[[], Any]]:
    rng = np.random.default_rng(0)
    data = [
        (rng.standard_normal(s, dtype=np.float32) * 0.1, rng.standard_normal(s, dtype=np.float32) * 0.01)
        for s in shapes
    ]

    def params() -> list[torch.nn.Parameter]:
        out = []
        for p, g in data:
            t = torch.nn.Parameter(torch.from_numpy(p.copy()))
            t.grad = torch.from_numpy(g)  # every contestant reads the same gradients
            out.append(t)
        return out

    cls = dt.OPTIMIZERS[name]
    eager, compiled = cls(params()), cls(params())
    broken = cls(params())
    out: dict[str, Callable[[], Any]] = {
        "descend.torch eager": eager.step,
        "descend.torch compiled": torch.compile(lambda: compiled.step()),
        # the engine's step behind a graph break, as torch.compile ran it before the custom operator
        "descend.torch graph break": torch.compile(lambda: broken._untraced_step()),
    }
    torch_name = cls.spec.torch_name
    if torch_name:
        theirs = getattr(torch.optim, torch_name)(params())
        out[f"torch.optim.{torch_name} compiled"] = torch.compile(lambda: theirs.step())
        if fused and torch_name in TORCH_FUSED:
            out[f"torch.optim.{torch_name} fused"] = getattr(torch.optim, torch_name)(params(), fused=True).step
    return out


def run(case: str, name: str, repeats: int, fused: bool = False) -> list[dict[str, Any]]:
    """Time one algorithm on one case: one row per contestant with its median step in ms."""
    torch._dynamo.reset()
    contestants = _contestants(name, SHAPES[case](), fused)
    compile_s = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's profiler note on record_function under Dynamo
        for label, step in contestants.items():
            t0 = time.perf_counter()
            for _ in range(WARMUP):
                step()
            compile_s[label] = time.perf_counter() - t0
        times: dict[str, list[float]] = {label: [] for label in contestants}
        for _ in range(repeats):
            for label, step in contestants.items():
                t0 = time.perf_counter()
                step()
                times[label].append(time.perf_counter() - t0)
    return [
        {
            "case": case,
            "algorithm": name,
            "contestant": label,
            "ms": statistics.median(ts) * 1e3,
            "warm-up s": compile_s[label],
        }
        for label, ts in times.items()
    ]


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: each contestant's median, and the eager descend.torch step's time over it."""
    out = [
        "| case | algorithm | contestant | ms | vs descend.torch eager | warm-up s |",
        "|---|---|---|---:|---:|---:|",
    ]
    for r in rows:
        base = next(
            x["ms"]
            for x in rows
            if x["case"] == r["case"] and x["algorithm"] == r["algorithm"] and x["contestant"] == "descend.torch eager"
        )
        out.append(
            f"| {r['case']} | {r['algorithm']} | {r['contestant']} | {r['ms']:.3f} | {base / r['ms']:.2f}x | "
            f"{r['warm-up s']:.1f} |"
        )
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=["20x1000", "gpt2-small", "2000x1000"], choices=list(SHAPES))
    parser.add_argument("--algorithms", nargs="+", default=["adam"], choices=list(dt.OPTIMIZERS))
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds; the median is reported (default 15)")
    parser.add_argument("--fused", action="store_true", help="add torch's fused=True eager step where torch has one")
    parser.add_argument("--out", default=None, help="append this run as a section of a Markdown file")
    args = parser.parse_args(argv)
    print(stamp())
    rows = []
    for case in args.cases:
        for name in args.algorithms:
            new = run(case, name, args.repeats, args.fused)
            print(table(new).split("\n", 2)[2], flush=True)
            rows += new
    if args.out:
        command = "python benchmarks/compile_speed.py " + " ".join(argv if argv is not None else sys.argv[1:])
        with open(args.out, "a") as f:
            f.write(f"\n## `{command.strip()}`\n\nMedian of {args.repeats} rounds.\n\n{stamp()}\n\n{table(rows)}\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
