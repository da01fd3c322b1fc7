"""What every problem offers the runner: parameters, a loss, gradients and what "solved" means.

A problem runs several independent copies at once (one per seed or start point): every parameter array carries a
leading axis of length ``n_runs``, the loss is returned per run, and the gradient of run ``i`` depends on run ``i``
alone. An elementwise optimizer steps the stacked arrays, which is exactly the same as stepping each run on its own,
only faster; a closure-driven one (L-BFGS) runs on each run's rows (see :mod:`descend.lab.closure_runs`). Problems
know nothing about optimizers.
"""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Problem", "run_rngs"]


def run_rngs(problem: str, seeds: Sequence[int]) -> list[np.random.Generator]:
    """One generator per run, fixed by the problem's name and the run's seed alone.

    Every optimizer therefore starts from the same points and sees the same noise (common random numbers), and run
    ``i`` is the same whatever the number of runs beside it.
    """
    salt = zlib.crc32(problem.encode("utf-8"))
    return [np.random.default_rng([int(seed), salt]) for seed in seeds]


@dataclass
class Problem(ABC):
    """A minimisation problem.

    Attributes:
        name: registry key (``"rosenbrock"``).
        title: display name with the formula where short.
        family: ``"function"`` (a 2-D test function), ``"stochastic"``, ``"online"`` or ``"data"``.
        description: one or two sentences: what it is and what it shows.
        default_steps: the number of steps ``descend compare`` runs when not told.
        f_min: the minimum value of the loss, or None when unknown.
        tol: a run has succeeded when ``loss - f_min <= tol`` (None when there is no known minimum).
        optima: the minimisers (one row each), or None; distances are to the nearest one.
        box: ``(xmin, xmax, ymin, ymax)`` for drawing a 2-D problem, or None when it is not 2-D.
        record_every: the loss is recorded every this many steps (1 for cheap losses).
        references: where the function and its start point come from.
        metric_names: the extra per-run results :meth:`metrics` returns.
        source_hyperparams: hyperparameters the problem's source ran with (for example the counterexample's
            ``betas``); the lab uses them for optimizers that take them, unless told otherwise.
        framework: ``"numpy"`` (parameters are arrays, stepped by ``descend.Adam`` & co.) or ``"torch"``
            (parameters are tensors, stepped by ``descend.torch.Adam`` & co.).
        seed_name: seed the runs as the problem of this name does (default: its own name).
        source_schedule: the learning-rate schedule the problem's source ran with: None (constant) or
            ``"inverse-sqrt"`` (``lr / sqrt(t)`` at step ``t``); used unless told otherwise.
    """

    name: str
    title: str
    family: str
    description: str
    default_steps: int = 300
    f_min: float | None = None
    tol: float | None = None
    optima: np.ndarray | None = None
    box: tuple[float, float, float, float] | None = None
    record_every: int = 1
    references: str = ""
    metric_names: tuple[str, ...] = field(default=())
    source_hyperparams: dict[str, object] = field(default_factory=dict)
    framework: str = "numpy"
    seed_name: str = ""
    source_schedule: str | None = None

    @property
    def stream(self) -> str:
        """The name the run generators are seeded with (a twin problem shares its original's starts and noise)."""
        return self.seed_name or self.name

    @property
    def is_2d(self) -> bool:
        """Whether the parameters are a point in the plane (then trajectories and contours can be drawn)."""
        return self.box is not None

    @abstractmethod
    def init(self, rngs: Sequence[np.random.Generator]) -> list[np.ndarray]:
        """Fresh float64 parameters for ``len(rngs)`` runs, each array with a leading axis of that length."""

    @abstractmethod
    def loss(self, params: Sequence[np.ndarray]) -> np.ndarray:
        """The loss of each run, shape ``(n_runs,)``."""

    @abstractmethod
    def grad(self, params: Sequence[np.ndarray], step: int, rngs: Sequence[np.random.Generator]) -> list[np.ndarray]:
        """The gradient (or a stochastic estimate of it) used for update ``step`` (counted from 1)."""

    def project(self, params: Sequence[np.ndarray]) -> None:  # noqa: B027 - a deliberate no-op default
        """Put the parameters back into the feasible set, in place (unconstrained problems do nothing)."""

    def session(self) -> AbstractContextManager[None]:
        """A context the runner holds while it steps this problem (for settings the problem needs while it runs)."""
        return nullcontext()

    def point(self, params: Sequence[np.ndarray]) -> np.ndarray | None:
        """For 2-D problems, the position of each run, shape ``(n_runs, 2)``; None otherwise."""
        return None

    def metrics(self, params: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Extra per-run results at the end (test accuracy for data problems)."""
        return {}

    def distance(self, params: Sequence[np.ndarray]) -> np.ndarray | None:
        """Distance of each run to the nearest known minimiser, or None when none is known."""
        pts = self.point(params)
        if pts is None or self.optima is None:
            return None
        diffs = pts[:, None, :] - np.asarray(self.optima)[None, :, :]
        return np.sqrt(np.min(np.sum(diffs**2, axis=-1), axis=1))

    def summary(self) -> dict[str, object]:
        """A JSON-ready description for reports."""
        return {
            "name": self.name,
            "title": self.title,
            "family": self.family,
            "description": self.description,
            "f_min": self.f_min,
            "tol": self.tol,
            "optima": None if self.optima is None else np.asarray(self.optima).tolist(),
            "references": self.references,
        }
