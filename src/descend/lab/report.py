"""The pictures and ``report.html`` of a comparison: PNG pictures embedded (base64 palette PNGs), animations linked
to the GIF files beside the page."""

from __future__ import annotations

import base64
import html
import multiprocessing
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from descend.lab.compare import CompareResult
from descend.lab.store import write_text
from descend.lab.tables import format_rows, right_aligned
from descend.lab.workers import run_forked

__all__ = ["GIF_PREFERENCE", "SUMMARY", "picture_count", "write_pictures", "write_report", "write_summary_pictures"]

# The problems animated by default: the classic pictures first.
GIF_PREFERENCE: tuple[str, ...] = ("beale", "saddle", "rosenbrock")


def _gif_problems(outcome: CompareResult, wanted: Sequence[str] | None, limit: int = 2) -> list[str]:
    names = [p.name for p in outcome.problems if p.is_2d]
    if wanted is not None:
        return [n for n in wanted if n in names]
    chosen = [n for n in GIF_PREFERENCE if n in names][:limit]
    return chosen or names[:1]


def _draw(outcome: CompareResult, index: int, out: Path, animate: bool) -> list[tuple[str, Path]]:
    from descend.lab import plots

    problem = outcome.problems[index]
    results = {o: outcome.cells[(problem.name, o)].result for o in outcome.ran(problem.name)}
    made = [("loss", plots.loss_plot(problem, results, out / f"loss_{problem.name}.png"))]
    if problem.is_2d:
        made.append(("contour", plots.contour_plot(problem, results, out / f"contour_{problem.name}.png")))
        if animate:
            made.append(("animation", plots.trajectory_gif(problem, results, out / f"paths_{problem.name}.gif")))
    return made


# The work of a parallel drawing, inherited by the forked workers.
_PENDING: list[tuple[CompareResult, Path, set[str]]] = []

SUMMARY = ""  # the key of the pictures about the whole comparison in :func:`write_pictures`' answer


def _draw_pending(index: int) -> list[tuple[str, Path]]:
    outcome, out, animate = _PENDING[0]
    if index < 0:
        return write_summary_pictures(outcome, out)
    return _draw(outcome, index, out, outcome.problems[index].name in animate)


def write_pictures(
    outcome: CompareResult,
    out: str | Path,
    gifs: Sequence[str] | None = None,
    on_picture: Callable[[str], None] | None = None,
    jobs: int = 1,
    summary: bool = False,
) -> dict[str, list[tuple[str, Path]]]:
    """Draw every picture of a comparison into ``out``.

    Args:
        outcome: the comparison.
        out: the output folder.
        gifs: the problems to animate (default: Beale and the saddle when present, else the first 2-D problem).
        on_picture: called with each file name once written (for progress bars).
        jobs: worker processes drawing different problems at the same time.
        summary: also draw the pictures about the whole comparison (:func:`write_summary_pictures`), in the same
            pool of workers.

    Returns:
        problem name -> list of ``(kind, path)``, kind being ``"loss"``, ``"contour"`` or ``"animation"``; with
        ``summary``, also :data:`SUMMARY` -> the summary pictures.
    """
    out = Path(out)
    animate = set(_gif_problems(outcome, gifs))
    pictures: dict[str, list[tuple[str, Path]]] = {}

    def done(index: int, made: list[tuple[str, Path]]) -> None:
        pictures[SUMMARY if index < 0 else outcome.problems[index].name] = made
        if on_picture:
            for _, path in made:
                on_picture(path.name)

    # the costliest first, so that no worker is left with a long task at the end
    order = ([-1] if summary else []) + sorted(
        range(len(outcome.problems)), key=lambda i: -(outcome.problems[i].is_2d + (outcome.problems[i].name in animate))
    )
    if jobs > 1 and len(order) > 1 and "fork" in multiprocessing.get_all_start_methods():
        _PENDING[:] = [(outcome, out, animate)]
        try:
            run_forked(_draw_pending, order, jobs, done)
        finally:
            _PENDING.clear()
    else:
        for i in order:
            done(
                i,
                write_summary_pictures(outcome, out)
                if i < 0
                else _draw(outcome, i, out, outcome.problems[i].name in animate),
            )
    return {name: pictures[name] for name in ([SUMMARY] if summary else []) + [p.name for p in outcome.problems]}


def picture_count(outcome: CompareResult, gifs: Sequence[str] | None = None) -> int:
    """How many files :func:`write_pictures` and :func:`write_summary_pictures` write."""
    return (
        sum(1 + (2 if p.is_2d else 0) for p in outcome.problems)
        - sum(1 for p in outcome.problems if p.is_2d and p.name not in _gif_problems(outcome, gifs))
        + len(_summary_kinds(outcome))
    )


def _summary_kinds(outcome: CompareResult) -> list[str]:
    kinds = []
    if any(p.tol is not None and p.f_min is not None for p in outcome.problems):
        kinds += ["profile", "target"]
    if outcome.config.tuning:
        kinds.append("lr")
    return kinds


def _lr_panels(outcome: CompareResult) -> list[tuple[str, bool, dict, dict]]:
    panels = []
    for problem in outcome.problems:
        shift = problem.f_min or 0.0
        trials, chosen = {}, {}
        for o in outcome.ran(problem.name):
            cell = outcome.cells[(problem.name, o)]
            trials[o] = [
                {"lr": t["lr"], "final_loss": None if t.get("final_loss") is None else t["final_loss"] - shift}
                for t in cell.trials
                if "final_loss" in t
            ]
            chosen[o] = cell.tuned.get("lr")
        panels.append((problem.title, problem.f_min is not None, trials, chosen))
    return panels


def write_summary_pictures(
    outcome: CompareResult, out: str | Path, on_picture: Callable[[str], None] | None = None
) -> list[tuple[str, Path]]:
    """Draw the pictures about the whole comparison: performance profiles and time to target (when some problem has
    a tolerance) and learning-rate sensitivity (when rates were tuned).

    Returns:
        ``(kind, path)`` per picture, kind being ``"profile"``, ``"target"`` or ``"lr"``.
    """
    from descend.lab import verdict_plots
    from descend.lab.verdict import profile, target_times

    out = Path(out)
    made = []
    kinds = _summary_kinds(outcome)
    names = list(outcome.optimizers)
    if "profile" in kinds:
        steps, seconds = target_times(outcome)
        taus, rho = profile(steps, names)
        left = [p.name for p in outcome.problems if p.name not in steps]
        subtitle = f"over the {len(steps)} problems with a success tolerance" + (
            f" ({', '.join(left)} {'has' if len(left) == 1 else 'have'} none)" if left else ""
        )
        made.append(("profile", verdict_plots.profile_plot(taus, rho, names, out / "profile.png", subtitle)))
        titles = {p.name: p.title for p in outcome.problems}
        made.append(("target", verdict_plots.target_plot(steps, seconds, titles, names, out / "time_to_target.png")))
    if "lr" in kinds:
        made.append(("lr", verdict_plots.lr_plot(_lr_panels(outcome), names, out / "lr_sensitivity.png")))
    if on_picture:
        for _, path in made:
            on_picture(path.name)
    return made


_STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { padding: 0.3em 0.7em; border-bottom: 1px solid #e5e5e5; }
th { background: #f5f5f5; text-align: left; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; display: block; margin: 0.6em 0; }
.meta { color: #555; font-size: 0.92em; } details { margin: 0.5em 0; } code { background: #f3f3f3; padding: 0 0.2em; }
"""


def _table(headers: Sequence[str], cells: Sequence[Sequence[str]]) -> str:
    def cls(h: str) -> str:
        return ' class="num"' if right_aligned(h) else ""

    head = "".join(f"<th{cls(h)}>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td{cls(h)}>{html.escape(c)}</td>" for h, c in zip(headers, line)) + "</tr>"
        for line in cells
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _embed(path: Path, alt: str) -> str:
    """A PNG embedded in the page; an animation linked by name (it lies beside the page: animations are most of
    a report's weight, and the page stays readable without them)."""
    if path.suffix == ".gif":
        name = html.escape(path.name)
        return (
            f'<p class="meta">Animation (the file {name} beside this page):</p>'
            f'<img src="{name}" alt="{html.escape(alt)}" title="{name}" loading="lazy">'
        )
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}" title="{html.escape(path.name)}">'


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, (list, tuple)):
        return "(" + ", ".join(_fmt(x) for x in v) + ")"
    return str(v)


def _verdict_html(outcome: CompareResult, summary: Sequence[tuple[str, Path]]) -> list[str]:
    from descend.lab.tables import verdict_cells
    from descend.lab.verdict import PROFILE_RULE, RANK_RULE, verdict

    result = verdict(outcome)
    best = result.optimizers[0]
    headers, cells = verdict_cells(outcome, result)
    parts = [
        '<h2 id="verdict">Verdict</h2>',
        f"<p><b>{html.escape(result.headline(len(outcome.problems)))}</b>; {html.escape(best)} is first on "
        f"{result.wins[best]} of them. Each cell: the rank on that problem, then "
        "what it rests on (runs ending within the tolerance and the median gap to the minimum, test accuracy, or "
        "the final loss).</p>",
        _table(headers, cells),
        f'<p class="meta">{html.escape(RANK_RULE)}</p>',
    ]
    notes = fairness_notes(outcome)
    if notes:
        parts.append("<p><b>Like with like.</b> " + " ".join(html.escape(n) for n in notes) + "</p>")
    captions = {
        "profile": PROFILE_RULE,
        "target": "Time to target: the steps and the seconds each optimizer needed to reach each problem's "
        "tolerance (median over its runs; seconds are steps × its measured time per step, measured after "
        "a warm-up run so that start-up costs land on no one).",
        "lr": "Learning-rate sensitivity: the final loss of every tuning trial against its rate (median over the "
        "tuning runs, which are not the reporting runs); the ring marks the rate chosen, an x on the top edge "
        "a rate at which a tuning run diverged.",
    }
    for kind, path in summary:
        parts.append(f'<p class="meta">{html.escape(captions[kind])}</p>')
        parts.append(_embed(path, f"{kind} of the comparison"))
    return parts


def fairness_notes(outcome: CompareResult) -> list[str]:
    """Sentences saying which settings were changed so that every optimizer is judged on the same problem."""
    notes = []
    zeroed = sorted({o for (p, o), c in outcome.cells.items() if "weight_decay" in c.adjusted})
    if zeroed:
        where = sorted({p for (p, o), c in outcome.cells.items() if "weight_decay" in c.adjusted})
        notes.append(
            f"Weight decay is set to 0 for {', '.join(zeroed)} on {', '.join(where)}: these problems define their own "
            "minimiser, and decay would move it (the optimizer would be judged on reaching a point it is told not "
            "to reach). Where decay stays on (data problems), it is regularisation and test accuracy judges it."
        )
    return notes


def write_report(
    outcome: CompareResult,
    out: str | Path,
    pictures: dict[str, list[tuple[str, Path]]],
    elapsed: float | None = None,
    summary: Sequence[tuple[str, Path]] | None = None,
) -> Path:
    """Write ``report.html``: the verdict first (ranks, overall ranking, profiles, time to target, learning-rate
    sensitivity), then the settings, how tuning was done, and per problem its table, settings and pictures."""
    out = Path(out)
    cfg = outcome.config
    rows = outcome.rows()
    if summary is None:
        summary = pictures.get(SUMMARY, [])
    parts = [
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>descend compare</title>"
        f"<style>{_STYLE}</style></head><body>",
        "<h1>descend compare</h1>",
    ]
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M")
    took = f", {elapsed:.1f} s" if elapsed is not None else ""
    parts.append(
        f'<p class="meta">{stamp}{took}. Optimizers: {html.escape(", ".join(outcome.optimizers))}. '
        f"Convention: <code>{html.escape(cfg.convention)}</code>. Seeds: {cfg.seeds} reporting runs from seed "
        f"{cfg.seed}. Files: <code>results.json</code>, <code>results.csv</code> and the pictures beside this page.</p>"
    )
    parts += _verdict_html(outcome, summary)
    parts.append('<h2 id="settings">Settings</h2>')
    if cfg.tuning:
        grid = ", ".join(f"{g:g}" for g in cfg.grid)
        momentum = " and the momentum (β₁ for the Adam family) over 0.5, 0.9, 0.99" if cfg.tune_momentum else ""
        parts.append(
            f"<p><b>Tuning.</b> Every optimizer's learning rate{momentum} was chosen for each problem on its own, "
            f"with the same budget: the grid {grid}, widened by a decade at a time while the best was on its edge, "
            "then the two half-decade neighbours of the best; each trial "
            f"running the full number of steps on {cfg.tune_seeds} tuning runs (seeds {cfg.seed + 10000} and up, not "
            "the reporting ones). Objective: the mean over the tuning runs of log₁₀ of the run's mean loss − f* "
            "over the second half of the steps, floored at 1e-12; ties go to the faster setting; a diverged run "
            "disqualifies a setting. Other hyperparameters are the convention's defaults.</p>"
        )
    else:
        lr = f"lr = {cfg.lr:g} for every optimizer" if cfg.lr is not None else "each optimizer's default lr"
        parts.append(f"<p><b>No tuning</b>: {lr} under the <code>{html.escape(cfg.convention)}</code> convention.</p>")
    parts.append(
        "<p>Columns: <i>lr</i> the rate used; <i>loss</i> (or <i>loss − f*</i>, its gap to the known minimum f*) "
        "and <i>dist</i> (to the nearest minimiser) are medians over the reporting runs at the last step; "
        "<i>steps→tol</i> is the median first step at which loss − f* ≤ the problem's tolerance, among the runs "
        "that got there; <i>success</i> counts the runs that end within the tolerance; <i>test acc</i> is the mean "
        "test accuracy; <i>time s</i> is the wall time of one setting's reporting runs. Empty columns are left "
        "out; results.csv has them all.</p>"
    )
    for problem in outcome.problems:
        mine = [r for r in rows if r["problem"] == problem.name]
        parts.append(f'<h2 id="{html.escape(problem.name)}">{html.escape(problem.title)}</h2>')
        tol = f" Tolerance: {problem.tol:g}." if problem.tol is not None else ""
        parts.append(
            f"<p>{html.escape(problem.description)}{tol} <span class=meta>Source: "
            f"{html.escape(problem.references)}.</span></p>"
        )
        parts.append(_table(*format_rows(mine)))
        settings = []
        for name in outcome.ran(problem.name):
            cell = outcome.cells[(problem.name, name)]
            hp = ", ".join(f"{k}={_fmt(v)}" for k, v in cell.result.hyperparams.items())
            tried = ", ".join(
                f"{t['lr']:g}→{'diverged' if t['score'] is None else format(t['score'], '.2f')}" for t in cell.trials
            )
            settings.append([name, hp, tried or "—"])
        parts.append(
            "<details><summary>Hyperparameters in force and tuning trials (lr → score)</summary>"
            + _table(["optimizer", "hyperparameters", "trials"], settings)
            + "</details>"
        )
        for kind, path in pictures.get(problem.name, []):
            parts.append(_embed(path, f"{kind} plot of {problem.title}"))
    parts.append("</body></html>")
    return write_text(out / "report.html", "\n".join(parts))
