"""Side-by-side comparison: every optimizer on every problem, fairly tuned, several seeds, results saved as they come.

Each (problem, optimizer) cell is tuned on its own tuning seeds, then run on the reporting seeds, and saved at once
to ``runs/<problem>__<optimizer>.json`` in the output folder (atomically). With ``resume=True`` a cell whose file
exists and was made with the same settings is loaded instead of run again.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import multiprocessing
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from descend.algorithms.conventions import check_convention
from descend.lab.contestants import DEFAULT_OPTIMIZERS, get_contestant, param_shapes
from descend.lab.problems import DEFAULT_SUITE, Problem, torch_missing
from descend.lab.problems import get as get_problem
from descend.lab.runner import RunResult, finite_or_none, jsonable, run
from descend.lab.store import write_json, write_text
from descend.lab.tuner import DEFAULT_LR_GRID, MOMENTUM_GRID, objective_text, tune
from descend.lab.verdict import verdict
from descend.lab.workers import clear_stop, run_forked

__all__ = [
    "Cell",
    "CompareConfig",
    "CompareResult",
    "compare",
    "default_out_dir",
    "run_cell",
    "summarize",
    "total_units",
]

Progress = Callable[[int, str], None]


MAX_STEPS = 1_000_000
MAX_SEEDS = 1_000
MAX_RECORDED_BYTES = 2 * 2**30


def recorded_bytes(problem: Problem, steps: int, seeds: int) -> int:
    """About how many bytes a cell's reporting runs record: the path of a 2-D problem (every step, two float64 per
    run) and the recorded losses."""
    path = (steps + 1) * seeds * 2 * 8 if problem.is_2d else 0
    return path + (steps // max(problem.record_every, 1) + 2) * seeds * 8


@dataclass
class CompareConfig:
    """What to compare and how.

    Attributes:
        optimizers: lab optimizer names (see :data:`descend.lab.contestants.CONTESTANTS`).
        problems: problem names, or :class:`Problem` objects (a user's expression).
        steps: updates per run; None uses each problem's default.
        seeds: reporting runs per cell; the seeds are ``seed, seed + 1, ...``.
        seed: the first seed; everything is determined by it.
        convention: the preset the defaults come from.
        tune: grid-search the learning rate per problem and optimizer; otherwise use ``lr`` or the defaults.
        lr: one fixed learning rate for everyone (turns tuning off).
        grid: the learning rates tried when tuning.
        tune_seeds: runs per trial when tuning; their seeds are ``seed + 10000, ...``, apart from the reporting ones.
        tune_momentum: also tune each optimizer's momentum (beta1 for the Adam family) over (0.5, 0.9, 0.99).
        source_hyperparams: use the hyperparameters and schedule a problem's source ran with (the AMSGrad
            counterexample's betas and lr / sqrt(t)).
        like_with_like: set weight decay to 0 on problems that define their own minimiser (every problem but the
            data ones): decay moves the minimiser, so an optimizer that decays by default (AdamW) would be judged
            on reaching a point it is told not to reach. On data problems decay is regularisation and stays.
    """

    optimizers: Sequence[str] = DEFAULT_OPTIMIZERS
    problems: Sequence[str | Problem] = DEFAULT_SUITE
    steps: int | None = None
    seeds: int = 3
    seed: int = 0
    convention: str = "torch"
    tune: bool = True
    lr: float | None = None
    grid: Sequence[float] = DEFAULT_LR_GRID
    tune_seeds: int = 2
    tune_momentum: bool = False
    source_hyperparams: bool = True
    like_with_like: bool = True

    def checked(self) -> tuple[list[Problem], list[str]]:
        """Validate everything; return the problems and optimizer names. Raises ValueError naming the bad value."""
        check_convention(self.convention)
        names = [get_contestant(n).name for n in self.optimizers]
        if not names:
            raise ValueError("no optimizers to compare")
        problems = [p if isinstance(p, Problem) else get_problem(p) for p in self.problems]
        if not problems:
            raise ValueError("no problems to compare on")
        torch_ones = [p.name for p in problems if p.framework == "torch"]
        if torch_ones and torch_missing() is not None:
            raise ValueError(
                f"the problems {', '.join(torch_ones)} need torch and descend.torch, which cannot be "
                f"imported here ({torch_missing()}); leave them out or install descend[torch]"
            )
        for what, value in (("steps", self.steps), ("seeds", self.seeds), ("tune_seeds", self.tune_seeds)):
            if value is None and what == "steps":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{what} must be a positive integer, got {value!r}")
        if self.steps is not None and self.steps > MAX_STEPS:
            raise ValueError(f"steps must be at most {MAX_STEPS:,}, got {self.steps:,}")
        if self.seeds > MAX_SEEDS or self.tune_seeds > MAX_SEEDS:
            raise ValueError(f"seeds must be at most {MAX_SEEDS:,}, got {max(self.seeds, self.tune_seeds):,}")
        for problem in problems:
            need = recorded_bytes(problem, self.steps or problem.default_steps, self.seeds)
            if need > MAX_RECORDED_BYTES:
                raise ValueError(
                    f"{self.steps or problem.default_steps:,} steps × {self.seeds:,} seeds on {problem.name} would "
                    f"record about {need / 2**30:.1f} GiB of losses and paths; at most {MAX_RECORDED_BYTES / 2**30:g} "
                    "GiB is allowed: give fewer --steps or --seeds"
                )
        for name in names:
            if not any(runs_on(p, name) for p in problems):
                raise ValueError(
                    f"{name} runs on none of the problems ({', '.join(p.name for p in problems)}): "
                    f"{get_contestant(name).summary}; it takes problems whose parameters it can update "
                    "(Muon: matrices only; muon-adamw: at least one matrix)"
                )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.lr is not None and not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        if not self.grid or any(not (math.isfinite(g) and g > 0) for g in self.grid):
            raise ValueError(f"the learning-rate grid must be positive finite numbers, got {list(self.grid)!r}")
        return problems, names

    @property
    def tuning(self) -> bool:
        return self.tune and self.lr is None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["tune"] = self.tuning  # a fixed lr turns tuning off, whatever tune says
        data["problems"] = [p.name if isinstance(p, Problem) else p for p in self.problems]
        data["optimizers"] = list(self.optimizers)
        data["grid"] = list(self.grid)
        return data


def runs_on(problem: Problem, name: str) -> bool:
    """Whether the lab optimizer ``name`` runs on ``problem`` (Muon needs matrices): a comparison leaves the other
    cells out, and the reports leave them blank."""
    return get_contestant(name).applies_to(param_shapes(problem))


@dataclass
class Cell:
    """One optimizer on one problem: the tuning trials, the chosen settings and the reporting runs."""

    result: RunResult
    trials: list[dict[str, Any]] = field(default_factory=list)
    tuned: dict[str, Any] = field(default_factory=dict)
    objective: str = ""
    adjusted: dict[str, Any] = field(default_factory=dict)


@dataclass
class CompareResult:
    """Everything a report needs."""

    config: CompareConfig
    problems: list[Problem]
    optimizers: list[str]
    cells: dict[tuple[str, str], Cell]
    resumed: list[tuple[str, str]] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        """One summary row per cell, in problem then optimizer order."""
        return [summarize(p, self.cells[(p.name, o)]) for p in self.problems for o in self.ran(p.name)]

    def ran(self, problem: str) -> list[str]:
        """The optimizers that ran on ``problem`` (see :func:`runs_on`), in order."""
        return [o for o in self.optimizers if (problem, o) in self.cells]


def default_out_dir(now: datetime | None = None, root: str | Path = "descend-runs") -> Path:
    """``descend-runs/<YYYYmmdd-HHMMSS>`` under the current folder (``-2``, ``-3``, ... if that one exists)."""
    base = Path(root) / (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def _median(values: np.ndarray | None) -> float | None:
    if values is None:
        return None
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else None


def summarize(problem: Problem, cell: Cell) -> dict[str, Any]:
    """The table row of a cell: medians over seeds, success rate, test accuracy where it applies, the seconds to the
    tolerance and the settings changed to compare like with like."""
    r = cell.result
    reached = r.steps_to_tol[r.steps_to_tol >= 0]
    row: dict[str, Any] = {
        "problem": problem.name,
        "optimizer": r.optimizer,
        "lr": r.hyperparams.get("lr"),
        "tuned": ", ".join(f"{k}={_fmt(v)}" for k, v in cell.tuned.items()) or "no",
        "final_loss": _median(r.final_loss),
        "gap": None if problem.f_min is None else _median(r.final_loss - problem.f_min),
        "distance": _median(r.distance),
        "steps_to_tol": float(np.median(reached)) if reached.size else None,
        "success_rate": None if r.success is None else float(np.mean(r.success)),
        "diverged": (
            sum(1 for why in r.stopped if why == "diverged") if r.stopped else int(np.sum(~np.isfinite(r.final_loss)))
        ),
        "undefined": sum(1 for why in r.stopped if why == "undefined"),
        "runs": len(r.seeds),
        "wall_time": r.wall_time,
        "seconds_to_tol": (
            float(np.median(reached)) * r.wall_time / max(int(r.steps[-1]), 1) if reached.size else None
        ),
        "adjusted": ", ".join(f"{k}={_fmt(v)}" for k, v in cell.adjusted.items()) or "",
    }
    for name, values in r.metrics.items():
        finite = np.asarray(values, dtype=np.float64)
        finite = finite[np.isfinite(finite)]
        row[name] = float(np.mean(finite)) if finite.size else None
    return row


def _fmt(v: Any) -> str:
    if isinstance(v, (tuple, list)):
        return "(" + ", ".join(_fmt(x) for x in v) + ")"
    return f"{v:g}" if isinstance(v, float) else str(v)


FORMAT = 2  # the version of the saved cells; older ones are run again


def _key(config: CompareConfig, problem: Problem, optimizer: str, steps: int) -> str:
    settings = {
        "format": FORMAT,
        "problem": problem.summary(),
        "problem_settings": getattr(problem, "settings", None),
        "optimizer": optimizer,
        "steps": steps,
        **{k: v for k, v in config.as_json().items() if k not in ("problems", "optimizers", "steps")},
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cell_path(out: Path, problem: str, optimizer: str) -> Path:
    """Where a cell is saved."""
    return out / "runs" / f"{problem}__{optimizer}.json"


MAX_CELL_BYTES = 256 * 2**20  # far above what the largest allowed run writes


def read_capped(path: Path, limit: int = MAX_CELL_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (read no further), or a ValueError saying what it is."""
    if not path.is_file():
        raise ValueError(f"{str(path)!r} is not a regular file")
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{str(path)!r} is larger than {limit // 2**20} MiB")
    return data


def _load_cell(path: Path, key: str, seeds: int) -> Cell | None:
    """The saved cell at ``path`` if it was made with the settings of ``key``; None if with other settings.

    Raises:
        ValueError: the file is not a cell file descend wrote (unreadable, not JSON, wrong types or shapes); the
            message names it. Nothing is overwritten, so an edited file is never lost.
    """
    try:
        data = json.loads(read_capped(path).decode("utf-8"))
        if not isinstance(data, dict):
            raise TypeError(f"the file holds a {type(data).__name__}, not an object")
        if data.get("key") != key:
            return None
        cell = Cell(
            RunResult.from_json(data["result"]),
            list(data["trials"]),
            dict(data["tuned"]),
            str(data["objective"]),
            dict(data.get("adjusted", {})),
        )
        _check_cell(cell, seeds)
    except (OSError, ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        raise ValueError(
            f"--resume cannot read the saved run {str(path)!r} ({type(exc).__name__}: {exc}); it was changed or is "
            "not one descend wrote. Move it away to run that cell again, or run without --resume into another "
            "--out"
        ) from None
    return cell


def _check_cell(cell: Cell, seeds: int) -> None:
    """Refuse a loaded cell whose arrays do not fit together (a hand-edited file)."""
    r = cell.result
    if not isinstance(r.problem, str) or not isinstance(r.optimizer, str):
        raise TypeError("problem and optimizer must be names")
    if len(r.seeds) != seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in r.seeds):
        raise ValueError(f"it holds {len(r.seeds)} seeds where {seeds} integers were expected")
    if r.loss.shape != (len(r.steps), seeds) or r.final_loss.shape != (seeds,) or r.steps_to_tol.shape != (seeds,):
        raise ValueError(f"its loss has shape {r.loss.shape}, not ({len(r.steps)}, {seeds})")
    if r.path is not None and (r.path.ndim != 3 or r.path.shape[1:] != (seeds, 2)):
        raise ValueError(f"its path has shape {r.path.shape}")
    for t in cell.trials:
        if not isinstance(t, dict) or not isinstance(t.get("lr"), (int, float)):
            raise TypeError(f"a tuning trial is {t!r}, not a dict with a numeric lr")


def _units(config: CompareConfig, contestant_knob: str | None) -> int:
    if not config.tuning:
        return 1
    momenta = len(MOMENTUM_GRID) if (config.tune_momentum and contestant_knob) else 1
    return len(config.grid) * momenta + 3 + 1


def run_cell(config: CompareConfig, problem: Problem, name: str, on_trial: Callable[[], None] | None = None) -> Cell:
    """Tune (unless told not to) and run one optimizer on one problem."""
    contestant = get_contestant(name)
    steps = config.steps or problem.default_steps
    seeds = [config.seed + i for i in range(config.seeds)]
    tune_seeds = [config.seed + 10_000 + i for i in range(config.tune_seeds)]
    accepted = set(contestant.hyperparameter_names())
    base = {k: v for k, v in problem.source_hyperparams.items() if k in accepted} if config.source_hyperparams else {}
    adjusted = like_with_like(problem, contestant, config)
    base.update(adjusted)
    schedule = problem.source_schedule if config.source_hyperparams else None
    trials: list[dict[str, Any]] = []
    tuned: dict[str, Any] = {}
    objective = ""
    if config.tuning:
        found = tune(
            problem,
            contestant,
            steps,
            tune_seeds,
            base,
            config.convention,
            config.grid,
            config.tune_momentum,
            on_trial=on_trial,
            schedule=schedule,
        )
        hp = found.best
        trials, objective = found.trials, found.objective
        knob = contestant.momentum_knob if config.tune_momentum else None
        tuned = {"lr": hp["lr"], **({knob: hp[knob]} if knob else {})}
    else:
        hp = {**base, **({"lr": float(config.lr)} if config.lr is not None else {})}
    # A short untimed run first, so that first-call costs (imports, allocations, caches) are not timed.
    run(
        problem,
        contestant,
        hp,
        min(steps, WARM_UP_STEPS),
        seeds[:1],
        config.convention,
        keep_path=False,
        schedule=schedule,
    )
    result = run(problem, contestant, hp, steps, seeds, config.convention, schedule=schedule)
    return Cell(result, trials, tuned, objective, adjusted)


WARM_UP_STEPS = 10


def like_with_like(problem: Problem, contestant: Any, config: CompareConfig) -> dict[str, Any]:
    """The settings changed so that ``contestant`` is judged on the problem as posed: weight decay 0 where the
    problem defines its own minimiser (see :attr:`CompareConfig.like_with_like`)."""
    if not config.like_with_like or problem.family == "data":
        return {}
    decay = contestant.defaults(config.convention).get("weight_decay", 0.0)
    return {"weight_decay": 0.0} if decay else {}


# The work of a parallel comparison, inherited by the forked workers (problems hold functions, which do not pickle).
_PENDING: list[tuple[CompareConfig, Problem, str]] = []


def _run_pending(index: int) -> Cell:
    return run_cell(*_PENDING[index])


def compare(
    config: CompareConfig,
    out: str | Path | None = None,
    resume: bool = False,
    progress: Progress | None = None,
    jobs: int = 1,
) -> CompareResult:
    """Run the comparison described by ``config``, saving each cell under ``out`` as soon as it is done.

    Args:
        config: what to run.
        out: the output folder (created if needed); None keeps everything in memory.
        resume: load cells already saved in ``out`` with the same settings instead of running them.
        progress: called as ``progress(units_done, label)``; :func:`total_units` gives the total.
        jobs: worker processes; cells are independent and seeded by name, so the results do not depend on it.

    Returns:
        A :class:`CompareResult`; with ``out``, ``results.json`` and ``results.csv`` are written too.
    """
    problems, names = config.checked()
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    clear_stop()
    out_path = None if out is None else Path(out)
    cells: dict[tuple[str, str], Cell] = {}
    resumed = []
    todo = []
    for problem in problems:
        steps = config.steps or problem.default_steps
        for name in names:
            if not runs_on(problem, name):
                continue
            key = _key(config, problem, name, steps)
            path = None if out_path is None else cell_path(out_path, problem.name, name)
            units = _units(config, get_contestant(name).momentum_knob)
            if resume and path is not None and (path.exists() or path.is_symlink()):
                cell = _load_cell(path, key, config.seeds)
                if cell is not None:
                    cells[(problem.name, name)] = cell
                    resumed.append((problem.name, name))
                    if progress:
                        progress(units, f"{problem.name} · {name} (saved)")
                    continue
            todo.append((problem, name, key, path, units))

    def finish(problem: Problem, name: str, key: str, path: Path | None, cell: Cell) -> None:
        cells[(problem.name, name)] = cell
        if path is not None:
            write_json(
                path,
                {
                    "key": key,
                    "result": cell.result.to_json(),
                    "trials": cell.trials,
                    "tuned": jsonable(cell.tuned),
                    "objective": cell.objective,
                    "adjusted": jsonable(cell.adjusted),
                },
                compact=True,
            )

    parallel = jobs > 1 and len(todo) > 1 and "fork" in multiprocessing.get_all_start_methods()
    if not parallel:
        for problem, name, key, path, units in todo:
            done = [0]

            def on_trial(lb: str = f"{problem.name} · {name}", done: list[int] = done, units: int = units) -> None:
                done[0] += 1
                if progress and done[0] < units:  # the last unit is the reporting run
                    progress(1, lb)

            finish(problem, name, key, path, run_cell(config, problem, name, on_trial))
            if progress:
                progress(units - min(done[0], units - 1), f"{problem.name} · {name}")
    else:
        _PENDING[:] = [(config, t[0], t[1]) for t in todo]

        def finished(i: int, cell: Cell) -> None:
            problem, name, key, path, units = todo[i]
            finish(problem, name, key, path, cell)
            if progress:
                progress(units, f"{problem.name} · {name}")

        try:
            run_forked(_run_pending, range(len(todo)), jobs, finished)
        finally:
            _PENDING.clear()
    outcome = CompareResult(config, problems, names, cells, resumed)
    if out_path is not None:
        write_results(outcome, out_path)
    return outcome


def total_units(config: CompareConfig) -> int:
    """The number of progress units :func:`compare` reports (tuning trials plus final runs)."""
    problems, names = config.checked()
    return sum(_units(config, get_contestant(n).momentum_knob) for p in problems for n in names if runs_on(p, n))


def write_results(outcome: CompareResult, out: Path) -> None:
    """Write ``results.json`` (settings, problems, rows, tuning trials) and ``results.csv`` (the rows)."""
    rows = outcome.rows()
    tuning = {
        f"{p}/{o}": {
            "chosen": jsonable(c.tuned),
            "objective": c.objective,
            "trials": c.trials,
            "hyperparams": jsonable(c.result.hyperparams),
        }
        for (p, o), c in outcome.cells.items()
    }
    data = {
        "config": outcome.config.as_json(),
        "tuning_objective": objective_text(outcome.problems[0]) if outcome.config.tuning else None,
        "problems": [p.summary() for p in outcome.problems],
        "rows": rows,
        "verdict": verdict(outcome).as_json(),
        "tuning": tuning,
    }
    write_json(out / "results.json", finite_or_none(json.loads(json.dumps(data, default=str))))
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    write_text(out / "results.csv", buffer.getvalue())
