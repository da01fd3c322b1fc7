"""The problems of the lab, by name. Problems know nothing about optimizers.

>>> from descend.lab import problems
>>> p = problems.get("rosenbrock")
>>> p.f_min, p.optima.tolist()
(0.0, [[1.0, 1.0]])
"""

from __future__ import annotations

from descend.lab.problems.base import Problem, run_rngs
from descend.lab.problems.data import DATASETS, DataProblem, load_dataset, make_data_problems
from descend.lab.problems.functions import Function2D, from_expression, make_functions, quadratic
from descend.lab.problems.online import (
    AMSGradCounterexample,
    LineFit,
    make_amsgrad_counterexample,
    make_line_fit,
)
from descend.lab.problems.torch_models import TorchDataProblem, make_torch_problems, torch_missing

__all__ = [
    "DATASETS",
    "DEFAULT_SUITE",
    "PROBLEMS",
    "AMSGradCounterexample",
    "DataProblem",
    "Function2D",
    "LineFit",
    "Problem",
    "TorchDataProblem",
    "from_expression",
    "get",
    "load_dataset",
    "quadratic",
    "run_rngs",
    "torch_missing",
]

_DATA = make_data_problems()
PROBLEMS: dict[str, Problem] = {
    p.name: p
    for p in (*make_functions(), make_line_fit(), make_amsgrad_counterexample(), *_DATA, *make_torch_problems(_DATA))
}

DEFAULT_SUITE: tuple[str, ...] = (
    "rosenbrock",
    "beale",
    "rastrigin",
    "saddle",
    "quadratic",
    "noisy-quadratic",
    "line-fit",
    "logistic-breast-cancer",
)


def get(name: str) -> Problem:
    """The problem registered as ``name``, or a ValueError listing the known names."""
    if isinstance(name, str) and name.lower() in PROBLEMS:
        return PROBLEMS[name.lower()]
    raise ValueError(f"Unknown problem {name!r}; known problems are {', '.join(PROBLEMS)}")
