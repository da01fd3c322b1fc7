"""Training quality with low-precision optimizer state: a small GPT-style character model, trained on text that ships
with Python (the source of a few standard-library modules), with AdamW under each state format.

Runs, each from the same initial weights and batches:

- float32 params: float32 state (the baseline), bfloat16 state with and without stochastic rounding, 8-bit
  blockwise state with and without stochastic rounding;
- bfloat16 params (float32 state): rounded to nearest, rounded stochastically, and with Kahan compensation.

It prints a table (final held-out loss, its difference from the baseline, the mean of ``exp_avg_sq`` relative to the
baseline's) and writes the curves to ``docs/guides/lowbit-quality.png`` and the figures to
``docs/guides/lowbit-quality.json``::

    python benchmarks/lowbit_quality.py --steps 300 --jobs 4
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import torch
import torch.nn.functional as F

import descend.torch as dt
from descend import StateFormat

HERE = os.path.dirname(os.path.abspath(__file__))
DOCS = os.path.join(HERE, "..", "docs", "guides")

RUNS: dict[str, tuple[torch.dtype, object]] = {
    "float32 state": (torch.float32, None),
    "bfloat16 state, stochastic rounding": (torch.float32, StateFormat("bfloat16")),
    "bfloat16 state, to nearest": (torch.float32, StateFormat("bfloat16", stochastic_rounding=False)),
    "8-bit state, stochastic rounding": (torch.float32, StateFormat("blockwise8")),
    "8-bit state, to nearest": (torch.float32, StateFormat("blockwise8", stochastic_rounding=False)),
    "bfloat16 params, to nearest": (torch.bfloat16, StateFormat("float32")),
    "bfloat16 params, stochastic rounding": (torch.bfloat16, StateFormat("float32", params="stochastic")),
    "bfloat16 params, Kahan": (torch.bfloat16, StateFormat("float32", params="kahan")),
}


def corpus() -> str:
    """Text that ships with Python: the source of a few standard-library modules."""
    import argparse as a
    import difflib
    import textwrap

    return "".join(inspect.getsource(m) for m in (difflib, textwrap, a))


class Block(torch.nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = torch.nn.LayerNorm(d), torch.nn.LayerNorm(d)
        self.qkv, self.proj = torch.nn.Linear(d, 3 * d), torch.nn.Linear(d, d)
        self.fc, self.out = torch.nn.Linear(d, 4 * d), torch.nn.Linear(4 * d, d)
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(y)
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class GPT(torch.nn.Module):
    def __init__(self, vocab: int, d: int = 64, layers: int = 2, heads: int = 4, context: int = 64) -> None:
        super().__init__()
        self.tok, self.pos = torch.nn.Embedding(vocab, d), torch.nn.Embedding(context, d)
        self.blocks = torch.nn.Sequential(*[Block(d, heads) for _ in range(layers)])
        self.ln, self.head = torch.nn.LayerNorm(d), torch.nn.Linear(d, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        return self.head(self.ln(self.blocks(x)))


def batches(data: torch.Tensor, steps: int, batch: int, context: int, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, data.numel() - context - 1, (steps, batch), generator=gen)
    return [torch.stack([data[s : s + context + 1] for s in row]) for row in starts]


def train(name: str, dtype: torch.dtype, fmt: object, data: dict, args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    model = GPT(data["vocab"], context=args.context)
    model.to(dtype)
    opt = dt.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, state_dtype=fmt)
    curve, began = [], time.perf_counter()
    for step, xy in enumerate(data["train"], 1):
        lr_scale = min(1.0, step / 20) * 0.5 * (1 + math.cos(math.pi * step / len(data["train"])))
        for group in opt.param_groups:
            group["lr"] = args.lr * lr_scale
        logits = model(xy[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), xy[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % args.every == 0 or step == len(data["train"]):
            curve.append((step, evaluate(model, data["held_out"])))
    second = _mean_second_moment(opt)
    return {
        "name": name,
        "curve": curve,
        "final": curve[-1][1],
        "second_moment": second,
        "seconds": time.perf_counter() - began,
    }


@torch.no_grad()
def evaluate(model: torch.nn.Module, held_out: list[torch.Tensor]) -> float:
    total = 0.0
    for xy in held_out:
        logits = model(xy[:, :-1]).float()
        total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), xy[:, 1:].reshape(-1)))
    return total / len(held_out)


def _mean_second_moment(opt: torch.optim.Optimizer) -> float:
    """The mean of every exp_avg_sq, decoded from its format."""
    from descend import lowbit as lb

    total, count = 0.0, 0
    for st in opt.state.values():
        v = st["exp_avg_sq"]
        if v.dtype == torch.uint8:
            values = lb.q8_decode(v.reshape(-1).numpy(), st["exp_avg_sq_scale"].numpy(), nonneg=True)
            total += float(values.astype("float64").sum())
        else:
            total += float(v.double().sum())
        count += v.numel()
    return total / count


DECAY_RUNS = {name: fmt for name, (dtype, fmt) in RUNS.items() if dtype == torch.float32}


def decay(steps: int = 1500, drop: int = 100, n: int = 20_000) -> dict[str, list[float]]:
    """What rounding does to Adam's second moment: gradients of scale 1 for ``drop`` steps, then of scale 0.01. The
    second moment should then decay by beta2 = 0.999 a step; returns, per state format, its mean over the steps."""
    out = {}
    for name, fmt in DECAY_RUNS.items():
        gen = torch.Generator().manual_seed(0)
        w = torch.zeros(n, requires_grad=True)
        opt = dt.Adam([w], lr=1e-3, state_dtype=fmt)
        means = []
        for step in range(steps):
            w.grad = torch.randn(n, generator=gen) * (1.0 if step < drop else 0.01)
            opt.step()
            means.append(_mean_second_moment(opt))
        out[name] = means
    return out


def figure(results: list[dict], path: str, decays: dict[str, list[float]] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3 if decays else 2, figsize=(18 if decays else 12, 4.5))
    axes[1].sharey(axes[0])
    for ax, params in zip(axes, ("float32", "bfloat16")):
        for r in results:
            if (r["name"].startswith("bfloat16 params")) == (params == "bfloat16") or r["name"] == "float32 state":
                steps, losses = zip(*r["curve"])
                style = "--" if "nearest" in r["name"] else "-"
                ax.plot(steps, losses, style, label=r["name"], linewidth=1.5)
        ax.set_title(f"{params} params: held-out loss")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("cross-entropy (nats per character)")
    if decays:
        ax = axes[2]
        for name, means in decays.items():
            ax.plot(range(1, len(means) + 1), means, "--" if "nearest" in name else "-", label=name, linewidth=1.5)
        ax.set_yscale("log")
        ax.set_title("Adam's exp_avg_sq after the gradients shrink 100x")
        ax.set_xlabel("step (gradient scale 1, then 0.01 from step 100)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _train_all(data: dict, args: argparse.Namespace) -> list[dict]:
    with ProcessPoolExecutor(max_workers=args.jobs, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        futures = [pool.submit(train, name, *RUNS[name], data, args) for name in args.runs]
        results = []
        for future in futures:
            r = future.result()
            results.append(r)
            print(f"{r['name']:40s} final {r['final']:.4f}  ({r['seconds']:.0f} s)", file=sys.stderr, flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--every", type=int, default=25, help="evaluate every so many steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--out", default=DOCS, help="folder for lowbit-quality.png and .json ('' for none)")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once, each in its own process")
    parser.add_argument("--from-json", default=None, help="take the training runs from this earlier output instead")
    args = parser.parse_args(argv)
    text = corpus()
    chars = sorted(set(text))
    encoded = torch.tensor([chars.index(c) for c in text], dtype=torch.long)
    cut = int(0.9 * encoded.numel())
    data = {
        "vocab": len(chars),
        "train": batches(encoded[:cut], args.steps, args.batch, args.context, args.seed),
        "held_out": batches(encoded[cut:], 4, 32, args.context, args.seed + 1),
    }
    print(f"{len(text)} characters of standard-library source, vocabulary {len(chars)}, {args.steps} steps")
    if args.from_json:
        with open(args.from_json) as f:
            results = [r for r in json.load(f)["results"] if r["name"] in args.runs]
    else:
        results = _train_all(data, args)
    base = {r["name"]: r for r in results}.get("float32 state")
    print("\n| run | final held-out loss | vs float32 state | mean exp_avg_sq vs float32 state |")
    print("|---|---:|---:|---:|")
    for r in results:
        rel = f"{(r['final'] / base['final'] - 1) * 100:+.2f}%" if base else ""
        v = f"{r['second_moment'] / base['second_moment']:.3f}" if base else ""
        print(f"| {r['name']} | {r['final']:.4f} | {rel} | {v} |")
    decays = decay()
    print("\n| state format | mean exp_avg_sq at step 100 | at step 1500 | float32 state at 1500 |")
    print("|---|---:|---:|---:|")
    exact = decays["float32 state"][-1]
    for name, means in decays.items():
        print(f"| {name} | {means[99]:.4g} | {means[-1]:.4g} | {means[-1] / exact:.1f}x |")
    if args.out:
        figure(results, os.path.join(args.out, "lowbit-quality.png"), decays)
        with open(os.path.join(args.out, "lowbit-quality.json"), "w") as f:
            json.dump({"args": vars(args), "results": results, "decay": decays}, f, indent=1)
        print(f"wrote {os.path.join(args.out, 'lowbit-quality.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
