"""L-BFGS step time: descend.torch.LBFGS and descend.LBFGS (NumPy) against torch.optim.LBFGS.

Each contestant owns its parameters and state and minimises the same problem from the same start; rounds are
interleaved (one ``step(closure)`` of each contestant per round, after a warm-up round) and each figure is the median
over the rounds, in milliseconds per step, with its ratio to torch.optim.LBFGS. A step runs ``max_iter`` iterations
of the method, so it is dominated by the closure on a real model: the "quadratic" case has a closure that costs about
as much as one pass over the parameters, so the optimizer's own work shows.

    python benchmarks/lbfgs_speed.py [--n 1000000] [--rounds 15] [--line-search] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

import descend
import descend.torch as dt


def quadratic(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and curvatures of 0.5 * sum(a * x**2), a in [1, 10]: a closure of a few passes over x."""
    rng = np.random.default_rng(0)
    return rng.standard_normal(n), np.linspace(1.0, 10.0, n)


def torch_contestant(cls: type, x0: np.ndarray, a: np.ndarray, **kwargs: object) -> Callable[[], None]:
    x = torch.nn.Parameter(torch.from_numpy(x0.copy()))
    curv = torch.from_numpy(a)
    opt = cls([x], **kwargs)

    def closure() -> torch.Tensor:
        with torch.no_grad():
            x.grad = curv * x
            return 0.5 * torch.dot(x.grad, x)

    return lambda: opt.step(closure)


def numpy_contestant(x0: np.ndarray, a: np.ndarray, **kwargs: object) -> Callable[[], None]:
    x = x0.copy()
    opt = descend.LBFGS([x], **kwargs)

    def closure() -> tuple[float, list[np.ndarray]]:
        g = a * x
        return 0.5 * float(g @ x), [g]

    return lambda: opt.step(closure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="parameters (default 1e6)")
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds; the median is reported")
    parser.add_argument("--line-search", action="store_true", help="line_search_fn='strong_wolfe'")
    parser.add_argument("--threads", type=int, default=0, help="torch's threads (default: torch's own choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    x0, a = quadratic(args.n)
    # a small history and few iterations, so that every round does the same work (no early stop)
    kwargs = {"max_iter": 5, "history_size": 10, "tolerance_grad": 0.0, "tolerance_change": 0.0}
    if args.line_search:
        kwargs["line_search_fn"] = "strong_wolfe"
    contestants = {
        "torch.optim.LBFGS": torch_contestant(torch.optim.LBFGS, x0, a, **kwargs),
        "descend.torch.LBFGS": torch_contestant(dt.LBFGS, x0, a, **kwargs),
        "descend.LBFGS (NumPy)": numpy_contestant(x0, a, **kwargs),
    }
    times: dict[str, list[float]] = {name: [] for name in contestants}
    for step in contestants.values():
        step()  # warm-up
    for _ in range(args.rounds):
        for name, step in contestants.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["torch.optim.LBFGS"])
    print(f"n={args.n}, {kwargs}, torch {torch.__version__}, {torch.get_num_threads()} threads, {args.rounds} rounds")
    print(f"{'contestant':24s} {'ms/step':>9s} {'vs torch':>9s}")
    for name, ts in times.items():
        ms = statistics.median(ts) * 1e3
        print(f"{name:24s} {ms:9.2f} {ms / (base * 1e3):9.2f}")


if __name__ == "__main__":
    main()
