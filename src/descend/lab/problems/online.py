"""Problems whose gradient changes from step to step by design: the article's line fit, one sample per update, and
the online counterexample of Reddi, Kale & Kumar (2018) on which Adam fails and AMSGrad does not."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from descend.lab.fit_line import default_line_data
from descend.lab.problems.base import Problem

__all__ = ["AMSGradCounterexample", "LineFit"]


@dataclass
class LineFit(Problem):
    """The article's example: fit ``y = a*x + b`` by squared error, updating after every sample in order.

    The parameters are the point ``(a, b)``; the loss is the mean squared error over all samples; the gradient of
    update ``t`` is that of sample ``(t - 1) mod n`` alone, as in the article's code.
    """

    x: np.ndarray = field(default_factory=lambda: default_line_data()[0])
    y: np.ndarray = field(default_factory=lambda: default_line_data()[1])
    start: tuple[float, float] = (0.0, 0.0)
    jitter: float = 0.5

    def __post_init__(self) -> None:
        design = np.stack([self.x, np.ones_like(self.x)], axis=1)
        best, *_ = np.linalg.lstsq(design, self.y, rcond=None)
        self.optima = best[None, :]
        self.f_min = float(np.mean((self.y - design @ best) ** 2))

    def init(self, rngs: Sequence[np.random.Generator]) -> list[np.ndarray]:
        starts = np.empty((len(rngs), 2))
        for i, rng in enumerate(rngs):
            offset = rng.normal(0.0, self.jitter, size=2)
            starts[i] = self.start if i == 0 else np.asarray(self.start) + offset
        return [starts]

    def loss(self, params: Sequence[np.ndarray]) -> np.ndarray:
        p = params[0]
        residual = self.y[None, :] - (p[:, :1] * self.x[None, :] + p[:, 1:])
        return np.mean(residual**2, axis=1)

    def grad(self, params: Sequence[np.ndarray], step: int, rngs: Sequence[np.random.Generator]) -> list[np.ndarray]:
        p = params[0]
        i = (step - 1) % self.x.size
        residual = self.y[i] - (p[:, 0] * self.x[i] + p[:, 1])
        return [np.stack([-2.0 * self.x[i] * residual, -2.0 * residual], axis=1)]

    def point(self, params: Sequence[np.ndarray]) -> np.ndarray:
        return params[0]

    def surface(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The mean squared error on a grid of ``(a, b)``, for drawing."""
        mean_x, mean_y = self.x.mean(), self.y.mean()
        mean_xx, mean_xy, mean_yy = (self.x**2).mean(), (self.x * self.y).mean(), (self.y**2).mean()
        return mean_yy - 2 * a * mean_xy - 2 * b * mean_y + a * a * mean_xx + 2 * a * b * mean_x + b * b


def make_line_fit() -> LineFit:
    """The article's line fit on its default data (20 points of y = 2x + 1 + noise)."""
    return LineFit(
        name="line-fit",
        title="The article's line fit, one sample per update",
        family="stochastic",
        description="Fit y = a·x + b to 20 noisy points of y = 2x + 1, updating after every sample in order, as the "
        "article's code does. The loss is the mean squared error over all points.",
        default_steps=400,
        tol=1e-3,
        box=(-1.0, 4.0, -1.5, 3.5),
        references="The article this project started from (seed/article.txt)",
    )


@dataclass
class AMSGradCounterexample(Problem):
    """``f_t(x) = 1010 x`` when ``t mod 101 = 1`` and ``-10 x`` otherwise, for ``x`` in ``[-1, 1]``.

    Over one period of 101 steps the losses sum to ``10 x``, so the best fixed point is ``x = -1``; Adam with
    ``beta2 = 0.99`` is drawn to ``x = +1`` because the rare large gradient is forgotten before it comes back, while
    AMSGrad keeps the largest second moment and goes to ``-1``. The loss reported is the average over a period,
    ``10 x / 101``; iterates are projected onto ``[-1, 1]`` after every update. As in the paper's experiment, the
    step size decays as ``lr / sqrt(t)``.
    """

    big: float = 1010.0
    small: float = -10.0
    period: int = 101

    def init(self, rngs: Sequence[np.random.Generator]) -> list[np.ndarray]:
        starts = np.array([[0.0] if i == 0 else [rng.uniform(-0.5, 0.5)] for i, rng in enumerate(rngs)])
        return [starts.reshape(len(rngs), 1)]

    def loss(self, params: Sequence[np.ndarray]) -> np.ndarray:
        mean_slope = (self.big + (self.period - 1) * self.small) / self.period
        return mean_slope * params[0][:, 0]

    def grad(self, params: Sequence[np.ndarray], step: int, rngs: Sequence[np.random.Generator]) -> list[np.ndarray]:
        slope = self.big if step % self.period == 1 else self.small
        return [np.full_like(params[0], slope)]

    def project(self, params: Sequence[np.ndarray]) -> None:
        np.clip(params[0], -1.0, 1.0, out=params[0])

    def distance(self, params: Sequence[np.ndarray]) -> np.ndarray:
        return np.abs(params[0][:, 0] + 1.0)


def make_amsgrad_counterexample() -> AMSGradCounterexample:
    """The counterexample with the constants of Reddi et al.'s synthetic experiment."""
    return AMSGradCounterexample(
        name="amsgrad-counterexample",
        title="AMSGrad counterexample (Reddi et al. 2018)",
        family="online",
        description="f_t(x) = 1010x once every 101 steps and −10x otherwise, on [−1, 1]. The best point is x = −1; "
        "Adam with β₂ = 0.99 drifts towards +1, AMSGrad does not. As in the paper: β = (0.9, 0.99), step lr/√t.",
        default_steps=2020,
        f_min=-10.0 / 101.0,
        tol=0.01,
        record_every=5,
        references="Reddi, Kale & Kumar, 'On the Convergence of Adam and Beyond', ICLR 2018, section 5",
        source_hyperparams={"betas": (0.9, 0.99)},
        source_schedule="inverse-sqrt",
    )
