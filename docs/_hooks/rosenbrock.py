"""Each algorithm's path on the Rosenbrock function, drawn for its page of the documentation.

f(x, y) = (1 - x)^2 + 100 (y - x^2)^2, minimum 0 at (1, 1), started from (-1.2, 1) as is customary. Every algorithm
runs with its torch-convention defaults except the learning rate in ``LEARNING_RATES``, for ``STEPS`` steps; a
closure-driven one (L-BFGS) runs one iteration per step (its spec's ``one_iteration``). An algorithm that takes
matrices only (Muon) steps the point as a 1 x 2 matrix, whose orthogonalisation is its momentum's direction: a step
of the learning rate's length.

The learning rates were picked once as the value with the lowest final f from the grid ``GRID``; rerun the search
with ``python docs/_hooks/rosenbrock.py --tune`` (about a minute) and update ``LEARNING_RATES`` if it changes.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np

START = (-1.2, 1.0)
STEPS = 3000
GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)
LEARNING_RATES = {
    "sgd": 1e-3,
    "momentum": 3e-2,
    "rmsprop": 3e-3,
    "adagrad": 1.0,
    "adadelta": 1e-1,
    "adam": 3e-2,
    "adamw": 3e-2,
    "adamax": 3e-1,
    "nadam": 3e-2,
    "radam": 3e-3,
    "lbfgs": 1.0,
    "muon": 3e-3,
}


def value(p: np.ndarray) -> float:
    x, y = float(p[0]), float(p[1])
    return (1.0 - x) ** 2 + 100.0 * (y - x * x) ** 2


def gradient(p: np.ndarray) -> np.ndarray:
    x, y = p
    return np.array([-2.0 * (1.0 - x) - 400.0 * x * (y - x * x), 200.0 * (y - x * x)])


@dataclass
class Path:
    name: str
    lr: float
    points: np.ndarray  # (steps + 1, 2), the start first
    diverged: bool

    @property
    def final(self) -> np.ndarray:
        return self.points[-1]

    @property
    def final_value(self) -> float:
        return value(self.final) if not self.diverged else math.inf


def rate(name: str) -> float:
    """The learning rate of ``name``'s picture: the tuned one in ``LEARNING_RATES``, or for an algorithm not listed
    yet, the best of ``GRID`` found now (a few seconds)."""
    if name not in LEARNING_RATES:
        LEARNING_RATES[name] = min((run(name, lr).final_value, lr) for lr in GRID)[1]
    return LEARNING_RATES[name]


def run(name: str, lr: float | None = None, steps: int = STEPS) -> Path:
    """The path of ``name`` from ``START``; it stops early (``diverged``) if the point leaves [-1e3, 1e3]^2."""
    import descend

    lr = rate(name) if lr is None else lr
    spec = descend.REGISTRY[name]
    shape = (1, 2) if spec.param_ndim == 2 else (2,)
    p = np.array(START, dtype=np.float64).reshape(shape)
    if spec.elementwise:
        opt = descend.OPTIMIZERS[name]([p], lr=lr, backend="reference")
    else:  # closure-driven (L-BFGS): one iteration per step, so that every iteration is a point of the path
        opt = descend.OPTIMIZERS[name]([p], lr=lr, **spec.one_iteration)
    points = [p.reshape(2).copy()]
    for _ in range(steps):
        g = gradient(p.reshape(2))
        if not (np.all(np.isfinite(g)) and np.abs(p).max() < 1e3):
            return Path(name, lr, np.array(points), True)
        opt.step([g.reshape(shape)] if spec.elementwise else lambda: (value(p), [gradient(p)]))
        points.append(p.reshape(2).copy())
    return Path(name, lr, np.array(points), not np.all(np.isfinite(p)))


def figure(path: Path, title: str) -> bytes:
    """A small PNG of the contours of f and the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs, ys = np.meshgrid(np.linspace(-2.0, 2.0, 300), np.linspace(-1.0, 3.0, 300))
    zs = (1.0 - xs) ** 2 + 100.0 * (ys - xs**2) ** 2
    fig, ax = plt.subplots(figsize=(5.0, 4.0), dpi=100)
    ax.contour(xs, ys, np.log10(zs + 1e-3), levels=20, cmap="Greys", linewidths=0.6)
    pts = path.points
    ax.plot(pts[:, 0], pts[:, 1], "-", color="tab:blue", linewidth=1.2, label=f"{title}, lr={path.lr:g}")
    ax.plot(*START, "o", color="tab:green", label="start (-1.2, 1)")
    ax.plot(1.0, 1.0, "*", color="tab:red", markersize=12, label="minimum (1, 1)")
    ax.set_xlim(-2.0, 2.0)
    ax.set_ylim(-1.0, 3.0)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(f"{title} on Rosenbrock, {len(pts) - 1} steps")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    plt.close(fig)
    return out.getvalue()


def tune() -> dict[str, float]:
    """The learning rate of ``GRID`` with the lowest final value, for every algorithm (printed as it goes)."""
    from descend.algorithms import REGISTRY

    best = {}
    for name in REGISTRY:
        results = [(run(name, lr).final_value, lr) for lr in GRID]
        for v, lr in results:
            print(f"{name:10s} lr={lr:<8g} f={v:.3g}")
        best[name] = min(results)[1]
    return best


if __name__ == "__main__":
    import sys

    if "--tune" in sys.argv:
        print(tune())
    else:
        for name in LEARNING_RATES:
            path = run(name)
            print(f"{name:10s} lr={path.lr:<8g} final={path.final} f={path.final_value:.3g}")
