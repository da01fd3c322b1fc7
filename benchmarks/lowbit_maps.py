"""Which 8-bit map for Adam's moments: the error each candidate puts into Adam's update direction.

Trains the small character model of ``lowbit_quality.py`` with float32 AdamW for a while, takes its moments, and
stores them once in each 8-bit candidate (blocks of 256, to nearest): a linear map with an absmax scale, the dynamic
map of bitsandbytes (where installed), and descend's small floats over a power-of-two scale. For each it reports the
relative error of the update ``m / (sqrt(v) + eps)`` (over all elements, and the median and 99th percentile element),
and the share of elements whose second moment is stored as 0 while the first is not, which turns the update into
``m / eps``::

    python benchmarks/lowbit_maps.py --steps 150
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lowbit_quality as quality  # noqa: E402

from descend import lowbit as lb  # noqa: E402

BLOCK = 256


def _blocks(x: np.ndarray) -> tuple[np.ndarray, int]:
    n = x.size
    padded = np.zeros(-(-n // BLOCK) * BLOCK, dtype=np.float32)
    padded[:n] = x
    return padded.reshape(-1, BLOCK), n


def linear(x: np.ndarray, signed: bool) -> np.ndarray:
    b, n = _blocks(x)
    absmax = np.abs(b).max(axis=1, keepdims=True)
    absmax[absmax == 0] = 1
    levels = 127 if signed else 255
    return (np.round(b / absmax * levels) / levels * absmax).reshape(-1)[:n]


def table_map(x: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Nearest entry of a sorted map over [-1, 1] (or [0, 1]), with an absmax scale per block."""
    b, n = _blocks(x)
    absmax = np.abs(b).max(axis=1, keepdims=True)
    absmax[absmax == 0] = 1
    y = (b / absmax).reshape(-1)
    i = np.clip(np.searchsorted(table, y), 1, len(table) - 1)
    nearest = np.where(np.abs(table[i - 1] - y) <= np.abs(table[i] - y), table[i - 1], table[i])
    return (nearest.reshape(b.shape) * absmax).reshape(-1)[:n]


def descend_map(x: np.ndarray, nonneg: bool) -> np.ndarray:
    return lb.q8_decode(*lb.q8_encode(x, nonneg), nonneg)


def candidates() -> dict:
    out = {
        "linear, absmax scale": (lambda m: linear(m, True), lambda v: linear(v, False)),
        "descend: 3-bit mantissa floats, power-of-two scale": (
            lambda m: descend_map(m, False),
            lambda v: descend_map(v, True),
        ),
    }
    try:
        import bitsandbytes.functional as bf

        signed = np.sort(bf.create_dynamic_map(signed=True).numpy().astype(np.float32))
        unsigned = np.sort(bf.create_dynamic_map(signed=False).numpy().astype(np.float32))
        out["bitsandbytes dynamic map, absmax scale"] = (
            lambda m: table_map(m, signed),
            lambda v: table_map(v, unsigned),
        )
    except Exception as exc:  # noqa: BLE001 - the peer is optional
        print(f"bitsandbytes' map left out: {exc}", file=sys.stderr)
    return out


def moments(steps: int) -> tuple[np.ndarray, np.ndarray]:
    text = quality.corpus()
    chars = sorted(set(text))
    data = torch.tensor([chars.index(c) for c in text], dtype=torch.long)
    torch.manual_seed(0)
    model = quality.GPT(len(chars))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    for xy in quality.batches(data, steps, 16, 64, 0):
        logits = model(xy[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), xy[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    m = np.concatenate([opt.state[p]["exp_avg"].reshape(-1).numpy() for p in model.parameters()])
    v = np.concatenate([opt.state[p]["exp_avg_sq"].reshape(-1).numpy() for p in model.parameters()])
    return m, v


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args(argv)
    m, v = moments(args.steps)
    eps = np.float32(1e-8)
    exact = m / (np.sqrt(v) + eps)
    print(f"Adam's moments after {args.steps} steps, {m.size} elements")
    print("| 8-bit map | update error (all) | median element | 99th percentile | v stored as 0, m not |")
    print("|---|---:|---:|---:|---:|")
    for name, (qm, qv) in candidates().items():
        mq, vq = qm(m), qv(v)
        update = mq / (np.sqrt(np.maximum(vq, 0)) + eps)
        rel = np.abs(update - exact) / np.maximum(np.abs(exact), 1e-12)
        total = np.linalg.norm(update - exact) / np.linalg.norm(exact)
        zeroed = np.mean((vq == 0) & (v > 0) & (mq != 0))
        print(f"| {name} | {total:.4f} | {np.median(rel):.4f} | {np.quantile(rel, 0.99):.3f} | {zeroed:.2%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
