"""The article's example: fitting ``y = a*x + b`` by squared error, one sample at a time.

The article's Adam code walks the data ``num_of_iter`` times and updates ``a`` and ``b`` after every sample from
the per-sample gradients ``dL/da = -2*x*(y - (a*x + b))`` and ``dL/db = -2*(y - (a*x + b))``, recording the values in
``a_list`` and ``b_list`` (initial values first). :func:`fit_line` does the same with any optimizer in the registry,
or once per pass on the full batch (the mean of the per-sample gradients) with ``per_sample=False``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

import descend
from descend.algorithms import registry
from descend.algorithms._spec import check_bool
from descend.lab.modes import to_eval, to_train

__all__ = ["FitLineResult", "default_line_data", "fit_line"]


@dataclass
class FitLineResult:
    """The trajectory of a line fit.

    Attributes:
        a_history: the slope, the initial value first, then after every update (the article's ``a_list``).
        b_history: the intercept, likewise (the article's ``b_list``).
        loss_history: the mean squared error over the whole data set at each of those points.
        optimizer: the registry name of the optimizer used.
        hyperparams: the hyperparameters in force, after the convention's defaults.
        per_sample: whether it updated after every sample (True) or once per pass (False).
    """

    a_history: list[float]
    b_history: list[float]
    loss_history: list[float]
    optimizer: str
    hyperparams: dict[str, Any] = field(default_factory=dict)
    per_sample: bool = True

    @property
    def a(self) -> float:
        return self.a_history[-1]

    @property
    def b(self) -> float:
        return self.b_history[-1]

    @property
    def loss(self) -> float:
        return self.loss_history[-1]


def default_line_data(n: int = 20, slope: float = 2.0, intercept: float = 1.0, noise: float = 0.1, seed: int = 0):
    """A small noisy line, ``y = slope*x + intercept + noise``, with ``x`` evenly spread over [0, 1]."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 1.0, n)
    return x, slope * x + intercept + noise * rng.standard_normal(n)


def _mse(a: float, b: float, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((y - (a * x + b)) ** 2))


def fit_line(
    X: Any,
    Y: Any,
    optimizer: str = "adam",
    inits: tuple[float, float] = (0.0, 0.0),
    epochs: int = 10,
    per_sample: bool = True,
    convention: str = "article",
    **hyperparameters: Any,
) -> FitLineResult:
    """Fit ``y = a*x + b`` to ``(X, Y)`` by squared error, as the article's code does.

    Args:
        X: the inputs, a 1-D sequence.
        Y: the targets, a 1-D sequence of the same non-zero length as ``X``.
        optimizer: a registry name (``"sgd"``, ``"momentum"``, ``"rmsprop"``, ``"adam"``, ...).
        inits: the initial ``(a, b)``.
        epochs: passes over the data (the article's ``num_of_iter``).
        per_sample: update after every sample (the article's code) or once per pass on the mean gradient.
        convention: the hyperparameter preset; ``"article"`` gives the article's settings (Adam: lr 0.01, betas 0.9
            and 0.999, epsilon 1e-6 outside the root).
        **hyperparameters: explicit hyperparameters, overriding the convention (``lr=0.05``, ``betas=(0.8, 0.99)``).

    Returns:
        A :class:`FitLineResult` with the histories.
    """
    spec = registry.get(optimizer)
    x = np.asarray(X, dtype=np.float64)
    y = np.asarray(Y, dtype=np.float64)
    if x.ndim != 1 or y.ndim != 1 or x.shape != y.shape or x.size == 0:
        raise ValueError(f"X and Y must be 1-D and of the same non-zero length, got shapes {x.shape} and {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("X and Y must be finite numbers")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
    per_sample = check_bool("per_sample", per_sample)
    if len(inits) != 2:
        raise ValueError(f"inits must be a pair (a, b), got {inits!r}")
    a = np.array(float(inits[0]))
    b = np.array(float(inits[1]))
    opt = descend.OPTIMIZERS[spec.name]([a, b], convention=convention, **hyperparameters)
    result = FitLineResult(
        a_history=[float(a)],
        b_history=[float(b)],
        loss_history=[_mse(float(a), float(b), x, y)],
        optimizer=spec.name,
        hyperparams={k: v for k, v in opt.param_groups[0].items() if k != "params"},
        per_sample=per_sample,
    )
    batches = [(x[i : i + 1], y[i : i + 1]) for i in range(x.size)] if per_sample else [(x, y)]
    for _ in range(epochs):
        for xb, yb in batches:
            to_train(opt)

            def loss_and_grads(xb: np.ndarray = xb, yb: np.ndarray = yb) -> tuple[float, list[np.ndarray]]:
                residual = yb - (a * xb + b)
                grad_a = np.array(np.mean(-2.0 * xb * residual))
                grad_b = np.array(np.mean(-2.0 * residual))
                return float(np.mean(residual**2)), [grad_a, grad_b]

            if spec.elementwise:
                opt.step(loss_and_grads()[1])
            else:  # a closure-driven method (L-BFGS) evaluates the batch's loss and gradients where it chooses
                opt.step(loss_and_grads)
            to_eval(opt)  # Schedule-Free's line is its average x
            result.a_history.append(float(a))
            result.b_history.append(float(b))
            result.loss_history.append(_mse(float(a), float(b), x, y))
    return result
