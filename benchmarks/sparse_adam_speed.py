"""SparseAdam's step on an embedding table: descend.torch against torch.optim.SparseAdam, and against dense Adam.

An ``nn.Embedding(sparse=True)`` of GPT-2's vocabulary (50,257 x 768 float32, 154 MB) looked up by a batch of token
ids drawn from a Zipf-like distribution (as text's tokens are), so that the sparse gradient is uncoalesced, with
repeats, and holds a few thousand rows. Each contestant keeps its own copy of the table and its own state and gets the
same gradient each round; rounds are interleaved, one step of each contestant per round, and each figure is the
median of the rounds. ``torch.optim.Adam(fused=True)`` on the dense gradient of the same lookups shows what a dense
step over the whole table costs.

Examples:
    python benchmarks/sparse_adam_speed.py --tokens 8192 --repeats 15
    python benchmarks/sparse_adam_speed.py --out docs/benchmarks.md   # appends a section
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch

import descend.torch as dt
from descend.bench import publish, stamp

VOCAB, WIDTH = 50_257, 768


def _lookups(tokens: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    ids = rng.zipf(1.2, size=tokens) % VOCAB  # a few frequent ids, a long tail
    return torch.from_numpy(ids.astype(np.int64))


def _gradient(ids: torch.Tensor) -> torch.Tensor:
    """The sparse gradient an embedding lookup of ``ids`` produces (uncoalesced: one row per lookup)."""
    values = torch.randn(ids.numel(), WIDTH, generator=torch.Generator().manual_seed(int(ids[0])))
    return torch.sparse_coo_tensor(ids.unsqueeze(0), values, (VOCAB, WIDTH), check_invariants=False)


def run(tokens: int, repeats: int) -> tuple[dict[str, float], int]:
    base = torch.randn(VOCAB, WIDTH, generator=torch.Generator().manual_seed(0)) * 0.02
    makers: dict[str, Callable[[torch.nn.Parameter], torch.optim.Optimizer]] = {
        "descend.torch SparseAdam": lambda p: dt.SparseAdam([p], lr=1e-3),
        "torch.optim.SparseAdam": lambda p: torch.optim.SparseAdam([p], lr=1e-3),
        "torch.optim.Adam fused=True (dense)": lambda p: torch.optim.Adam([p], lr=1e-3, fused=True),
    }
    contestants = {}
    for name, make in makers.items():
        p = torch.nn.Parameter(base.clone())
        contestants[name] = (p, make(p), "dense" in name)
    times: dict[str, list[float]] = {name: [] for name in contestants}
    rows = 0
    for r in range(repeats + 2):  # two warm-up rounds: state, pages, caches
        ids = _lookups(tokens, r)
        grad = _gradient(ids)
        rows = int(grad.coalesce()._nnz())
        for name, (p, opt, dense) in contestants.items():
            p.grad = grad.to_dense() if dense else grad
            start = time.perf_counter()
            opt.step()
            elapsed = time.perf_counter() - start
            if r >= 2:
                times[name].append(elapsed)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[1024, 8192], help="lookups per batch")
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds (medians are reported)")
    parser.add_argument("--out", help="a Markdown file to append the results to")
    args = parser.parse_args(argv)
    if any(t < 1 for t in args.tokens) or args.repeats < 1:
        parser.error("--tokens and --repeats must be at least 1")
    warnings.filterwarnings("ignore", message="Sparse invariant checks")
    lines = [
        f"## SparseAdam on GPT-2's token embedding ({VOCAB:,} x {WIDTH}, float32)",
        "",
        stamp(),
        "",
        "| lookups | rows held | descend.torch SparseAdam | torch.optim.SparseAdam | ratio | dense Adam fused |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for tokens in args.tokens:
        ms, rows = run(tokens, args.repeats)
        ours, theirs = ms["descend.torch SparseAdam"], ms["torch.optim.SparseAdam"]
        dense = ms["torch.optim.Adam fused=True (dense)"]
        lines.append(
            f"| {tokens:,} | {rows:,} | {ours:.2f} ms | {theirs:.2f} ms | {theirs / ours:.1f}x | {dense:.1f} ms |"
        )
        print(lines[-1], flush=True)
    publish(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
