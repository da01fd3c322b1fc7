"""Memory of optimizer state on GPT-2 small's shapes, Adam: the resident set size a process gains when its optimizer
creates its state (two steps), per parameter, for each state format and peer. Each contestant runs in a fresh process,
so the figures do not mix::

    python benchmarks/lowbit_memory.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CONTESTANTS = [
    "torch fused",
    "descend.torch",
    "descend.torch [bfloat16]",
    "descend.torch [blockwise8]",
    "descend (NumPy) [bfloat16]",
    "descend (NumPy) [blockwise8]",
    "bitsandbytes [8-bit]",
    "torchao [8-bit]",
]

CHILD = r"""
import json, sys, resource
import numpy as np, torch
from descend.bench import CASES

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()

label = sys.argv[1]
shapes = CASES["gpt2-small"]()
params = [np.full(s, 0.1, dtype=np.float32) for s in shapes]  # touched, so only the state is counted
grads = [np.full(s, 1e-3, dtype=np.float32) for s in shapes]
tparams = [torch.from_numpy(p) for p in params]
for t, g in zip(tparams, grads):
    t.grad = torch.from_numpy(g)
n = sum(p.size for p in params)
if label.startswith("descend (NumPy)"):
    import descend
    opt = descend.Adam(params, state_dtype=label.split("[")[1][:-1])
    step = lambda: opt.step(grads)
elif label.startswith("descend.torch"):
    import descend.torch as dt
    fmt = label.split("[")[1][:-1] if "[" in label else None
    step = dt.Adam(tparams, state_dtype=fmt).step
elif label == "torch fused":
    step = torch.optim.Adam(tparams, fused=True).step
elif label.startswith("bitsandbytes"):
    import bitsandbytes as bnb
    step = bnb.optim.Adam8bit(tparams).step
else:
    import torchao.optim as ao
    step = ao.AdamW8bit(tparams, weight_decay=0.0).step
before = rss()
step(); step()
print(json.dumps({"label": label, "params": n, "bytes": rss() - before}))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contestants", nargs="+", default=CONTESTANTS, choices=CONTESTANTS)
    args = parser.parse_args(argv)
    print("| contestant | state memory (RSS gained) | bytes per parameter |")
    print("|---|---:|---:|")
    for label in args.contestants:
        done = subprocess.run([sys.executable, "-c", CHILD, label], capture_output=True, text=True)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            print(f"| {label} | not run: {done.stderr.strip().splitlines()[-1:]} | |")
            continue
        r = json.loads(lines[-1])
        print(f"| {label} | {r['bytes'] / 2**20:.0f} MiB | {r['bytes'] / r['params']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
