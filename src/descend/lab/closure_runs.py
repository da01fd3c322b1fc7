"""Running a closure-driven optimizer (L-BFGS) on a lab problem: one optimizer per run, each given a closure.

The runner steps elementwise optimizers on the problem's stacked parameters (one row per run), which is the same as
stepping each run on its own. A closure-driven method is not elementwise: it takes all its parameters as one vector
(its dot products and line search would mix the runs), and it evaluates the loss and gradient where it chooses. So
each run gets its own optimizer over its own rows (views into the stacked arrays, which the runner keeps reading) and
its own closure, which returns the problem's loss at that run's parameters and the gradient the problem gives for
this update. Every evaluation within update ``t`` sees the same noise or minibatch: the run's generator is put back
to where it was when the update began before each evaluation, so an update consumes the same random numbers as an
elementwise optimizer's, however often the closure is called (common random numbers hold).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from descend.lab.problems import Problem

__all__ = ["ClosureRuns"]


class ClosureRuns:
    """One closure-driven optimizer per run and setting, over views of the stacked parameters.

    Args:
        problem: the problem.
        cls: the optimizer class (NumPy or ``descend.torch``, matching the parameters).
        params: the stacked parameters, ``len(settings) * runs`` rows each, setting by setting.
        runs: the runs per setting.
        settings: the hyperparameters of each setting (the variant's fixed ones included).
        convention: the preset the defaults come from.
        rngs: one generator per row.
    """

    def __init__(
        self,
        problem: Problem,
        cls: type,
        params: Sequence[Any],
        runs: int,
        settings: Sequence[Mapping[str, Any]],
        convention: str,
        rngs: Sequence[np.random.Generator],
    ) -> None:
        self.problem = problem
        self.rngs = rngs
        self.rows = [[p[i : i + 1] for p in params] for i in range(len(settings) * runs)]
        self.torch = problem.framework == "torch"
        self.optimizers = [
            cls(rows, convention=convention, **dict(settings[i // runs])) for i, rows in enumerate(self.rows)
        ]
        # the param groups of each setting, for the hyperparameters in force and a learning-rate schedule
        self.groups = [
            [opt.param_groups[0] for opt in self.optimizers[j * runs : (j + 1) * runs]] for j in range(len(settings))
        ]

    def step(self, t: int) -> None:
        """Update ``t`` (counted from 1) of every run."""
        for i, opt in enumerate(self.optimizers):
            opt.step(self._closure(i, t))

    def _closure(self, i: int, t: int) -> Any:
        rows, rng = self.rows[i], self.rngs[i]
        start = rng.bit_generator.state
        problem = self.problem

        def evaluate() -> tuple[float, list[Any]]:
            rng.bit_generator.state = start
            grads = problem.grad(rows, t, [rng])
            return float(np.asarray(problem.loss(rows), dtype=np.float64)[0]), grads

        if not self.torch:
            return evaluate

        def closure() -> float:
            loss, grads = evaluate()
            for p, g in zip(rows, grads):
                p.grad = g
            return loss

        return closure
