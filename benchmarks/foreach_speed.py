"""The multi-tensor path: its step time against the per-tensor reference and torch.optim, and its bits.

On the CPU (``--device cpu``, the default) it times descend.torch with ``backend="foreach"`` (the multi-tensor path
forced onto the CPU), ``backend="reference"`` (one tensor at a time) and the default (the fused kernel), against
``torch.optim`` with ``foreach=True``. On a GPU (``--device cuda``, or ``mps``, ...) the default backend is the
multi-tensor path; it is timed against ``backend="reference"`` and ``torch.optim`` with ``foreach=True`` and, where
torch has it, ``fused=True``.

Every contestant updates the same parameters with the same gradients and its own state. Rounds are interleaved (one
step of each contestant per round, after a warm-up step), and each figure is the median over the rounds (on a GPU,
each step is timed to completion, ``synchronize`` included).

``--bits`` runs every elementwise algorithm of the registry for a few steps on the device with the default backend
and on the CPU with ``backend="reference"``, from the same start with the same gradients, and says whether every
parameter and state tensor holds the same bits (NaNs compared as NaNs); the device's per-tensor reference is shown
beside it.

Examples:
    python benchmarks/foreach_speed.py --cases 2000x1000 gpt2-small --repeats 9
    python benchmarks/foreach_speed.py --device cuda --algorithms adam adamw sgd --bits
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

import descend.torch as dt
from descend.algorithms import registry
from descend.bench import CASES, KWARGS

TORCH_FUSED = {"Adam", "AdamW", "SGD", "Adagrad"}  # torch.optim classes with fused=True


def _sync(device: torch.device) -> Callable[[], None]:
    module = getattr(torch, device.type, None)
    return getattr(module, "synchronize", lambda: None) if device.type != "cpu" else lambda: None


def contestants(name: str, device: torch.device) -> list[tuple[str, Callable[[list], Any]]]:
    """(label, make optimizer) for one algorithm on one device."""
    spec = registry.get(name)
    kwargs = KWARGS.get(name, {})
    ours = dt.OPTIMIZERS[name]
    out: list[tuple[str, Callable[[list], Any]]] = []
    if device.type == "cpu":
        out.append(("descend foreach", lambda ps: ours(ps, backend="foreach", **kwargs)))
        out.append(("descend reference", lambda ps: ours(ps, backend="reference", **kwargs)))
        out.append(("descend auto (kernel)", lambda ps: ours(ps, **kwargs)))
    else:
        out.append(("descend auto (foreach)", lambda ps: ours(ps, **kwargs)))
        out.append(("descend reference", lambda ps: ours(ps, backend="reference", **kwargs)))
    theirs = getattr(torch.optim, spec.torch_name, None) if spec.torch_name else None
    if theirs is not None:
        out.append(("torch foreach", lambda ps: theirs(ps, foreach=True, **kwargs)))
        if spec.torch_name in TORCH_FUSED and device.type != "cpu":
            out.append(("torch fused", lambda ps: theirs(ps, fused=True, **kwargs)))
    return out


def time_case(case: str, name: str, device: torch.device, dtype: torch.dtype, repeats: int) -> list[tuple[str, float]]:
    """Median milliseconds per step of every contestant, interleaved."""
    gen = torch.Generator().manual_seed(0)
    shapes = CASES[case]()
    params = [torch.nn.Parameter((0.1 * torch.randn(s, generator=gen)).to(device, dtype)) for s in shapes]
    for p in params:
        p.grad = (0.01 * torch.randn(p.shape, generator=gen)).to(device, dtype)
    entries = [(label, make(params)) for label, make in contestants(name, device)]
    sync = _sync(device)
    times: dict[str, list[float]] = {label: [] for label, _ in entries}
    for opt in (o for _, o in entries):  # warm-up: state creation
        opt.step()
    sync()
    for _ in range(repeats):
        for label, opt in entries:
            start = time.perf_counter()
            opt.step()
            sync()
            times[label].append(1e3 * (time.perf_counter() - start))
    return [(label, statistics.median(t)) for label, t in times.items()]


def _bits(t: torch.Tensor) -> torch.Tensor:
    t = t.detach().cpu()
    if t.is_complex():
        t = torch.view_as_real(t)
    ints = {2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
    canonical = torch.where(torch.isnan(t), torch.full_like(t, float("nan")), t)  # NaN payloads are not compared
    return canonical.contiguous().view(ints)


def check_bits(name: str, device: torch.device, dtype: torch.dtype, steps: int = 10) -> tuple[bool, bool]:
    """Whether the device's default backend, and its per-tensor reference, give the CPU reference's bits."""
    spec = registry.get(name)
    kwargs = {**spec.full_state, **KWARGS.get(name, {})}
    gen = torch.Generator().manual_seed(1)
    shapes = [(257, 31), (1000,), (), (3, 5, 7), (64, 64)]
    start = [torch.randn(s, generator=gen).to(dtype) for s in shapes]
    grads = [[torch.randn(s, generator=gen).to(dtype) for s in shapes] for _ in range(steps)]
    runs = {}
    multi = "foreach" if device.type == "cpu" else "auto"  # on the CPU, "auto" would run the kernel
    for label, where, backend in (("cpu", "cpu", "reference"), ("auto", device, multi), ("ref", device, "reference")):
        params = [torch.nn.Parameter(t.clone().to(where)) for t in start]
        opt = dt.OPTIMIZERS[name](params, backend=backend, **kwargs)
        for step_grads in grads:
            for p, g in zip(params, step_grads):
                p.grad = g.to(where)
            opt.step()
        runs[label] = [_bits(p) for p in params] + [
            _bits(v) for p in params for v in opt.state[p].values() if isinstance(v, torch.Tensor)
        ]
    same = {k: all(torch.equal(a, b) for a, b in zip(runs["cpu"], runs[k])) for k in ("auto", "ref")}
    return same["auto"], same["ref"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, mps, ...")
    parser.add_argument("--cases", nargs="+", default=["2000x1000", "gpt2-small"], choices=sorted(CASES))
    parser.add_argument("--algorithms", nargs="+", default=["adam"], choices=sorted(registry.ELEMENTWISE))
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16", "float64"])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--bits", action="store_true", help="also compare bits with the CPU reference")
    parser.add_argument("--threads", type=int, default=0, help="torch's CPU threads (0: its default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    print(f"torch {torch.__version__}, device {device}, dtype {args.dtype}, {torch.get_num_threads()} CPU threads")
    for case in args.cases:
        for name in args.algorithms:
            rows = time_case(case, name, device, dtype, args.repeats)
            base = dict(rows).get("torch foreach")
            print(f"\n{case}, {name} ({len(CASES[case]())} tensors), median of {args.repeats} interleaved rounds:")
            for label, ms in rows:
                ratio = f"  {base / ms:5.2f}x torch foreach" if base else ""
                print(f"  {label:24s} {ms:10.2f} ms{ratio}")
    if args.bits:
        print(f"\nbits against the CPU reference after 10 steps ({args.dtype}):")
        for name in registry.ELEMENTWISE:
            auto, ref = check_bits(name, device, dtype)
            print(
                f"  {name:10s} default backend: {'same' if auto else 'DIFFERENT':9s}  per-tensor reference: "
                f"{'same' if ref else 'different'}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
