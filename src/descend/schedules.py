"""Learning-rate schedules as pure functions of the step: each factory returns ``step -> lr``.

Steps count from 0. Use them by writing the value into a param group before each step::

    schedule = descend.schedules.cosine(1e-2, total_steps=1000)
    for step in range(1000):
        opt.param_groups[0]["lr"] = schedule(step)
        opt.step(grads)
"""

from __future__ import annotations

import math
from collections.abc import Callable

from descend.algorithms._spec import check_real

Schedule = Callable[[int], float]

__all__ = ["Schedule", "constant", "cosine", "exponential", "linear_warmup", "one_cycle", "step_decay"]


def _check_step(step: int) -> int:
    if isinstance(step, bool) or not isinstance(step, int) and not hasattr(step, "__index__"):
        raise TypeError(f"step must be an integer, got {step!r}")
    step = int(step)
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return step


def _check_count(name: str, value: int, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return value


def constant(lr: float) -> Schedule:
    """The same learning rate at every step."""
    lr = check_real("lr", lr, low=0.0)
    return lambda step: (_check_step(step), lr)[1]


def step_decay(lr: float, step_size: int, gamma: float = 0.1) -> Schedule:
    """``lr * gamma ** (step // step_size)``, as torch's ``StepLR``."""
    lr = check_real("lr", lr, low=0.0)
    step_size = _check_count("step_size", step_size)
    gamma = check_real("gamma", gamma, low=0.0)
    return lambda step: lr * gamma ** (_check_step(step) // step_size)


def exponential(lr: float, gamma: float) -> Schedule:
    """``lr * gamma ** step``, as torch's ``ExponentialLR``."""
    lr = check_real("lr", lr, low=0.0)
    gamma = check_real("gamma", gamma, low=0.0)
    return lambda step: lr * gamma ** _check_step(step)


def cosine(lr: float, total_steps: int, min_lr: float = 0.0) -> Schedule:
    """Half a cosine from ``lr`` at step 0 down to ``min_lr`` at ``total_steps``, then ``min_lr``."""
    lr = check_real("lr", lr, low=0.0)
    total_steps = _check_count("total_steps", total_steps)
    min_lr = check_real("min_lr", min_lr, low=0.0, high=lr)

    def schedule(step: int) -> float:
        t = min(_check_step(step), total_steps) / total_steps
        return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))

    return schedule


def linear_warmup(lr: float, warmup_steps: int, after: Schedule | None = None) -> Schedule:
    """Rise linearly from ``lr / warmup_steps`` at step 0 to ``lr`` at ``warmup_steps - 1``; then follow ``after``
    (counted from the end of the warmup) or stay at ``lr``."""
    lr = check_real("lr", lr, low=0.0)
    warmup_steps = _check_count("warmup_steps", warmup_steps)
    if after is not None and not callable(after):
        raise TypeError(f"after must be a schedule (a function of the step) or None, got {after!r}")

    def schedule(step: int) -> float:
        step = _check_step(step)
        if step < warmup_steps:
            return lr * (step + 1) / warmup_steps
        return after(step - warmup_steps) if after is not None else lr

    return schedule


def one_cycle(
    max_lr: float,
    total_steps: int,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> Schedule:
    """Smith's one-cycle policy with cosine annealing, as torch's ``OneCycleLR`` (``three_phase=False``): from
    ``max_lr / div_factor`` up to ``max_lr`` over ``pct_start`` of the steps, then down to
    ``max_lr / (div_factor * final_div_factor)``."""
    max_lr = check_real("max_lr", max_lr, low=0.0)
    total_steps = _check_count("total_steps", total_steps, low=2)
    pct_start = check_real("pct_start", pct_start, low=0.0, high=1.0, low_open=True, high_open=True)
    div_factor = check_real("div_factor", div_factor, low=0.0, low_open=True)
    final_div_factor = check_real("final_div_factor", final_div_factor, low=0.0, low_open=True)
    initial = max_lr / div_factor
    final = initial / final_div_factor
    peak = float(pct_start * total_steps) - 1

    def anneal(start: float, end: float, pct: float) -> float:
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)

    def schedule(step: int) -> float:
        step = min(_check_step(step), total_steps - 1)
        if step <= peak:
            return anneal(initial, max_lr, step / peak) if peak > 0 else max_lr
        return anneal(max_lr, final, (step - peak) / (total_steps - 1 - peak))

    return schedule
