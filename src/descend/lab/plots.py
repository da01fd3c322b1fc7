"""Pictures of a comparison: loss curves with their spread over seeds, contour plots with every optimizer's path,
an animation of the paths, and the article's line fit. Matplotlib with the Agg backend; every file is written
atomically (to a temporary name, then renamed)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from descend.lab.problems import Problem  # noqa: E402
from descend.lab.runner import RunResult  # noqa: E402
from descend.lab.store import write_bytes  # noqa: E402

__all__ = ["colors_for", "contour_plot", "fit_line_plot", "loss_plot", "trajectory_gif"]

# Okabe-Ito and Tableau colours, chosen to stay apart from each other and from the contour map's blues and greys.
PALETTE = (
    "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f",
    "#000000", "#f0e442",
)
LINESTYLES = ("-", (0, (5, 2)))


def colors_for(names: Sequence[str]) -> dict[str, str]:
    """One distinct colour per optimizer, in the order given (the same in every picture of a report)."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def _style(i: int) -> Any:
    """Solid and dashed lines in turn, so that paths lying on top of each other stay visible."""
    return LINESTYLES[i % len(LINESTYLES)]


def _save(fig: plt.Figure, path: str | Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return write_bytes(path, buffer.getvalue())


def _label(name: str, hp: Mapping[str, Any]) -> str:
    lr = hp.get("lr")
    return f"{name} (lr {lr:.3g})" if isinstance(lr, float) else name


def loss_plot(problem: Problem, results: Mapping[str, RunResult], path: str | Path) -> Path:
    """Loss (minus the known minimum) against step: the median over seeds as a line, the range as a band."""
    colors = colors_for(list(results))
    fig, ax = plt.subplots(figsize=(8.0, 4.8))
    shift = problem.f_min if problem.f_min is not None else 0.0
    all_values = np.concatenate([np.asarray(r.loss).ravel() - shift for r in results.values()])
    finite = all_values[np.isfinite(all_values)]
    log = finite.size > 0 and np.all(finite >= 0) and finite.max() > 0
    floor = 1e-12
    for i, (name, r) in enumerate(results.items()):
        values = np.asarray(r.loss, dtype=np.float64) - shift
        if log:
            values = np.maximum(values, floor)
        with np.errstate(all="ignore"):
            median = np.nanmedian(values, axis=1) if values.shape[1] > 1 else values[:, 0]
            low, high = np.nanmin(values, axis=1), np.nanmax(values, axis=1)
        steps = np.asarray(r.steps)
        ax.plot(steps, median, color=colors[name], linestyle=_style(i), lw=1.8, label=_label(name, r.hyperparams))
        if values.shape[1] > 1:
            ax.fill_between(steps, low, high, color=colors[name], alpha=0.08, lw=0)
    if log:
        ax.set_yscale("log")
        top = np.nanmax(finite) * 3
        bottom = max(floor, np.nanmin(np.maximum(finite, floor)) / 3)
        ax.set_ylim(bottom, top)
    ylabel = "loss − f*" if problem.f_min is not None and problem.f_min != 0 else "loss"
    ax.set_ylabel(ylabel + (" (log scale)" if log else ""))
    ax.set_xlabel("step")
    runs = len(next(iter(results.values())).seeds)
    ax.set_title(f"{problem.title}\nmedian over {runs} runs, band: min to max", fontsize=11)
    if problem.tol is not None and log:
        ax.axhline(problem.tol, color="0.4", lw=0.8, ls=":", zorder=0)
        ax.annotate("tolerance", (1.0, problem.tol), xycoords=("axes fraction", "data"), ha="right", va="bottom",
                    fontsize=8, color="0.4")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=9)
    return _save(fig, path)


def _grid(problem: Problem, n: int = 160) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x0, x1, y0, y1 = problem.box
    xs, ys = np.meshgrid(np.linspace(x0, x1, n), np.linspace(y0, y1, n))
    return xs, ys, np.asarray(problem.surface(xs, ys), dtype=np.float64)


def _background(ax: plt.Axes, problem: Problem) -> None:
    xs, ys, zs = _grid(problem)
    shift = problem.f_min if problem.f_min is not None else float(np.nanmin(zs))
    gap = zs - shift
    if np.nanmin(gap) >= 0 and np.nanmax(gap) > 0 and np.nanmax(gap) / max(np.nanpercentile(gap, 5), 1e-12) > 50:
        low = max(np.nanpercentile(gap, 0.5), np.nanmax(gap) * 1e-8, 1e-8)
        levels = np.logspace(np.log10(low), np.log10(np.nanmax(gap)), 24)
        ax.contourf(xs, ys, np.maximum(gap, low), levels=levels, norm=LogNorm(), cmap="Greys", alpha=0.45)
        ax.contour(xs, ys, np.maximum(gap, low), levels=levels[::2], norm=LogNorm(), colors="0.6", linewidths=0.4)
    else:
        ax.contourf(xs, ys, zs, levels=24, cmap="Greys", alpha=0.45)
        ax.contour(xs, ys, zs, levels=12, colors="0.6", linewidths=0.4)
    x0, x1, y0, y1 = problem.box
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("x" if problem.family != "stochastic" or problem.name != "line-fit" else "a (slope)")
    ax.set_ylabel("y" if problem.name != "line-fit" else "b (intercept)")
    ax.set_aspect("equal" if abs((x1 - x0) - (y1 - y0)) < 1e-9 else "auto")


def _marks(ax: plt.Axes, problem: Problem, start: np.ndarray) -> None:
    ax.plot(*start, "o", color="white", mec="black", ms=9, zorder=5, label="start")
    if problem.optima is not None:
        opt = np.asarray(problem.optima)
        ax.plot(opt[:, 0], opt[:, 1], "*", color="gold", mec="black", ms=15, zorder=5, label="minimum")


def contour_plot(problem: Problem, results: Mapping[str, RunResult], path: str | Path) -> Path:
    """The function's contours with the path of the first run of every optimizer, the start and the minima."""
    colors = colors_for(list(results))
    fig, ax = plt.subplots(figsize=(8.0, 6.4))
    _background(ax, problem)
    start = None
    for i, (name, r) in enumerate(results.items()):
        if r.path is None:
            continue
        pts = np.asarray(r.path)[:, 0, :]
        start = pts[0]
        ax.plot(pts[:, 0], pts[:, 1], color=colors[name], linestyle=_style(i), lw=1.6, alpha=0.9,
                label=_label(name, r.hyperparams))
        last = pts[np.isfinite(pts).all(axis=1)][-1]
        ax.plot(*last, "o", color=colors[name], mec="black", mew=0.6, ms=6, zorder=4)
    if start is not None:
        _marks(ax, problem, start)
    ax.set_title(f"{problem.title}\npath of run 1 from the usual start; dot: where each optimizer ends", fontsize=11)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=9)
    return _save(fig, path)


def trajectory_gif(
    problem: Problem, results: Mapping[str, RunResult], path: str | Path, frames: int = 60, fps: int = 12
) -> Path:
    """An animation of every optimizer's path (first run) over the contours, the classic Beale and saddle pictures.

    The contours are drawn once; each frame redraws only the paths on top of them (blitting) and Pillow writes the
    frames as a looping GIF.
    """
    from PIL import Image

    colors = colors_for(list(results))
    paths = {n: np.asarray(r.path)[:, 0, :] for n, r in results.items() if r.path is not None}
    if not paths:
        raise ValueError(f"problem {problem.name!r} has no 2-D paths to animate")
    n_steps = max(len(p) for p in paths.values()) - 1
    # Early steps move most: sample the frames more densely there.
    ticks = np.unique(np.round(np.geomspace(1, n_steps + 1, frames) - 1).astype(int))
    fig, ax = plt.subplots(figsize=(7.2, 5.4), dpi=80)
    _background(ax, problem)
    _marks(ax, problem, next(iter(paths.values()))[0])
    lines, heads = {}, {}
    for i, name in enumerate(paths):
        (lines[name],) = ax.plot([], [], color=colors[name], linestyle=_style(i), lw=1.8, label=name, animated=True)
        (heads[name],) = ax.plot([], [], "o", color=colors[name], mec="black", mew=0.6, ms=7, animated=True)
    counter = ax.text(0.02, 0.97, "", transform=ax.transAxes, va="top", fontsize=10, animated=True,
                      bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"})
    ax.set_title(problem.title, fontsize=11)
    legend = ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=9)
    for handle in legend.legend_handles:
        handle.set_animated(False)
    fig.tight_layout()
    fig.canvas.draw()
    background = fig.canvas.copy_from_bbox(fig.bbox)
    images = []
    try:
        for t in ticks:
            fig.canvas.restore_region(background)
            for name, pts in paths.items():
                seen = pts[: int(t) + 1]
                seen = seen[np.isfinite(seen).all(axis=1)]
                lines[name].set_data(seen[:, 0], seen[:, 1])
                heads[name].set_data(seen[-1:, 0], seen[-1:, 1])
                ax.draw_artist(lines[name])
                ax.draw_artist(heads[name])
            counter.set_text(f"step {int(t)}")
            ax.draw_artist(counter)
            fig.canvas.blit(fig.bbox)
            rgba = np.asarray(fig.canvas.buffer_rgba())
            images.append(Image.fromarray(rgba[..., :3].copy()).quantize(colors=255, method=Image.Quantize.FASTOCTREE))
    finally:
        plt.close(fig)
    durations = [int(1000 / fps)] * (len(images) - 1) + [1500]  # hold the last frame
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0)
    return write_bytes(path, buffer.getvalue())


def fit_line_plot(
    x: np.ndarray, y: np.ndarray, a_history: Sequence[float], b_history: Sequence[float],
    loss_history: Sequence[float], title: str, path: str | Path,
) -> Path:
    """The article's line fit: the data with the fitted line (and a few earlier ones), and the loss per update."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11.0, 4.4))
    left.scatter(x, y, color="black", s=18, zorder=3, label="data")
    xs = np.linspace(float(np.min(x)), float(np.max(x)), 2)
    count = len(a_history)
    shown = sorted({0, count // 8, count // 4, count // 2, count - 1})
    cmap = plt.get_cmap("viridis")
    for j, i in enumerate(shown):
        final = i == count - 1
        left.plot(xs, a_history[i] * xs + b_history[i], color="#d62728" if final else cmap(j / len(shown)),
                  lw=2.2 if final else 1.0, alpha=1.0 if final else 0.7,
                  label=f"after {i} updates: y = {a_history[i]:.3f}x + {b_history[i]:.3f}")
    left.set_xlabel("x")
    left.set_ylabel("y")
    left.legend(fontsize=8, frameon=False)
    left.set_title("data and fitted lines", fontsize=11)
    right.plot(np.arange(count), loss_history, color="#1f77b4", lw=1.5)
    if min(loss_history) > 0:
        right.set_yscale("log")
    right.set_xlabel("update")
    right.set_ylabel("mean squared error (log scale)" if min(loss_history) > 0 else "mean squared error")
    right.set_title("loss over all points after each update", fontsize=11)
    right.grid(True, alpha=0.3)
    fig.suptitle(title, fontsize=12)
    return _save(fig, path)
