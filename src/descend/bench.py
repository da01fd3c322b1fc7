"""Step speed: descend's fused kernels against torch.optim, a naive NumPy loop and optax, side by side.

Every contestant updates the same parameters (NumPy arrays shared with torch tensors, so no copy) with its own state.
Rounds are interleaved (one step of each contestant per round, after a warm-up step), and each figure is the median
of the rounds. The roofline is a kernel with the same loads and stores as the algorithm and trivial math; its time
is what the memory allows, and ``roofline`` in the table is roofline time / contestant time. An algorithm whose step
is matrix products (Muon) has no roofline and no GB/s, and runs on the cases whose
parameters it takes (Muon: ``gpt2-small-hidden``, GPT-2 small's 48 hidden weight matrices, and
``gpt2-small-layer``, one layer's four, a twelfth of the work).

Run ``python benchmarks/step_speed.py --help`` for the flags; the full run needs about 10 GB of memory for the 1e8 and
GPT-2 cases.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib.util
import inspect
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import descend
from descend import bench_lowbit, kernels
from descend.algorithms import ELEMENTWISE
from descend.kernels._layout import KERNELS

__all__ = ["CASES", "main", "run", "takes"]


def _gpt2_small() -> list[tuple[int, ...]]:
    layer = [
        (768,),
        (768,),
        (768, 2304),
        (2304,),
        (768, 768),
        (768,),
        (768,),
        (768,),
        (768, 3072),
        (3072,),
        (3072, 768),
        (768,),
    ]
    return [(50257, 768), (1024, 768)] + layer * 12 + [(768,), (768,)]


def _resnet18() -> list[tuple[int, ...]]:
    def bn(c: int) -> list[tuple[int, ...]]:
        return [(c,), (c,)]

    shapes = [(64, 3, 7, 7), *bn(64)]
    for _ in range(2):
        shapes += [(64, 64, 3, 3), *bn(64), (64, 64, 3, 3), *bn(64)]
    for cin, cout in ((64, 128), (128, 256), (256, 512)):
        shapes += [(cout, cin, 3, 3), *bn(cout), (cout, cout, 3, 3), *bn(cout), (cout, cin, 1, 1), *bn(cout)]
        shapes += [(cout, cout, 3, 3), *bn(cout), (cout, cout, 3, 3), *bn(cout)]
    return shapes + [(1000, 512), (1000,)]


def _gpt2_small_layer() -> list[tuple[int, ...]]:
    """One layer of GPT-2 small's hidden weight matrices (what Muon trains), in its (in, out) layout: the attention's
    input and output projections and the MLP's two."""
    return [(768, 2304), (768, 768), (768, 3072), (3072, 768)]


def _gpt2_small_hidden() -> list[tuple[int, ...]]:
    """GPT-2 small's 48 hidden weight matrices: twelve layers like :func:`_gpt2_small_layer`."""
    return _gpt2_small_layer() * 12


CASES: dict[str, Callable[[], list[tuple[int, ...]]]] = {
    "flat-1e7": lambda: [(10_000_000,)],
    "flat-1e8": lambda: [(100_000_000,)],
    "gpt2-small": _gpt2_small,
    "gpt2-small-hidden": _gpt2_small_hidden,
    "gpt2-small-layer": _gpt2_small_layer,
    "resnet18": _resnet18,
    "mlp": lambda: [(1024, 784), (1024,), (1024, 1024), (1024,), (10, 1024), (10,)],
    "2000x1000": lambda: [(1000,)] * 2000,
}

# Hyperparameters per algorithm: torch's defaults, except SGD with momentum (plain SGD keeps no state).
KWARGS: dict[str, dict[str, Any]] = {"sgd": {"momentum": 0.9}}

TORCH_FUSED = {"Adam", "AdamW", "SGD", "Adagrad"}  # torch.optim classes with fused=True on the CPU

# For an algorithm torch.optim lacks, the package that runs it in torch operations: (module, class, label of its
# default step, which stands in for torch's default in the "vs torch.optim" column, arguments of the class, arguments
# of its multi-tensor step where that is not its default).
PEERS: dict[str, tuple[str, str, str, dict[str, Any], dict[str, Any]]] = {
    "adamw_schedulefree": ("schedulefree", "AdamWScheduleFree", "schedulefree", {}, {}),
    "lion": ("optimi", "Lion", "optimi", {"lr": 1e-4}, {"foreach": True}),  # torch-optimi: lr has no default
}


def _naive(name: str) -> Callable[[list[np.ndarray], list[np.ndarray]], Callable[[], None]] | None:
    """The article's style: one NumPy expression per line, new arrays for every intermediate, a loop over tensors."""

    def adam(ps: list[np.ndarray], gs: list[np.ndarray]) -> Callable[[], None]:
        v, s, t = [np.zeros_like(p) for p in ps], [np.zeros_like(p) for p in ps], [0]
        lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-8

        def step() -> None:
            t[0] += 1
            for i, (w, dw) in enumerate(zip(ps, gs)):
                v[i] = b1 * v[i] + (1 - b1) * dw
                s[i] = b2 * s[i] + (1 - b2) * dw**2
                v_norm = v[i] / (1 - np.power(b1, t[0]))
                s_norm = s[i] / (1 - np.power(b2, t[0]))
                w -= lr * v_norm / (np.sqrt(s_norm) + eps)

        return step

    def momentum(ps: list[np.ndarray], gs: list[np.ndarray], beta: float = 0.9, lr: float = 1e-2) -> Callable:
        v = [np.zeros_like(p) for p in ps]

        def step() -> None:
            for i, (w, dw) in enumerate(zip(ps, gs)):
                v[i] = beta * v[i] + (1 - beta) * dw
                w -= lr * v[i]

        return step

    def rmsprop(ps: list[np.ndarray], gs: list[np.ndarray]) -> Callable[[], None]:
        s, lr, beta, eps = [np.zeros_like(p) for p in ps], 1e-2, 0.99, 1e-8

        def step() -> None:
            for i, (w, dw) in enumerate(zip(ps, gs)):
                s[i] = beta * s[i] + (1 - beta) * dw**2
                w -= lr * dw / (np.sqrt(s[i]) + eps)

        return step

    def adagrad(ps: list[np.ndarray], gs: list[np.ndarray]) -> Callable[[], None]:
        s, lr, eps = [np.zeros_like(p) for p in ps], 1e-2, 1e-10

        def step() -> None:
            for i, (w, dw) in enumerate(zip(ps, gs)):
                s[i] = s[i] + dw**2
                w -= lr * dw / (np.sqrt(s[i]) + eps)

        return step

    def sgd(ps: list[np.ndarray], gs: list[np.ndarray]) -> Callable[[], None]:
        b = [np.zeros_like(p) for p in ps]

        def step() -> None:
            for i, (w, dw) in enumerate(zip(ps, gs)):
                b[i] = 0.9 * b[i] + dw
                w -= 1e-3 * b[i]

        return step

    return {"adam": adam, "momentum": momentum, "rmsprop": rmsprop, "adagrad": adagrad, "sgd": sgd}.get(name)


def _state_elements(name: str, shapes: Sequence[tuple[int, ...]]) -> int:
    """The elements of state the algorithm keeps for parameters of these shapes (Adafactor's row and column averages
    are far fewer than its parameters' elements)."""
    spec = descend.REGISTRY[name]
    hp = spec.make(**KWARGS.get(name, {}))
    return sum(int(np.prod(s)) for shape in shapes for s in spec.slots_for(hp, shape).values())


def _traffic_slots(name: str, shapes: Sequence[tuple[int, ...]]) -> int:
    """The roofline's state slots: the state's elements in units of the parameters' (rounded)."""
    n = sum(int(np.prod(s)) for s in shapes)
    return round(_state_elements(name, shapes) / n) if n else 0


def _memory_bound(name: str) -> bool:
    """Whether the algorithm's step is bound by memory traffic, so that a roofline and GB/s say something: an
    elementwise rule, or a rule over whole tensors that a kernel body runs in a few passes (Adafactor's); not Muon's,
    whose step is matrix products."""
    return not descend.REGISTRY[name].whole_tensor or kernels.shaped(name)


def _contestants(
    name: str,
    params: list[np.ndarray],
    grads: list[np.ndarray],
    which: Sequence[str],
    formats: Sequence[str] = ("float32",),
) -> dict[str, Callable[[], None]]:
    """label -> a function that runs one step."""
    out: dict[str, Callable[[], None]] = {}
    tparams = None
    kwargs = KWARGS.get(name, {})
    spec = descend.REGISTRY[name]
    if "descend" in which:
        backend = "fused" if kernels.supports(name, "float32") else "auto"  # Muon has no kernel: its reference
        opt = descend.OPTIMIZERS[name](params, backend=backend, **kwargs)
        out["descend (NumPy)"] = lambda: opt.step(grads)
    torch = _import("torch")
    if torch is not None:
        tparams = [torch.from_numpy(p) for p in params]
        for tp, g in zip(tparams, grads):
            tp.grad = torch.from_numpy(g)
        dt = _import("descend.torch")
        if "descend.torch" in which and dt is not None and hasattr(dt, "OPTIMIZERS"):
            topt = dt.OPTIMIZERS[name](tparams, **kwargs)
            out["descend.torch"] = topt.step
        if "torch" in which and spec.torch_name and hasattr(torch.optim, spec.torch_name):
            cls = getattr(torch.optim, spec.torch_name)
            variants = [("torch.optim", {})]
            if "foreach" in inspect.signature(cls).parameters:  # torch's Muon has no foreach path
                variants.append(("torch foreach", {"foreach": True}))
            if spec.torch_name in TORCH_FUSED:
                variants.append(("torch fused", {"fused": True}))
            for label, extra in variants:
                out[label] = cls(tparams, **kwargs, **extra).step
        if "torch" in which and name in PEERS and _import(PEERS[name][0]) is not None:
            out.update(_peer_steps(torch, name, params, grads))
    out.update(bench_lowbit.contestants(name, params, grads, tparams, which, formats))
    if "naive" in which and _naive(name) is not None:
        out["naive NumPy"] = _naive(name)(params, grads)
    if "optax" in which:
        step = _optax_step(name, params, grads)
        if step is not None:
            out["optax (jit)"] = step
    if "roofline" in which and kernels.available()[0] and _memory_bound(name):
        k = _traffic_slots(name, [p.shape for p in params])
        extra = [[np.zeros_like(p) for p in params] for _ in range(k)]
        out["roofline"] = lambda: kernels.roofline(params, grads, extra)
    return out


def _peer_steps(torch: Any, name: str, params: list[np.ndarray], grads: list[np.ndarray]) -> dict[str, Any]:
    """The peer package's multi-tensor step and its for-loop step, each on its own copies (a peer may divide the
    gradients in place), in train mode where the peer has modes."""
    module, cls_name, label, kwargs, foreach = PEERS[name]
    cls = getattr(_import(module), cls_name)
    out = {}
    for suffix, extra in (("", foreach), (" for-loop", {"foreach": False})):
        copies = [torch.from_numpy(p.copy()) for p in params]
        for t, g in zip(copies, grads):
            t.grad = torch.from_numpy(g.copy())
        opt = cls(copies, **kwargs, **extra)
        if hasattr(opt, "train"):
            opt.train()
        out[label + suffix] = opt.step
    return out


def _optax_step(name: str, params: list[np.ndarray], grads: list[np.ndarray]) -> Callable[[], None] | None:
    optax, jax = _import("optax"), _import("jax")
    # optax's transformations with the same rule as descend's defaults (descend's Momentum has no optax twin)
    names = ("sgd", "rmsprop", "adagrad", "adadelta", "adam", "adamw", "adamax", "nadam", "radam")
    if optax is None or jax is None or name not in names:
        return None
    tx = getattr(optax, name)(1e-3)
    ps = [jax.numpy.array(p) for p in params]
    gs = [jax.numpy.array(g) for g in grads]
    box = [ps, tx.init(ps)]

    def apply(p: Any, s: Any, g: Any) -> Any:
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    update = jax.jit(apply, donate_argnums=(0, 1))  # params and state updated in place, optax's fastest use

    def step() -> None:
        box[0], box[1] = update(box[0], box[1], gs)
        jax.block_until_ready(box[0])

    return step


def _import(module: str) -> Any:
    if importlib.util.find_spec(module.split(".")[0]) is None:
        return None
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def run(
    case: str,
    name: str,
    repeats: int = 9,
    which: Sequence[str] = ("descend", "descend.torch", "torch", "naive", "optax", "roofline"),
    formats: Sequence[str] = ("float32",),
) -> list[dict[str, Any]]:
    """Time one algorithm on one case; returns one row per contestant (median ms, GB/s, fraction of the roofline)."""
    shapes = CASES[case]()
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(s, dtype=np.float32) * 0.1 for s in shapes]
    grads = [rng.standard_normal(s, dtype=np.float32) * 0.01 for s in shapes]
    contestants = _contestants(name, params, grads, which, formats)
    times: dict[str, list[float]] = {label: [] for label in contestants}
    for step in contestants.values():
        step()  # warm-up: state allocation, first-touch, compilation
    for _ in range(repeats):
        for label, step in contestants.items():
            t0 = time.perf_counter()
            step()
            times[label].append(time.perf_counter() - t0)
    n = sum(int(np.prod(s)) for s in shapes)
    state = _state_elements(name, shapes)
    # reads: param, grad, the state; writes: param, the state (each state element in the row's own storage)
    roof = statistics.median(times["roofline"]) if "roofline" in times else None
    bound = _memory_bound(name)
    rows = []
    for label, ts in times.items():
        ms = statistics.median(ts) * 1e3
        nbytes = 4 * 3 * n + 2 * state * bench_lowbit.state_bytes(label)
        rows.append(
            {
                "case": case,
                "algorithm": name,
                "contestant": label,
                "tensors": len(shapes),
                "elements": n,
                "ms": ms,
                "GB/s": nbytes / (ms * 1e-3) / 1e9 if bound else None,
                "roofline": (roof * 1e3 / ms) if roof else None,
            }
        )
    del contestants, params, grads
    gc.collect()
    return rows


def takes(name: str, case: str) -> bool:
    """Whether algorithm ``name`` takes every parameter of ``case`` (Muon: matrices only)."""
    ndim = descend.REGISTRY[name].param_ndim
    return ndim is None or all(len(shape) == ndim for shape in CASES[case]())


def _ratio(rows: list[dict[str, Any]], num: str, den: str) -> float | None:
    by = {r["contestant"]: r["ms"] for r in rows}
    return by[den] / by[num] if num in by and den in by else None


def stamp() -> str:
    """CPU model, threads, instruction set, versions and date, one line each."""
    cpu = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    torch = _import("torch")
    lines = [
        f"- CPU: {cpu}, {os.cpu_count()} logical cores; kernels run with {kernels.isa()}, "
        f"{kernels.get_num_threads() if kernels.available()[0] else 0} threads"
        + (f"; torch uses {torch.get_num_threads()} threads" if torch else ""),
        f"- descend {descend.__version__}, NumPy {np.__version__}, Python {platform.python_version()}"
        + (f", torch {torch.__version__}" if torch else "")
        + (", optax installed" if _import("optax") else ", optax not installed"),
        f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}"
        + (
            f"; load average {os.getloadavg()[0]:.1f} (other work on the machine slows every contestant)"
            if hasattr(os, "getloadavg")
            else ""
        ),
    ]
    return "\n".join(lines)


def publish(lines: list[str], out: str | None) -> None:
    """Print a benchmark's Markdown section and, where ``out`` names a file, append it there."""
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        with open(out, "a", encoding="utf-8") as fh:
            fh.write("\n" + text)


def table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of the rows, with each contestant's speed relative to torch's default and fused steps."""
    out = [
        "| case | algorithm | contestant | ms | GB/s | roofline | vs torch.optim | vs torch fused |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["case"], r["algorithm"]), []).append(r)
    for group in groups.values():
        for r in group:
            labels = {row["contestant"] for row in group}
            baseline = next((k for k in ["torch.optim", *(p[2] for p in PEERS.values())] if k in labels), "")
            vs_default = _ratio(group, r["contestant"], baseline)
            vs_fused = _ratio(group, r["contestant"], "torch fused")
            roof = f"{r['roofline']:.2f}" if r["roofline"] else ""
            rate = f"{r['GB/s']:.1f}" if r["GB/s"] is not None else ""
            out.append(
                f"| {r['case']} | {r['algorithm']} | {r['contestant']} | {r['ms']:.2f} | {rate} | {roof} | "
                f"{f'{vs_default:.2f}x' if vs_default else ''} | {f'{vs_fused:.2f}x' if vs_fused else ''} |"
            )
    return "\n".join(out)


QUICK: dict[str, Any] = {"cases": ["mlp"], "algorithms": ["sgd", "adam"], "repeats": 3}


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: choose cases, algorithms, contestants, repeats and threads; print and optionally write a report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    fused = [name for name in ELEMENTWISE if name in KERNELS]
    parser.add_argument(
        "--algorithms",
        nargs="+",
        default=fused,
        choices=list(ELEMENTWISE),
        help="default: the algorithms with a fused kernel; Muon's step is matrix products, seconds per "
        "GPT-2 layer on a small CPU: ask for it (--algorithms muon --cases gpt2-small-layer)",
    )
    parser.add_argument(
        "--contestants",
        nargs="+",
        default=["descend", "descend.torch", "torch", "naive", "optax", "roofline"],
        help="who runs; besides the default ones, the 8-bit peers bitsandbytes and torchao",
    )
    parser.add_argument(
        "--state-dtypes",
        nargs="+",
        default=["float32"],
        choices=list(bench_lowbit.FORMATS),
        help="state formats of descend's rows: float32 (torch's), bfloat16, blockwise8",
    )
    parser.add_argument("--repeats", type=int, default=9, help="timed rounds; the median is reported (default 9)")
    parser.add_argument("--threads", type=int, default=0, help="threads for descend and torch (default: all)")
    parser.add_argument("--out", default=None, help="write a Markdown report here (e.g. docs/benchmarks.md)")
    parser.add_argument("--append", action="store_true", help="add this run as a section of --out, keeping the rest")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a quick look: unless given, cases {' '.join(QUICK['cases'])}, algorithms "
        f"{' '.join(QUICK['algorithms'])}, {QUICK['repeats']} repeats (seconds, not minutes)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        given = set(argv or sys.argv[1:])
        for option, value in QUICK.items():
            if f"--{option}" not in given:
                setattr(args, option, value)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    torch = _import("torch")
    if args.threads:
        kernels.set_num_threads(args.threads)
        if torch:
            torch.set_num_threads(args.threads)
    print(stamp())
    rows: list[dict[str, Any]] = []
    jobs = [(case, name) for case in args.cases for name in args.algorithms if takes(name, case)]
    if not jobs:
        parser.error(
            "none of the algorithms takes the parameters of any of the cases (Muon takes gpt2-small-hidden "
            "and gpt2-small-layer)"
        )
    print("\n".join(table([]).split("\n")[:2]), flush=True)  # the header once, the rows as they come
    began = time.perf_counter()
    for k, (case, name) in enumerate(jobs):
        elapsed = time.perf_counter() - began
        left = f", about {elapsed / k * (len(jobs) - k):.0f} s left" if k else ""
        print(f"[{k + 1}/{len(jobs)}] {case} {name} ({elapsed:.0f} s so far{left})", file=sys.stderr, flush=True)
        new = run(case, name, args.repeats, args.contestants, args.state_dtypes)
        rows += new
        print(table(new).split("\n", 2)[2], flush=True)
    text = table(rows)
    if args.out:
        command = "python benchmarks/step_speed.py " + " ".join(argv if argv is not None else sys.argv[1:])
        section = SECTION.format(stamp=stamp(), repeats=args.repeats, table=text, command=command.strip())
        exists = args.append and os.path.exists(args.out)
        with open(args.out, "a" if exists else "w") as f:
            f.write(section if exists else REPORT + section)
        print(f"wrote {args.out}")
    return 0


REPORT = """# Benchmarks: step speed

One optimizer step on float32 parameters, the median of interleaved rounds (one step of every contestant per round,
after a warm-up step). `roofline` is the time of a kernel with the same loads and stores and trivial math, divided by
the contestant's time. GB/s counts the bytes the algorithm must move (param, grad and state read; param and state
written). `vs torch.optim` and `vs torch fused` are speedups: torch's time over the contestant's (for an algorithm
torch.optim lacks, `vs torch.optim` is against the default step of the package that runs it in torch operations).
Written by `python benchmarks/step_speed.py` (`descend.bench`); each section below is one run.
"""

SECTION = """
## `{command}`

Median of {repeats} rounds.

{stamp}

{table}
"""
