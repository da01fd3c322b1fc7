"""A fair, stated tuning procedure: every optimizer gets the same grid search over its learning rate (and, if asked,
its momentum), on the same problem, seeds and number of steps, scored by the same objective.

The search is coarse to fine: first one learning rate per decade (by default 0.001 to 1); while the best lies on
an edge of what was tried, one more decade beyond it (down to 1e-6, up to 100); then the two half-decade neighbours
of the best. The objective is the mean, over the tuning seeds, of ``log10`` of the run's mean gap
``loss - f_min`` over the second half of the recorded steps (floored at 1e-12): it rewards ending low and staying
there, and a brief visit to the minimum does not count for much; ties (several settings reaching the floor) go to
the lower mean of ``log10(gap)`` over the whole run, that is, to the faster one. One diverged run (a non-finite
loss) disqualifies a setting. Problems without a known minimum use the mean final loss. The tuning seeds are not
the seeds the results are reported on, so the reported numbers are not the ones the rate was picked on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from descend.lab.contestants import Contestant
from descend.lab.problems import Problem
from descend.lab.runner import RunResult, run_many

__all__ = ["DEFAULT_LR_GRID", "MOMENTUM_GRID", "TuneResult", "lr_grid", "score", "tune"]

FLOOR = 1e-12
MOMENTUM_GRID: tuple[float, ...] = (0.5, 0.9, 0.99)


def lr_grid(low: float = 1e-4, high: float = 1.0, per_decade: int = 2) -> tuple[float, ...]:
    """A log-spaced grid of learning rates from ``low`` to ``high`` with ``per_decade`` points per factor of ten."""
    if not (0 < low <= high) or not math.isfinite(high):
        raise ValueError(f"the learning-rate grid needs 0 < low <= high, got low={low!r}, high={high!r}")
    if isinstance(per_decade, bool) or not isinstance(per_decade, int) or per_decade < 1:
        raise ValueError(f"per_decade must be a positive integer, got {per_decade!r}")
    count = int(round(math.log10(high / low) * per_decade)) + 1
    return tuple(float(f"{v:.3g}") for v in np.logspace(math.log10(low), math.log10(high), count))


DEFAULT_LR_GRID: tuple[float, ...] = lr_grid(1e-3, 1.0, 1)
LR_LIMITS: tuple[float, float] = (1e-6, 100.0)


@dataclass
class TuneResult:
    """The chosen hyperparameters and the score of every setting tried (lower is better)."""

    best: dict[str, Any]
    trials: list[dict[str, Any]] = field(default_factory=list)
    objective: str = ""


def score(problem: Problem, result: RunResult) -> tuple[float, float]:
    """The tuning objective of one result, as ``(primary, tie-break)``; lower is better, ``inf`` if a run diverged."""
    loss = np.asarray(result.loss, dtype=np.float64)
    if not np.all(np.isfinite(loss)):
        return (math.inf, math.inf)
    if problem.f_min is None:
        return (float(np.mean(loss[-1])), float(np.mean(loss)))
    gap = np.maximum(loss - problem.f_min, FLOOR)
    late = np.log10(np.maximum(np.mean(gap[len(gap) // 2 :], axis=0), FLOOR))  # per run: log of the mean late gap
    return (round(float(np.mean(late)), 6), float(np.mean(np.log10(gap))))


def objective_text(problem: Problem) -> str:
    """The objective in words, for reports."""
    if problem.f_min is None:
        return "mean final loss over the tuning seeds"
    return (
        "mean over the tuning seeds of log10 of the mean of loss − f* over the second half of the run (floored at "
        "1e-12); ties go to the faster setting; a diverged run disqualifies"
    )


def _neighbours(best: float, tried: Sequence[float]) -> list[float]:
    out = []
    for factor in (10**-0.5, 10**0.5):
        lr = float(f"{best * factor:.3g}")
        if all(abs(math.log10(lr / t)) > 0.1 for t in tried):
            out.append(lr)
    return out


def tune(
    problem: Problem,
    contestant: Contestant,
    steps: int,
    seeds: Sequence[int],
    base: Mapping[str, Any],
    convention: str = "torch",
    grid: Sequence[float] = DEFAULT_LR_GRID,
    tune_momentum: bool = False,
    on_trial: Callable[[], None] | None = None,
    refine: bool = True,
    schedule: str | None = None,
) -> TuneResult:
    """Grid-search ``lr`` (and the momentum knob if ``tune_momentum``) of ``contestant`` on ``problem``.

    Args:
        problem, contestant: what to tune on and what to tune.
        steps, seeds: the budget of every trial.
        base: hyperparameters held fixed during the search.
        convention: the preset the defaults come from.
        grid: the learning rates to try.
        tune_momentum: also try each value of :data:`MOMENTUM_GRID` for the contestant's momentum knob.
        on_trial: called after every trial (for progress bars).
        schedule: the learning-rate schedule of every trial (see :func:`~descend.lab.runner.run`).
        refine: after the grid, widen it while the best rate is on its edge, then try the best's half-decade
            neighbours.

    Returns:
        The best setting (ties go to the earlier one in the grid) and every trial's score.
    """
    if not grid:
        raise ValueError("the learning-rate grid is empty")
    knob = contestant.momentum_knob if tune_momentum else None
    momenta: Sequence[float | None] = MOMENTUM_GRID if knob else (None,)
    defaults = contestant.defaults(convention)
    trials: list[dict[str, Any]] = []
    best: tuple[tuple[float, float], dict[str, Any]] | None = None

    def trials_of(points: Sequence[tuple[float, float | None]]) -> None:
        """Run several (lr, momentum) settings side by side and keep the best."""
        nonlocal best
        if not points:
            return
        settings = []
        for lr, momentum in points:
            hp = {**base, "lr": float(lr)}
            if knob == "betas":
                hp["betas"] = (float(momentum), tuple(hp.get("betas", defaults["betas"]))[1])
            elif knob:
                hp[knob] = float(momentum)
            settings.append(hp)
        every = max(problem.record_every, steps // 50)
        results = run_many(problem, contestant, settings, steps, seeds, convention, every, False, schedule)
        for (lr, momentum), hp, result in zip(points, settings, results):
            value = score(problem, result)
            shown: dict[str, Any] = {"lr": float(lr)}
            if knob:
                shown[knob] = float(momentum)
            final = np.asarray(result.final_loss, dtype=np.float64)
            final_ok = bool(final.size) and bool(np.all(np.isfinite(final)))
            trials.append(
                {
                    **shown,
                    "score": value[0] if math.isfinite(value[0]) else None,
                    "final_loss": float(np.median(final)) if final_ok else None,
                }
            )
            if best is None or value < best[0]:
                best = (value, hp)
            if on_trial is not None:
                on_trial()

    def momentum_of(hp: Mapping[str, Any]) -> float | None:
        return hp["betas"][0] if knob == "betas" else hp.get(knob) if knob else None

    trials_of([(lr, m) for m in momenta for lr in grid])
    if refine:
        tried = sorted(set(grid))
        while True:
            chosen = best[1]
            wider = []
            if chosen["lr"] <= tried[0] and tried[0] / 10 >= LR_LIMITS[0] * 0.999:
                wider.append(float(f"{tried[0] / 10:.3g}"))
            if chosen["lr"] >= tried[-1] and tried[-1] * 10 <= LR_LIMITS[1] * 1.001:
                wider.append(float(f"{tried[-1] * 10:.3g}"))
            if not wider:
                break
            tried = sorted({*tried, *wider})
            trials_of([(lr, momentum_of(chosen)) for lr in wider])
            if best[1] is chosen:  # one decade further did not help: stop widening
                break
        chosen = best[1]
        trials_of([(lr, momentum_of(chosen)) for lr in _neighbours(chosen["lr"], tried)])
    return TuneResult(best=best[1], trials=trials, objective=objective_text(problem))
