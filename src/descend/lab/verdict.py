"""The verdict of a comparison: each optimizer's rank on each problem, an overall ranking, performance profiles and
the time each optimizer needs to reach each problem's target.

The rules are stated in :data:`RANK_RULE` and :data:`PROFILE_RULE` (the reports print them):

- On a problem with a success tolerance, optimizers are ranked by the share of runs that end within the tolerance
  (more is better), then by the median number of steps to reach it (fewer is better), then by the median final gap.
- On a data problem, by mean test accuracy, then by the median final training loss.
- Otherwise, by the median final loss (or gap to the known minimum).
- Runs that diverged count as the worst possible; tied optimizers share the average of their ranks.
- Overall, optimizers are ordered by their mean rank over the problems (ties by the number of problems won). An
  optimizer that does not run on every problem (Muon needs matrices) is ranked among those that ran on each problem
  and averaged over the problems it ran on.

The performance profile follows Dolan & Moré (2002) as AlgoPerf (Dahl et al., 2023) uses it: an optimizer's time on
a problem is the median over its runs of the steps to reach the tolerance (a run that never reaches it counts as
infinite, so more than half the runs must reach it); its ratio is that time over the best optimizer's time on the
problem; its profile at ``tau`` is the share of problems on which its ratio is at most ``tau``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["PROFILE_RULE", "RANK_RULE", "Verdict", "profile", "steps_to_target", "target_times", "verdict"]

RANK_RULE = (
    "Rank on each problem (1 = best): with a success tolerance, by the share of runs ending within it, then by the "
    "median steps to reach it, then by the median final gap; on data, by mean test accuracy, then by training loss; "
    "otherwise by the median final loss. Runs that diverged or left the function's domain count as the worst; ties "
    "share the average rank. Overall: "
    "the mean rank over the problems (ties: more problems won first); an optimizer that runs on some problems only "
    "(Muon needs matrices) is ranked among those that ran there, and averaged over the problems it ran on."
)
PROFILE_RULE = (
    "Performance profile (Dolan & Moré 2002, as in AlgoPerf): on each problem with a tolerance, an optimizer's time "
    "is the median over its runs of the steps to reach the tolerance (a run that never reaches it counts as "
    "infinite); ρ(τ) is the share of those problems it solves within τ × the best optimizer's time."
)


@dataclass
class Verdict:
    """Ranks per problem and overall.

    Attributes:
        problems: the problem names, in the comparison's order.
        optimizers: the optimizer names, best overall first.
        rank: ``(problem, optimizer) -> rank`` (1 is best; ties share the average).
        cell: ``(problem, optimizer) -> short text`` of what the rank rests on (success, gap, accuracy).
        mean_rank: ``optimizer -> mean rank`` over the problems.
        wins: ``optimizer -> number of problems ranked first`` (shared first places count).
    """

    problems: list[str]
    optimizers: list[str]
    rank: dict[tuple[str, str], float] = field(default_factory=dict)
    cell: dict[tuple[str, str], str] = field(default_factory=dict)
    mean_rank: dict[str, float] = field(default_factory=dict)
    wins: dict[str, int] = field(default_factory=dict)

    @property
    def leaders(self) -> list[str]:
        """The optimizers sharing the best mean rank."""
        best = min(self.mean_rank.values())
        return [o for o in self.optimizers if self.mean_rank[o] == best]

    def headline(self, problems: int) -> str:
        """One sentence: who ranks first overall."""
        lead = self.leaders
        first = lead[0]
        who = f"{first} ranks" if len(lead) == 1 else f"{', '.join(lead[:-1])} and {lead[-1]} share"
        return (
            f"{who} first overall (mean rank {self.mean_rank[first]:.2f} over {problems} "
            f"problem{'s' if problems != 1 else ''})"
        )

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict for ``results.json``."""
        return {
            "rule": RANK_RULE,
            "overall": [
                {"optimizer": o, "mean_rank": round(self.mean_rank[o], 4), "wins": self.wins[o]}
                for o in self.optimizers
            ],
            "ranks": {p: {o: self.rank[(p, o)] for o in self.optimizers if (p, o) in self.rank} for p in self.problems},
        }


def _num(v: Any) -> float:
    """A sortable number: None and NaN become infinity."""
    if v is None:
        return math.inf
    v = float(v)
    return v if math.isfinite(v) else math.inf


def _short(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "—"
    if v == 0:
        return "0"
    return f"{v:.3g}" if 1e-3 <= abs(v) < 1e4 else f"{v:.1e}"


def _key_and_text(row: dict[str, Any]) -> tuple[tuple[float, ...], str]:
    """The sort key of a summary row (lower is better) and the short text shown in the matrix."""
    runs = max(int(row.get("runs") or 1), 1)
    quality = row["gap"] if row.get("gap") is not None else row.get("final_loss")
    if int(row.get("diverged") or 0) + int(row.get("undefined") or 0) >= runs:
        return (math.inf, math.inf, math.inf), "diverged" if row.get("diverged") else "left the domain"
    if row.get("success_rate") is not None:
        rate = float(row["success_rate"])
        steps = _num(row.get("steps_to_tol")) if rate > 0 else math.inf
        text = f"{round(rate * runs)}/{runs}, gap {_short(quality)}"
        return (-rate, steps, _num(quality)), text
    if row.get("test_accuracy") is not None:
        return (-float(row["test_accuracy"]), _num(row.get("final_loss"))), f"{100 * row['test_accuracy']:.1f}%"
    name = "gap" if row.get("gap") is not None else "loss"
    return (_num(quality),), f"{name} {_short(quality)}"


def _ranks(keys: dict[str, tuple[float, ...]]) -> dict[str, float]:
    """Ranks from sort keys; equal keys share the average of the ranks they span."""
    order = sorted(keys, key=lambda o: keys[o])
    out: dict[str, float] = {}
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and keys[order[j + 1]] == keys[order[i]]:
            j += 1
        for o in order[i : j + 1]:
            out[o] = (i + j) / 2 + 1
        i = j + 1
    return out


def verdict(outcome: Any) -> Verdict:
    """Rank every optimizer on every problem of a :class:`~descend.lab.compare.CompareResult`, and overall."""
    rows = outcome.rows()
    problems = [p.name for p in outcome.problems]
    names = list(outcome.optimizers)
    result = Verdict(problems, names)
    for p in problems:
        mine = {r["optimizer"]: r for r in rows if r["problem"] == p}
        keys = {}
        for o in mine:
            keys[o], result.cell[(p, o)] = _key_and_text(mine[o])
        for o, r in _ranks(keys).items():
            result.rank[(p, o)] = r
    for o in names:  # over the problems it ran on (Muon needs matrices)
        ranks = {p: result.rank[(p, o)] for p in problems if (p, o) in result.rank}
        best = {p: min(r for (q, _), r in result.rank.items() if q == p) for p in ranks}
        result.mean_rank[o] = float(np.mean(list(ranks.values())))
        result.wins[o] = sum(1 for p, r in ranks.items() if r == best[p])
    result.optimizers = sorted(names, key=lambda o: (result.mean_rank[o], -result.wins[o]))
    return result


def steps_to_target(steps_to_tol: Sequence[int]) -> float:
    """The median over runs of the steps to reach the tolerance, a run that never reached it (-1) counting as
    infinite: finite when more than half the runs reached it."""
    values = np.array([math.inf if s < 0 else float(s) for s in steps_to_tol])
    return float(np.median(values)) if values.size else math.inf


def profile(
    times: dict[str, dict[str, float]], optimizers: Sequence[str], taus: Sequence[float] | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Performance profiles from ``times[problem][optimizer]`` (infinite where the target was not reached).

    A time of 0 steps (the start already within the tolerance) counts as 1, so that ratios stay defined.

    Returns:
        ``(taus, rho)`` with ``rho[optimizer][i]`` the share of the problems solved within ``taus[i]`` times the
        best optimizer's time on each, for the optimizers that ran on at least one of them. A problem no optimizer
        solves counts as unsolved for everyone.
    """
    ratios: dict[str, list[float]] = {o: [] for o in optimizers}
    for per in times.values():
        clean = {o: max(float(per[o]), 1.0) for o in optimizers if o in per}  # absent: it did not run there
        best = min(clean.values(), default=math.inf)
        for o in clean:
            ratios[o].append(clean[o] / best if math.isfinite(best) else math.inf)
    finite = [r for rs in ratios.values() for r in rs if math.isfinite(r)]
    top = max([*finite, 2.0])
    grid = np.asarray(taus, dtype=np.float64) if taus is not None else np.geomspace(1.0, top * 1.5, 200)
    ran = [o for o in optimizers if ratios[o]]
    rho = {o: np.array([sum(r <= t for r in ratios[o]) / len(ratios[o]) for t in grid]) for o in ran}
    return grid, rho


def target_times(outcome: Any) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Steps and seconds to reach the tolerance, ``[problem][optimizer]``, on the problems that have one.

    Seconds are the steps times the measured time per step of the optimizer's reporting runs (which step side by
    side, so a step of the batch is a step of every run); infinite where the target was not reached.
    """
    steps: dict[str, dict[str, float]] = {}
    seconds: dict[str, dict[str, float]] = {}
    for problem in outcome.problems:
        if problem.tol is None or problem.f_min is None:
            continue
        steps[problem.name], seconds[problem.name] = {}, {}
        for o in outcome.ran(problem.name):
            r = outcome.cells[(problem.name, o)].result
            t = steps_to_target(r.steps_to_tol)
            total = max(int(r.steps[-1]), 1) if len(r.steps) else 1
            steps[problem.name][o] = t
            seconds[problem.name][o] = t * r.wall_time / total if math.isfinite(t) else math.inf
    return steps, seconds
