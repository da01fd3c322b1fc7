"""Pictures of a comparison: loss curves with their spread over seeds, contour plots with every optimizer's path,
an animation of the paths, and the article's line fit. Figures are drawn on matplotlib's Agg canvas without pyplot
(no global backend is set); every file is written atomically (to a temporary name, then renamed)."""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

from descend.lab.problems import Problem
from descend.lab.runner import RunResult
from descend.lab.store import write_bytes

__all__ = ["colors_for", "contour_plot", "fit_line_plot", "loss_plot", "stop_note", "trajectory_gif", "visible_path"]

# Okabe-Ito and Tableau colours, chosen to stay apart from each other and from the contour map's blues and greys.
# No grey: the other optimizers' curves are drawn grey behind each one's own.
PALETTE = (
    "#d62728",
    "#1f77b4",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#000075",
    "#000000",
    "#f0e442",
)
LINESTYLES = ("-", (0, (5, 2)))


def colors_for(names: Sequence[str]) -> dict[str, str]:
    """One distinct colour per optimizer, in the order given (the same in every picture of a report)."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def _style(i: int) -> Any:
    """Solid and dashed lines in turn, so that paths lying on top of each other stay visible."""
    return LINESTYLES[i % len(LINESTYLES)]


def _figure(**kwargs: Any) -> Figure:
    """A figure drawn by the Agg canvas, outside pyplot, so that no global backend or figure list is touched."""
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write the figure as a palette PNG (256 colours, a third to a quarter of the size of a full-colour one and
    the same picture to the eye). Layouts are fixed by hand: automatic ones measure every label and cost seconds."""
    from PIL import Image

    fig.set_dpi(dpi)
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    image = Image.fromarray(np.ascontiguousarray(rgb)).quantize(colors=256, method=Image.Quantize.FASTOCTREE)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return write_bytes(path, buffer.getvalue())


def _label(name: str, hp: Mapping[str, Any]) -> str:
    lr = hp.get("lr")
    return f"{name} (lr {lr:.3g})" if isinstance(lr, float) else name


def stop_note(result: RunResult) -> str:
    """What happened to the runs that stopped early, in words ("" when none did): ``all 3 runs diverged by step
    12``, ``1 of 3 runs left the function's domain at step 40``."""
    stopped = [(why, step) for why, step in zip(result.stopped, result.stop_step) if why]
    if not stopped and not result.stopped:  # results saved before reasons were recorded
        dead = ~np.isfinite(np.asarray(result.final_loss, dtype=np.float64))
        stopped = [("diverged", -1)] * int(np.sum(dead))
    if not stopped:
        return ""
    n = len(result.seeds)
    notes = []
    for why, words in (("diverged", "diverged"), ("undefined", "left the function's domain")):
        steps = [step for w, step in stopped if w == why]
        if not steps:
            continue
        who = (f"all {n} runs" if n > 1 else "the run") if len(steps) == n else f"{len(steps)} of {n} runs"
        last = max(steps)
        when = "" if last < 0 else (f" at step {last}" if len(steps) == 1 else f" by step {last}")
        notes.append(f"{who} {words}{when}")
    return "; ".join(notes)


def _loss_values(problem: Problem, results: Mapping[str, RunResult]) -> tuple[dict[str, tuple], bool, float]:
    """Per optimizer (steps, median, low, high) of the loss minus f*, whether to use a log scale, and the floor."""
    shift = problem.f_min if problem.f_min is not None else 0.0
    values = {name: np.asarray(r.loss, dtype=np.float64) - shift for name, r in results.items()}
    finite = np.concatenate([v.ravel() for v in values.values()])
    finite = finite[np.isfinite(finite)]
    log = finite.size > 0 and bool(np.all(finite >= 0)) and finite.max() > 0
    floor = max(1e-12, float(finite[finite > 0].min()) / 10) if log else 0.0
    curves = {}
    for name, v in values.items():
        if log:
            v = np.maximum(v, floor)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows after a divergence
            curves[name] = (
                np.asarray(results[name].steps),
                np.nanmedian(v, axis=1),
                np.nanmin(v, axis=1),
                np.nanmax(v, axis=1),
            )
    return curves, log, floor


def _limits(curves: Mapping[str, tuple], log: bool) -> tuple[float, float] | None:
    """y-limits that hold every curve's start and every final value (the median's and the band's), and as much of
    the rest as stays within a factor of 1000 (log) or ten ranges (linear) of those, so that a run on its way to
    infinity cannot squash the others into a line."""
    must, rest = [], []
    for _, median, low, high in curves.values():
        for v in (median, low, high):
            v = np.asarray(v, dtype=np.float64)
            ok = v[np.isfinite(v)]
            if ok.size:
                must.append(float(ok[0]))
                rest.append(ok)
            if v.size and np.isfinite(v[-1]):
                must.append(float(v[-1]))
    if not must:
        return None
    everything = np.concatenate(rest)
    lo, hi = min(must), max(must)
    if log:
        keep = everything[(everything >= lo / 1e3) & (everything <= hi * 1e3)]
        lo, hi = min(lo, float(keep.min())), max(hi, float(keep.max()))
        if hi <= lo * 1.5:
            lo, hi = lo / 2, hi * 2
        return lo / 10**0.15, hi * 10**0.15
    span = max(hi - lo, abs(hi) * 1e-6, 1e-12)
    keep = everything[(everything >= lo - 10 * span) & (everything <= hi + 10 * span)]
    lo, hi = min(lo, float(keep.min())), max(hi, float(keep.max()))
    pad = max(hi - lo, abs(hi) * 1e-6, 1e-12) * 0.05
    return lo - pad, hi + pad


def _end_mark(ax: Axes, steps: np.ndarray, median: np.ndarray, color: str, limits: tuple[float, float] | None) -> None:
    """An x where the median curve ends early (held inside the axis when it ended above or below it)."""
    finite = np.flatnonzero(np.isfinite(median))
    if finite.size and finite[-1] < len(median) - 1:
        y = float(median[finite[-1]])
        if limits:
            y = min(max(y, limits[0]), limits[1])
        ax.plot(steps[finite[-1]], y, "x", color=color, ms=9, mew=2.2, zorder=6, clip_on=False)


def _mark_stops(
    ax: Axes, steps: np.ndarray, median: np.ndarray, color: str, note: str, limits: tuple[float, float] | None
) -> None:
    """An x where the median curve ends early, and the note in the panel."""
    if not note:
        return
    _end_mark(ax, steps, median, color, limits)
    ax.text(
        0.98,
        0.95,
        note,
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize=8,
        color=color,
        zorder=7,
        bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": color, "boxstyle": "round,pad=0.25"},
    )


def _loss_axes(ax: Axes, problem: Problem, log: bool, ylabel: bool = True, decades: float = 10.0) -> None:
    if log:
        ax.set_yscale("log")
        ax.yaxis.set_minor_formatter(NullFormatter())  # labels on every minor tick crowd the axis
        if decades < 2:  # a narrow range: label 1, 2 and 5 of each decade in plain numbers
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        if problem.tol is not None:
            ax.axhline(problem.tol, color="0.35", lw=0.8, ls=":", zorder=0)
    if ylabel:
        name = "loss − f*" if problem.f_min not in (None, 0.0) else "loss"
        ax.set_ylabel(name + (" (log scale)" if log else ""))
    ax.grid(True, which="major", alpha=0.3)


def loss_plot(problem: Problem, results: Mapping[str, RunResult], path: str | Path) -> Path:
    """Loss (minus the known minimum) against step: the median over the runs as a line, their range as a band.

    Up to four optimizers share one panel; more get one small panel each (the others' medians in grey behind), so
    the bands stay readable. The y-axis holds every run's final loss; a run that stopped early (diverged, or left
    the function's domain) ends in an x and is named in its panel or its legend entry.
    """
    colors = colors_for(list(results))
    curves, log, floor = _loss_values(problem, results)
    limits = _limits(curves, log)
    if limits:  # values far off the axis are drawn at its edge: huge ones would overflow the axis' transforms
        low_edge, high_edge = (
            (limits[0] / 10, limits[1] * 10)
            if log
            else (limits[0] - (limits[1] - limits[0]), limits[1] + (limits[1] - limits[0]))
        )
        curves = {name: (c[0], *(np.clip(v, low_edge, high_edge) for v in c[1:])) for name, c in curves.items()}
    decades = float(np.log10(limits[1] / limits[0])) if log and limits else 10.0
    runs = len(next(iter(results.values())).seeds)
    spread = f"median over {runs} runs, band: min to max" if runs > 1 else "one run"
    dotted = "; dotted line: the success tolerance" if log and problem.tol is not None else ""
    names = list(results)
    notes = {name: stop_note(results[name]) for name in names}
    if len(names) <= 4:
        fig = _figure(figsize=(8.0, 4.6))
        ax = fig.subplots()
        for i, name in enumerate(names):
            steps, median, low, high = curves[name]
            label = _label(name, results[name].hyperparams) + (f"\n{notes[name]}" if notes[name] else "")
            ax.plot(steps, median, color=colors[name], linestyle=_style(i), lw=1.8, label=label)
            if runs > 1:
                ax.fill_between(steps, low, high, color=colors[name], alpha=0.15, lw=0)
            if notes[name]:
                _end_mark(ax, steps, median, colors[name], limits)
        _loss_axes(ax, problem, log, decades=decades)
        if limits:
            ax.set_ylim(*limits)
        ax.set_xlabel("step")
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=9)
        ax.set_title(f"{problem.title}\n{spread}{dotted}", fontsize=11)
        fig.subplots_adjust(left=0.1, right=0.7, top=0.86, bottom=0.11)
        return _save(fig, path)
    cols = 3
    rows = -(-len(names) // cols)
    fig = _figure(figsize=(11.5, 2.6 * rows + 0.8))
    axes = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)
    for i, name in enumerate(names):
        ax = axes[i // cols][i % cols]
        for other in names:
            if other != name:
                ax.plot(curves[other][0], curves[other][1], color="0.8", lw=0.9, zorder=1)
        steps, median, low, high = curves[name]
        if runs > 1:
            ax.fill_between(steps, low, high, color=colors[name], alpha=0.25, lw=0, zorder=2)
        ax.plot(steps, median, color=colors[name], lw=1.9, zorder=3)
        _mark_stops(ax, steps, median, colors[name], notes[name], limits)
        ax.set_title(_label(name, results[name].hyperparams), fontsize=10, color=colors[name], loc="left")
        _loss_axes(ax, problem, log, ylabel=i % cols == 0, decades=decades)
        if log and decades >= 2:  # minor ticks on nine log axes cost seconds and add little at this size
            ax.yaxis.set_minor_locator(NullLocator())
            ax.yaxis.set_major_locator(LogLocator(base=10, numticks=6))
        if i // cols == rows - 1 or i + cols >= len(names):
            ax.set_xlabel("step")
            ax.xaxis.set_tick_params(labelbottom=True)
    if limits:
        axes[0][0].set_ylim(*limits)  # shared by every panel
    for j in range(len(names), rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    fig.suptitle(f"{problem.title}\n{spread}{dotted}; grey: the other optimizers' medians", fontsize=11)
    fig.subplots_adjust(
        left=0.085,
        right=0.985,
        top=1 - 0.75 / fig.get_figheight(),
        bottom=0.45 / fig.get_figheight(),
        wspace=0.06,
        hspace=0.28,
    )
    return _save(fig, path)


def _grid(problem: Problem, n: int = 160) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x0, x1, y0, y1 = problem.box
    xs, ys = np.meshgrid(np.linspace(x0, x1, n), np.linspace(y0, y1, n))
    return xs, ys, np.asarray(problem.surface(xs, ys), dtype=np.float64)


def _background(ax: Axes, problem: Problem) -> None:
    xs, ys, zs = _grid(problem)
    finite = zs[np.isfinite(zs)]
    if finite.size >= 4 and finite.max() > finite.min():  # where f is undefined (log of a negative) stays blank
        shift = problem.f_min if problem.f_min is not None else float(finite.min())
        gap = np.ma.masked_invalid(zs - shift)
        values = finite - shift
        top = float(values.max())
        if values.min() >= 0 and top > 0 and top / max(float(np.percentile(values, 5)), 1e-12) > 50:
            low = max(float(np.percentile(values, 0.5)), top * 1e-8, 1e-8)
            levels = np.logspace(np.log10(low), np.log10(top), 24)
            ax.contourf(xs, ys, np.ma.maximum(gap, low), levels=levels, norm=LogNorm(), cmap="Greys", alpha=0.45)
            ax.contour(
                xs, ys, np.ma.maximum(gap, low), levels=levels[::2], norm=LogNorm(), colors="0.6", linewidths=0.4
            )
        else:
            levels = np.linspace(float(finite.min()), float(finite.max()), 25)
            ax.contourf(xs, ys, np.ma.masked_invalid(zs), levels=levels, cmap="Greys", alpha=0.45)
            ax.contour(xs, ys, np.ma.masked_invalid(zs), levels=levels[::2], colors="0.6", linewidths=0.4)
    x0, x1, y0, y1 = problem.box
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("x" if problem.family != "stochastic" or problem.name != "line-fit" else "a (slope)")
    ax.set_ylabel("y" if problem.name != "line-fit" else "b (intercept)")
    ax.set_aspect("equal" if abs((x1 - x0) - (y1 - y0)) < 1e-9 else "auto")


def _marks(ax: Axes, problem: Problem, start: np.ndarray) -> None:
    ax.plot(*start, "o", color="white", mec="black", ms=9, zorder=5, label="start")
    if problem.optima is not None:
        opt = np.asarray(problem.optima)
        ax.plot(opt[:, 0], opt[:, 1], "*", color="gold", mec="black", ms=15, zorder=5, label="minimum")


def visible_path(pts: np.ndarray, box: Sequence[float]) -> tuple[np.ndarray, int | None]:
    """The part of a path to draw: up to its last point before it first leaves the drawing box widened by the box's
    size on every side (or stops being finite), so that a run flying off to infinity is not drawn as a straight
    line across the picture. Returns that part and the step at which the path left, or None if it never did."""
    x0, x1, y0, y1 = box
    w, h = x1 - x0, y1 - y0
    with np.errstate(invalid="ignore"):
        inside = (
            np.isfinite(pts).all(axis=1)
            & (pts[:, 0] >= x0 - w)
            & (pts[:, 0] <= x1 + w)
            & (pts[:, 1] >= y0 - h)
            & (pts[:, 1] <= y1 + h)
        )
    out = np.flatnonzero(~inside)
    if not out.size:
        return pts, None
    return pts[: max(int(out[0]), 1)], int(out[0])


def _path_note(result: RunResult, left: int | None) -> str:
    """Why the first run's path ends early: it diverged, left the domain, or only left the picture."""
    why = result.stopped[0] if result.stopped else ""
    step = result.stop_step[0] if result.stop_step else -1
    if why == "diverged":
        return f"diverged at step {step}" if step >= 0 else "diverged"
    if why == "undefined":
        return f"left the domain at step {step}" if step >= 0 else "left the domain"
    if left is not None:
        return f"left the picture at step {left}"
    return ""


def contour_plot(problem: Problem, results: Mapping[str, RunResult], path: str | Path) -> Path:
    """The function's contours with the path of the first run of every optimizer, the start and the minima.

    A path that leaves the picture far behind (or diverges) is drawn up to where it left, ends in an x, and its
    legend entry says what happened.
    """
    colors = colors_for(list(results))
    fig = _figure(figsize=(8.0, 6.4))
    ax = fig.subplots()
    _background(ax, problem)
    start = None
    for i, (name, r) in enumerate(results.items()):
        if r.path is None:
            continue
        pts, left = visible_path(np.asarray(r.path)[:, 0, :], problem.box)
        start = pts[0]
        note = _path_note(r, left)
        ax.plot(
            pts[:, 0],
            pts[:, 1],
            color=colors[name],
            linestyle=_style(i),
            lw=1.6,
            alpha=0.9,
            label=_label(name, r.hyperparams) + (f"\n{note}" if note else ""),
        )
        last = pts[np.isfinite(pts).all(axis=1)][-1]
        if note:
            ax.plot(*last, "x", color=colors[name], ms=10, mew=2.4, zorder=4)
        else:
            ax.plot(*last, "o", color=colors[name], mec="black", mew=0.6, ms=6, zorder=4)
    if start is not None:
        _marks(ax, problem, start)
    ax.set_title(
        f"{problem.title}\npath of run 1 from the usual start; dot: where each optimizer ends,\n"
        "x: where its path diverged or left the picture",
        fontsize=10.5,
    )
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=9)
    fig.subplots_adjust(left=0.08, right=0.72, top=0.87, bottom=0.08)
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
    paths = {
        n: visible_path(np.asarray(r.path)[:, 0, :], problem.box)[0] for n, r in results.items() if r.path is not None
    }
    if not paths:
        raise ValueError(f"problem {problem.name!r} has no 2-D paths to animate")
    n_steps = max(len(r.path) for r in results.values() if r.path is not None) - 1
    # Early steps move most: sample the frames more densely there.
    ticks = np.unique(np.round(np.geomspace(1, n_steps + 1, frames) - 1).astype(int))
    fig = _figure(figsize=(7.2, 5.4), dpi=80)
    ax = fig.subplots()
    _background(ax, problem)
    _marks(ax, problem, next(iter(paths.values()))[0])
    lines, heads = {}, {}
    for i, name in enumerate(paths):
        (lines[name],) = ax.plot([], [], color=colors[name], linestyle=_style(i), lw=1.8, label=name, animated=True)
        (heads[name],) = ax.plot([], [], "o", color=colors[name], mec="black", mew=0.6, ms=7, animated=True)
    counter = ax.text(
        0.02,
        0.97,
        "",
        transform=ax.transAxes,
        va="top",
        fontsize=10,
        animated=True,
        bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"},
    )
    ax.set_title(problem.title, fontsize=11)
    legend = ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=9)
    for handle in legend.legend_handles:
        handle.set_animated(False)
    fig.subplots_adjust(left=0.08, right=0.76, top=0.93, bottom=0.09)
    fig.canvas.draw()
    background = fig.canvas.copy_from_bbox(fig.bbox)
    images = []
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
    durations = [int(1000 / fps)] * (len(images) - 1) + [1500]  # hold the last frame
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0)
    return write_bytes(path, buffer.getvalue())


def fit_line_plot(
    x: np.ndarray,
    y: np.ndarray,
    a_history: Sequence[float],
    b_history: Sequence[float],
    loss_history: Sequence[float],
    title: str,
    path: str | Path,
) -> Path:
    """The article's line fit: the data with the fitted line (and a few earlier ones), and the loss per update."""
    fig = _figure(figsize=(11.0, 4.4))
    left, right = fig.subplots(1, 2)
    left.scatter(x, y, color="black", s=18, zorder=3, label="data")
    xs = np.linspace(float(np.min(x)), float(np.max(x)), 2)
    count = len(a_history)
    shown = sorted({0, count // 8, count // 4, count // 2, count - 1})
    cmap = matplotlib.colormaps["viridis"]
    for j, i in enumerate(shown):
        final = i == count - 1
        left.plot(
            xs,
            a_history[i] * xs + b_history[i],
            color="#d62728" if final else cmap(j / len(shown)),
            lw=2.2 if final else 1.0,
            alpha=1.0 if final else 0.7,
            label=f"after {i} updates: y = {a_history[i]:.3f}x + {b_history[i]:.3f}",
        )
    left.set_xlabel("x")
    left.set_ylabel("y")
    low, high = left.get_ylim()
    left.set_ylim(low, high + 0.6 * (high - low))  # room for the legend above the data
    left.legend(fontsize=8, frameon=False, loc="upper left")
    left.set_title("data and fitted lines", fontsize=11)
    right.plot(np.arange(count), loss_history, color="#1f77b4", lw=1.5)
    if min(loss_history) > 0:
        right.set_yscale("log")
    right.set_xlabel("update")
    right.set_ylabel("mean squared error (log scale)" if min(loss_history) > 0 else "mean squared error")
    right.set_title("loss over all points after each update", fontsize=11)
    right.grid(True, alpha=0.3)
    fig.suptitle(title, fontsize=12)
    fig.subplots_adjust(left=0.07, right=0.98, top=0.84, bottom=0.12, wspace=0.25)
    return _save(fig, path)
