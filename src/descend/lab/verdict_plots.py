"""The verdict's pictures: performance profiles, learning-rate sensitivity and time to target, drawn as the other
pictures of a comparison are (:mod:`descend.lab.plots`: the same colours, canvas and atomic writes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, NullFormatter

from descend.lab.plots import _figure, _save, _style, colors_for

__all__ = ["lr_plot", "profile_plot", "target_plot"]


def profile_plot(
    taus: np.ndarray, rho: Mapping[str, np.ndarray], names: Sequence[str], path: str | Path, subtitle: str
) -> Path:
    """Performance profiles: for each optimizer, the share of problems it solves within tau times the best
    optimizer's steps, as a step curve over tau (log scale). Higher and further left is better."""
    colors = colors_for(list(names))  # the report's colours, whoever is drawn here
    fig = _figure(figsize=(9.0, 4.6))
    ax = fig.subplots()
    for i, name in enumerate(names):
        if name not in rho:  # it ran on none of these problems (Muon needs matrices)
            continue
        ax.step(
            taus,
            rho[name],
            where="post",
            color=colors[name],
            linestyle=_style(i),
            lw=1.9,
            label=f"{name} ({rho[name][-1]:.0%} solved)",
        )
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlim(float(taus[0]), float(taus[-1]))
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("τ: steps to the tolerance as a multiple of the fastest optimizer's (log scale)")
    ax.set_ylabel("share of problems solved within τ")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=9)
    ax.set_title(f"Performance profiles\n{subtitle}", fontsize=11)
    fig.subplots_adjust(left=0.09, right=0.66, top=0.86, bottom=0.12)
    return _save(fig, path)


def lr_plot(
    panels: Sequence[tuple[str, bool, Mapping[str, Sequence[Mapping[str, Any]]], Mapping[str, float]]],
    names: Sequence[str],
    path: str | Path,
) -> Path:
    """Learning-rate sensitivity: the final loss of every tuning trial against its learning rate, one panel per
    problem and one line per optimizer, the chosen rate ringed and diverged trials as an x on the panel's top edge.

    Args:
        panels: per problem ``(title, has_minimum, trials by optimizer, chosen lr by optimizer)``; a trial is a dict
            with ``lr`` and ``final_loss`` (the loss minus the known minimum where ``has_minimum``; None if a run
            diverged).
        names: the optimizers, in the comparison's order (for the colours).
        path: the PNG to write.
    """
    colors = colors_for(list(names))
    cols = min(4, max(1, len(panels)))
    rows = -(-len(panels) // cols)
    extra = ["rate chosen", "far above the axis", "diverged (top edge)"]
    legend = 0.75 + 0.075 * max(len(label) for label in [*names, *extra])  # inches the legend takes on the right
    fig = _figure(figsize=(3.2 * cols + legend + 0.3, 2.7 * rows + 0.9))
    axes = fig.subplots(rows, cols, squeeze=False)
    for k, (title, has_min, trials, chosen) in enumerate(panels):
        ax = axes[k // cols][k % cols]
        values = [t["final_loss"] for ts in trials.values() for t in ts if t.get("final_loss") is not None]
        log = bool(values) and min(values) > 0
        # A trial that ended orders of magnitude above the rest is drawn on the top edge as a triangle, so that
        # it cannot squash the others into a line.
        middle = float(np.median(np.abs(values))) if values else 0.0
        cap = middle * 1e4 if log else max(1e6, 1e4 * middle)
        if values and max(values) > cap > 0:
            ax.set_ylim(min(values) / 3 if log else min(values), cap)
        else:
            cap = np.inf
        for i, name in enumerate(names):
            ts = sorted(trials.get(name, []), key=lambda t: t["lr"])
            if not ts:
                continue
            ok = [t for t in ts if t.get("final_loss") is not None]
            ax.plot(
                [t["lr"] for t in ok],
                [min(t["final_loss"], cap) for t in ok],
                color=colors[name],
                linestyle=_style(i),
                marker="o",
                ms=3,
                lw=1.3,
            )
            high = [t["lr"] for t in ok if t["final_loss"] > cap]
            if high:
                ax.plot(high, [cap] * len(high), "^", color=colors[name], ms=7, clip_on=False, zorder=5)
            bad = [t["lr"] for t in ts if t.get("final_loss") is None]
            if bad:
                ax.plot(
                    bad,
                    [0.97] * len(bad),
                    "x",
                    color=colors[name],
                    ms=6,
                    mew=1.6,
                    clip_on=False,
                    transform=ax.get_xaxis_transform(),
                )
            best = [t for t in ok if chosen.get(name) is not None and abs(t["lr"] - chosen[name]) <= 1e-12 * t["lr"]]
            if best:
                ax.plot(best[0]["lr"], best[0]["final_loss"], "o", mfc="none", mec=colors[name], ms=9, mew=1.6)
        ax.set_xscale("log")
        if log:
            ax.set_yscale("log")
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_title(title if len(title) <= 38 else title[:36] + "…", fontsize=9.5, loc="left")
        ax.grid(True, which="major", alpha=0.3)
        if k % cols == 0:
            ax.set_ylabel(("final loss − f*" if has_min else "final loss") + (" (log)" if log else ""), fontsize=9)
        if k // cols == rows - 1 or k + cols >= len(panels):
            ax.set_xlabel("learning rate (log)", fontsize=9)
        ax.tick_params(labelsize=8)
    for j in range(len(panels), rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    handles = [
        Line2D([], [], color=colors[n], linestyle=_style(i), marker="o", ms=3, label=n) for i, n in enumerate(names)
    ]
    handles += [
        Line2D([], [], color="0.3", marker="o", mfc="none", ls="none", ms=9, label=extra[0]),
        Line2D([], [], color="0.3", marker="^", ls="none", ms=7, label=extra[1]),
        Line2D([], [], color="0.3", marker="x", ls="none", ms=6, label=extra[2]),
    ]
    fig.legend(handles=handles, loc="center right", frameon=False, fontsize=9)
    fig.suptitle(
        "Learning-rate sensitivity: every tuning trial's final loss (median over the tuning runs)", fontsize=11
    )
    fig.subplots_adjust(
        left=0.07,
        right=1 - legend / fig.get_figwidth(),
        top=1 - 0.6 / fig.get_figheight(),
        bottom=0.55 / fig.get_figheight(),
        wspace=0.3,
        hspace=0.45,
    )
    return _save(fig, path)


def target_plot(
    steps: Mapping[str, Mapping[str, float]],
    seconds: Mapping[str, Mapping[str, float]],
    titles: Mapping[str, str],
    names: Sequence[str],
    path: str | Path,
) -> Path:
    """Time to target: per problem (a row) and optimizer (a marker), the median steps to reach the tolerance on one
    panel and the seconds on the other, both on log scales; optimizers that did not reach it are listed on the
    row's right instead."""
    colors = colors_for(list(names))
    problems = list(steps)
    shown = [n for n in names if any(n in steps[p] for p in problems)]  # Muon runs only where there are matrices
    ncol = max(1, min(len(shown), 8))
    legend = 0.28 * -(-len(shown) // ncol)  # inches the legend's rows take
    fig = _figure(figsize=(11.5, 0.7 * len(problems) + 1.8 + legend))
    panels = fig.subplots(1, 2, sharey=True)
    offsets = np.linspace(-0.28, 0.28, len(names)) if len(names) > 1 else np.zeros(1)
    for ax, data, xlabel in (
        (panels[0], steps, "steps to the tolerance (log)"),
        (panels[1], seconds, "seconds to the tolerance (log)"),
    ):
        for row, problem in enumerate(problems):
            for i, name in enumerate(names):
                v = data[problem].get(name, np.inf)
                if np.isfinite(v):
                    ax.plot(
                        max(v, 1e-6 if data is seconds else 1.0),
                        row + offsets[i],
                        "o",
                        color=colors[name],
                        ms=6,
                        mec="black",
                        mew=0.4,
                    )
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.grid(True, which="major", axis="x", alpha=0.3)
        for row in range(len(problems)):
            ax.axhline(row + 0.5, color="0.85", lw=0.6)
    panels[0].set_yticks(range(len(problems)))
    panels[0].set_yticklabels([titles.get(p, p) if len(titles.get(p, p)) <= 28 else p for p in problems], fontsize=9)
    panels[0].set_ylim(len(problems) - 0.5, -0.5)
    for row, problem in enumerate(problems):
        ran = [n for n in names if n in steps[problem]]
        missing = [n for n in ran if not np.isfinite(steps[problem][n])]  # ran, not there
        if missing:
            lines = [", ".join(missing[k : k + 3]) for k in range(0, len(missing), 3)]
            text = "not reached:\n" + ",\n".join(lines) if len(missing) < len(ran) else "reached by none"
            panels[1].text(
                1.02,
                row,
                text,
                transform=panels[1].get_yaxis_transform(),
                va="center",
                fontsize=7,
                color="0.35",
                linespacing=1.0,
            )
    handles = [Line2D([], [], color=colors[n], marker="o", ls="none", mec="black", mew=0.4, label=n) for n in shown]
    height = fig.get_figheight()
    fig.legend(handles=handles, loc="upper center", ncol=ncol, frameon=False, fontsize=9, bbox_to_anchor=(0.5, 1.0))
    fig.suptitle(
        "Time to target: median over the runs (more than half must reach the tolerance); seconds are "
        "steps × the measured time per step",
        fontsize=10,
        y=1 - (legend + 0.22) / height,
    )
    fig.subplots_adjust(left=0.19, right=0.8, top=1 - (legend + 0.55) / height, bottom=0.6 / height, wspace=0.05)
    return _save(fig, path)
