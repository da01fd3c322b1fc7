"""Every algorithm reaches the optimum of a parabola and of Rosenbrock, in optax's test setups.

Starting points, optima and learning rates follow optax's alias tests: a parabola from (-1, 10, 1) to (1, -1, 1) and
Rosenbrock (a = 1, b = 100) from (0, 0) to (1, 1), 10k steps, rtol = atol = 3e-2. The "optax" convention is used so
the defaults (AdamW's weight decay, epsilon placement) are optax's.
"""

from __future__ import annotations

import numpy as np
import pytest

import descend
from tests.tolerances import CONVERGENCE, assert_close

STEPS = 10_000

# name, kwargs: learning rates from optax's tests where optax has the algorithm, tuned by hand otherwise.
CASES = [
    ("sgd", {"lr": 1e-3, "momentum": 0.9}),
    ("momentum", {"lr": 1e-2, "beta": 0.9}),
    ("rmsprop", {"lr": 5e-3}),
    ("rmsprop", {"lr": 5e-3, "momentum": 0.9}),
    ("adagrad", {"lr": 1.0}),
    ("adadelta", {"lr": 1.0, "eps": 1e-8}),
    ("adam", {"lr": 1e-1}),
    ("adam", {"lr": 1e-1, "amsgrad": True}),
    ("adamw", {"lr": 1e-1}),
    ("adamax", {"lr": 1e-1}),
    ("nadam", {"lr": 1e-2}),
    ("radam", {"lr": 5e-3}),
]


def _parabola():
    target = np.array([1.0, -1.0, 1.0])
    return np.array([-1.0, 10.0, 1.0]), target, lambda p: 2.0 * (p - target)


def _rosenbrock():
    a, b = 1.0, 100.0

    def grad(p):
        x, y = p
        return np.array([-2.0 * (a - x) - 4.0 * b * x * (y - x * x), 2.0 * b * (y - x * x)])

    return np.array([0.0, 0.0]), np.array([a, a * a]), grad


@pytest.mark.parametrize("setup", [_parabola, _rosenbrock], ids=["parabola", "rosenbrock"])
@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=lambda v: v if isinstance(v, str) else "-".join(map(str, v)))
def test_reaches_the_optimum(name: str, kwargs: dict, setup) -> None:
    start, optimum, grad = setup()
    params = start.copy()
    opt = descend.OPTIMIZERS[name]([params], convention="optax", **kwargs)
    for _ in range(STEPS):
        opt.step([grad(params)])
    assert_close(params, optimum, CONVERGENCE, f"{name} {kwargs}")


def _reddi(amsgrad: bool) -> float:
    """Reddi, Kale & Kumar's online problem: f_t(x) = 1010 x once every 101 steps, -10 x otherwise, x in [-1, 1].

    Over a period the gradients sum to +10, so the best x is -1. Adam forgets the rare large gradient and drifts to
    +1; AMSGrad's maximum remembers it. The step size decays as lr / sqrt(t), as in the paper's analysis.
    """
    x = np.array(0.0)
    opt = descend.Adam([x], lr=0.5, betas=(0.9, 0.99), amsgrad=amsgrad)
    path = []
    for t in range(1, 101 * 100 + 1):
        opt.param_groups[0]["lr"] = 0.5 / np.sqrt(t)
        opt.step([np.array(1010.0 if t % 101 == 1 else -10.0)])
        np.clip(x, -1.0, 1.0, out=x)  # the projection onto the feasible set
        path.append(float(x))
    return float(np.mean(path[-101:]))


def test_amsgrad_counterexample() -> None:
    assert _reddi(amsgrad=False) > 0.8
    assert _reddi(amsgrad=True) < -0.8
