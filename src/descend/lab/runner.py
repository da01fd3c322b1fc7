"""Running one optimizer with fixed hyperparameters on one problem, for several seeds at once.

The runner steps the problem's stacked parameters (one row per seed) with a NumPy optimizer, records the loss and,
for 2-D problems, the path, and measures what the reports show: final loss, distance to the optimum, steps to reach
the problem's tolerance, success, extra metrics and wall time. It knows nothing about plots.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from descend.lab.contestants import Contestant
from descend.lab.modes import to_eval, to_train
from descend.lab.problems import Problem, run_rngs

__all__ = ["RunResult", "finite_or_none", "jsonable", "run", "run_many"]


@dataclass
class RunResult:
    """The outcome of one optimizer with one set of hyperparameters on one problem, over several seeds.

    Attributes:
        problem, optimizer: the names.
        hyperparams: every hyperparameter in force (the convention's defaults, the variant's flags, the tuned values).
        seeds: the seed of each run.
        steps: the step numbers at which the loss was recorded (0 is the start).
        loss: the recorded losses, shape ``(len(steps), n_runs)``; NaN after a run diverged.
        path: for 2-D problems, the point of each run after every step, shape ``(n_steps + 1, n_runs, 2)``.
        final_loss, distance, steps_to_tol, success: per run; ``distance`` is None without a known optimum,
            ``steps_to_tol`` holds -1 where the tolerance was not reached and ``success`` is None without a tolerance.
        metrics: extra per-run results (``test_accuracy``).
        wall_time: seconds for the whole batch of runs.
        stopped: per run, why it stopped early: ``""`` (it ran every step), ``"diverged"`` (a parameter or the loss
            became infinite, or not a number after an overflow) or ``"undefined"`` (the loss is not a number at
            finite parameters: the point left the function's domain, such as ``log(x)`` at ``x < 0``).
        stop_step: per run, the recorded step at which it stopped (-1 if it did not).
    """

    problem: str
    optimizer: str
    hyperparams: dict[str, Any]
    seeds: list[int]
    steps: list[int]
    loss: np.ndarray
    path: np.ndarray | None
    final_loss: np.ndarray
    distance: np.ndarray | None
    steps_to_tol: np.ndarray
    success: np.ndarray | None
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    wall_time: float = 0.0
    stopped: list[str] = field(default_factory=list)
    stop_step: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN and infinity become None)."""

        def clean(a: Any) -> Any:
            if a is None:
                return None
            arr = np.asarray(a, dtype=np.float64)
            return np.where(np.isfinite(arr), arr, np.nan).tolist() if arr.ndim else _num(float(arr))

        out = {
            "problem": self.problem,
            "optimizer": self.optimizer,
            "hyperparams": jsonable(self.hyperparams),
            "seeds": list(self.seeds),
            "steps": list(self.steps),
            "loss": clean(self.loss),
            "path": clean(self.path),
            "final_loss": clean(self.final_loss),
            "distance": clean(self.distance),
            "steps_to_tol": np.asarray(self.steps_to_tol).astype(int).tolist(),
            "success": None if self.success is None else np.asarray(self.success).astype(bool).tolist(),
            "metrics": {k: clean(v) for k, v in self.metrics.items()},
            "wall_time": self.wall_time,
            "stopped": list(self.stopped),
            "stop_step": [int(s) for s in self.stop_step],
        }
        return finite_or_none(out)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunResult:
        """The inverse of :meth:`to_json`."""

        def arr(v: Any) -> np.ndarray | None:
            return None if v is None else np.asarray(v, dtype=np.float64)

        hp = {k: tuple(v) if isinstance(v, list) else v for k, v in data["hyperparams"].items()}
        return cls(
            problem=data["problem"],
            optimizer=data["optimizer"],
            hyperparams=hp,
            seeds=list(data["seeds"]),
            steps=list(data["steps"]),
            loss=arr(data["loss"]),
            path=arr(data["path"]),
            final_loss=arr(data["final_loss"]),
            distance=arr(data["distance"]),
            steps_to_tol=np.asarray(data["steps_to_tol"], dtype=np.int64),
            success=None if data["success"] is None else np.asarray(data["success"], dtype=bool),
            metrics={k: arr(v) for k, v in data["metrics"].items()},
            wall_time=float(data["wall_time"]),
            stopped=[str(s) for s in data.get("stopped", [])],
            stop_step=[int(s) for s in data.get("stop_step", [])],
        )


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None


def finite_or_none(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float, at any depth of lists and dicts, replaced by None (JSON's null)."""
    if isinstance(obj, float):
        return _num(obj)
    if isinstance(obj, list):
        return [finite_or_none(v) for v in obj]
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    return obj


def jsonable(hp: Mapping[str, Any]) -> dict[str, Any]:
    """Hyperparameters as JSON values (tuples become lists, NumPy scalars plain numbers)."""
    out = {}
    for k, v in hp.items():
        if isinstance(v, tuple):  # (Adafactor's eps may hold None)
            v = [None if x is None else float(x) for x in v]
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out


SCHEDULES = (None, "inverse-sqrt")


def run(
    problem: Problem,
    contestant: Contestant,
    hyperparams: Mapping[str, Any],
    steps: int,
    seeds: Sequence[int],
    convention: str = "torch",
    record_every: int | None = None,
    keep_path: bool = True,
    schedule: str | None = None,
) -> RunResult:
    """Run ``contestant`` with ``hyperparams`` for ``steps`` updates on ``problem``, one run per seed, side by side.

    Args:
        problem, contestant, hyperparams: what to run, with what settings (on top of the convention's defaults).
        steps: the number of updates.
        seeds: one run per seed.
        convention: the preset the defaults come from.
        record_every: record the loss every this many steps (default: the problem's own ``record_every``).
        keep_path: record the path of 2-D problems.
        schedule: None for a constant rate, or ``"inverse-sqrt"``: ``lr / sqrt(t)`` at step ``t``.

    A run whose loss stops being finite is marked diverged there and its later losses are NaN.
    """
    return run_many(problem, contestant, [hyperparams], steps, seeds, convention, record_every, keep_path, schedule)[0]


def run_many(
    problem: Problem,
    contestant: Contestant,
    settings: Sequence[Mapping[str, Any]],
    steps: int,
    seeds: Sequence[int],
    convention: str = "torch",
    record_every: int | None = None,
    keep_path: bool = True,
    schedule: str | None = None,
) -> list[RunResult]:
    """:func:`run` for several hyperparameter settings at once, one param group each, sharing the problem's work.

    Every setting gets the same seeds, start points and noise; the results are those :func:`run` gives setting by
    setting (param groups do not interact). An elementwise optimizer steps each stacked array (every run's rows) as
    one parameter; one that reads whole parameters (Muon, Adafactor) gets each run's slice as a parameter of its own. A
    closure-driven optimizer (L-BFGS) runs once per run and setting instead, each with a closure (see
    :mod:`descend.lab.closure_runs`).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not seeds:
        raise ValueError("seeds must list at least one seed")
    if not settings:
        raise ValueError("settings must hold at least one set of hyperparameters")
    if schedule not in SCHEDULES:
        raise ValueError(f"Unknown schedule {schedule!r}; known schedules are {SCHEDULES}")
    k, g = len(seeds), len(settings)
    rngs, parts = [], []
    for _ in range(g):
        group_rngs = run_rngs(problem.stream, seeds)
        parts.append(problem.init(group_rngs))
        rngs.extend(group_rngs)
    torch_front = problem.framework == "torch"
    if torch_front:
        import torch

        from descend.torch._sparse_adam import every_entry

        params = [torch.cat([part[i] for part in parts]) for i in range(len(parts[0]))]
    else:
        params = [np.concatenate([part[i] for part in parts]) for i in range(len(parts[0]))]
    closure_runs = contestant.closure_runs(problem, params, k, convention, settings, rngs)
    held: list = []  # (parameter the optimizer holds, index of the problem's parameter, rows it holds)
    dense = True  # False for SparseAdam's torch class: its gradients list every entry, as the NumPy front's count them
    if closure_runs is None:
        if contestant.whole_tensor:
            cuts = [[j * k + i for i in range(k)] for j in range(g)]
        else:
            cuts = [[slice(j * k, (j + 1) * k)] for j in range(g)]
        views = [[(p[cut], i, cut) for cut in group for i, p in enumerate(params)] for group in cuts]
        opt = contestant.build_groups([{"params": [v for v, _, _ in group]} for group in views], convention, settings)
        source = {id(view): (i, cut) for group in views for view, i, cut in group}
        held = [(p, *source[id(p)]) for group in opt.param_groups for p in group["params"]]
        dense = getattr(opt, "dense_gradients", True)
        per = len(opt.param_groups) // g  # MuonWithAdamW makes two groups of each setting
        setting_groups = [opt.param_groups[j * per : (j + 1) * per] for j in range(g)]
        in_force = contestant.in_force(opt, g)
    else:
        opt = None  # one optimizer per run inside closure_runs; none of them has train and eval modes
        setting_groups = closure_runs.groups
        in_force = [{key: v for key, v in groups[0].items() if key != "params"} for groups in setting_groups]
    base_lrs = [[float(group["lr"]) for group in groups] for groups in setting_groups]
    n = k * g
    every = max(1, record_every or problem.record_every)
    recorded = sorted({0, steps, *range(every, steps, every)})
    losses = np.full((len(recorded), n), np.nan)
    path = np.full((steps + 1, n, 2), np.nan) if (problem.is_2d and keep_path) else None
    alive = np.ones(n, dtype=bool)
    stopped = [""] * n
    stop_step = np.full(n, -1, dtype=np.int64)
    start = time.perf_counter()
    with np.errstate(all="ignore"), problem.session():
        losses[0] = problem.loss(params)
        if path is not None:
            path[0] = problem.point(params)
        row = 1
        for t in range(1, steps + 1):
            to_train(opt)  # Schedule-Free takes its gradients at y, and is measured at x
            if schedule == "inverse-sqrt":
                for groups, lrs in zip(setting_groups, base_lrs):
                    for group, lr in zip(groups, lrs):
                        group["lr"] = lr / math.sqrt(t)
            if closure_runs is not None:
                closure_runs.step(t)
            elif torch_front:
                grads = problem.grad(params, t, rngs)
                for p, i, cut in held:
                    p.grad = grads[i][cut] if dense else every_entry(grads[i][cut])
                opt.step()
            else:
                grads = problem.grad(params, t, rngs)
                opt.step([grads[i][cut] for _, i, cut in held])
            problem.project(params)
            if path is not None or recorded[row] == t:
                to_eval(opt)
            if path is not None:
                path[t] = problem.point(params)
            if recorded[row] == t:
                was = alive.copy()
                finite_params = np.ones(n, dtype=bool)
                for p in params:
                    finite_params &= np.all(np.isfinite(np.asarray(p).reshape(n, -1)), axis=1)
                current = np.asarray(problem.loss(params), dtype=np.float64)
                alive &= finite_params & np.isfinite(current)
                for i in np.flatnonzero(was & ~alive):
                    stopped[i] = "undefined" if finite_params[i] and np.isnan(current[i]) else "diverged"
                    stop_step[i] = t
                losses[row] = np.where(alive, current, np.nan)
                row += 1
                if not alive.any():
                    break
        final = losses[-1].copy()
        distance = problem.distance(params)
        if distance is not None:
            distance = np.where(alive, distance, np.nan)
        metrics = {key: np.where(alive, v, np.nan) for key, v in problem.metrics(params).items()}
    wall = (time.perf_counter() - start) / g
    steps_to_tol = np.full(n, -1, dtype=np.int64)
    success = None
    if problem.tol is not None and problem.f_min is not None:
        reached = (losses - problem.f_min) <= problem.tol
        for i in range(n):
            hits = np.flatnonzero(reached[:, i])
            if hits.size:
                steps_to_tol[i] = recorded[hits[0]]
        success = alive & ((final - problem.f_min) <= problem.tol)
    out = []
    for j in range(g):
        cut = slice(j * k, (j + 1) * k)
        out.append(
            RunResult(
                problem=problem.name,
                optimizer=contestant.name,
                hyperparams=in_force[j],
                seeds=[int(s) for s in seeds],
                steps=recorded,
                loss=losses[:, cut].copy(),
                path=None if path is None else path[:, cut].copy(),
                final_loss=final[cut],
                distance=None if distance is None else distance[cut],
                steps_to_tol=steps_to_tol[cut],
                success=None if success is None else success[cut],
                metrics={key: v[cut] for key, v in metrics.items()},
                wall_time=wall,
                stopped=stopped[cut],
                stop_step=[int(v) for v in stop_step[cut]],
            )
        )
    return out
