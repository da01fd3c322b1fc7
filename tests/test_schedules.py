"""Learning-rate schedules: pure step -> lr functions, checked against closed forms and torch's schedulers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from descend import schedules


def test_closed_forms() -> None:
    assert schedules.constant(0.1)(500) == 0.1
    assert [schedules.step_decay(1.0, 2, 0.5)(s) for s in range(5)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    assert schedules.exponential(1.0, 0.9)(3) == pytest.approx(0.729)
    cos = schedules.cosine(1.0, 10, min_lr=0.1)
    assert cos(0) == 1.0 and cos(10) == pytest.approx(0.1) and cos(20) == pytest.approx(0.1)
    assert cos(5) == pytest.approx(0.55)
    warm = schedules.linear_warmup(1.0, 4, after=schedules.exponential(1.0, 0.5))
    assert [warm(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 0.5]


def test_one_cycle_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=50, cycle_momentum=False)
    ours = schedules.one_cycle(0.1, 50)
    for step in range(50):
        assert ours(step) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9), step
        opt.step()
        sched.step()


def test_cosine_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=20, eta_min=0.01)
    ours = schedules.cosine(0.3, 20, min_lr=0.01)
    for step in range(21):
        assert ours(step) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9)
        opt.step()
        sched.step()


@pytest.mark.parametrize(
    ("factory", "error", "match"),
    [
        (lambda: schedules.constant(-1.0), ValueError, "lr"),
        (lambda: schedules.step_decay(0.1, 0), ValueError, "step_size"),
        (lambda: schedules.step_decay(0.1, 1.5), TypeError, "step_size"),
        (lambda: schedules.cosine(0.1, 10, min_lr=0.5), ValueError, "min_lr"),
        (lambda: schedules.one_cycle(0.1, 10, pct_start=1.0), ValueError, "pct_start"),
        (lambda: schedules.linear_warmup(0.1, 5, after=3), TypeError, "after"),
        (lambda: schedules.exponential(0.1, math.nan), ValueError, "gamma"),
        (lambda: schedules.constant(0.1)(-1), ValueError, "step"),
    ],
)
def test_bad_arguments(factory, error, match) -> None:
    with pytest.raises(error, match=match):
        factory()


def test_schedules_are_pure() -> None:
    s = schedules.cosine(1.0, 100)
    assert np.array_equal([s(k) for k in (3, 50, 3)], [s(3), s(50), s(3)])
