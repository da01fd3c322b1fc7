"""Closed-form trajectories: what each rule must give on problems simple enough to solve by hand."""

from __future__ import annotations

import numpy as np
import pytest

import descend
from tests.tolerances import TRANSCRIPTION_FLOAT64, assert_close


def _run(opt_cls, grad_fn, x0, steps, **kwargs):
    x = np.array(x0, dtype=np.float64)
    opt = opt_cls([x], **kwargs)
    path = [x.copy()]
    for _ in range(steps):
        opt.step([np.asarray(grad_fn(x), dtype=np.float64)])
        path.append(x.copy())
    return x, path


@pytest.mark.parametrize("c", [3.0, -0.5, 1e-3])
def test_adam_constant_gradient_moves_lr_times_sign_per_step(c: float) -> None:
    t, lr, eps = 40, 0.01, 1e-8
    x, _ = _run(descend.Adam, lambda x: np.full_like(x, c), [0.0, 1.0], t, lr=lr, eps=eps)
    assert_close(x, np.array([0.0, 1.0]) - t * lr * c / (abs(c) + eps), TRANSCRIPTION_FLOAT64)


def test_adam_without_bias_correction_starts_slower() -> None:
    # Without correction the first step is lr * (1 - b1) * c / (sqrt(1 - b2) * |c| + eps).
    c, lr = 2.0, 0.1
    x, _ = _run(descend.Adam, lambda x: np.full_like(x, c), [0.0], 1, lr=lr, bias_correction=False, eps=0.0)
    assert_close(x, [-lr * 0.1 * c / (np.sqrt(0.001) * c)], TRANSCRIPTION_FLOAT64)


@pytest.mark.parametrize("alpha", [0.99, 0.9, 0.5])
def test_rmsprop_first_step_on_unit_gradient(alpha: float) -> None:
    lr = 0.01
    x, _ = _run(descend.RMSprop, lambda x: np.ones_like(x), [0.0], 1, lr=lr, alpha=alpha, eps=0.0)
    assert_close(x, [-lr / np.sqrt(1 - alpha)], TRANSCRIPTION_FLOAT64)


def test_adagrad_on_a_linear_function_steps_as_one_over_root_t() -> None:
    # f(x) = c * x: the gradient is c, S_t = t c^2, so step t moves lr * sign(c) / sqrt(t).
    c, lr, t = -4.0, 0.1, 30
    x, path = _run(descend.Adagrad, lambda x: np.full_like(x, c), [1.0], t, lr=lr, eps=0.0)
    expected = 1.0 + lr * np.cumsum(1.0 / np.sqrt(np.arange(1, t + 1)))
    assert_close(np.array(path[1:]).ravel(), expected, TRANSCRIPTION_FLOAT64)


def test_adagrad_lr_decay() -> None:
    c, lr, decay = 1.0, 0.1, 0.5
    _, path = _run(descend.Adagrad, lambda x: np.full_like(x, c), [0.0], 3, lr=lr, lr_decay=decay, eps=0.0)
    steps = [lr / (1 + (k - 1) * decay) / np.sqrt(k) for k in (1, 2, 3)]
    assert_close(np.array(path[1:]).ravel(), -np.cumsum(steps), TRANSCRIPTION_FLOAT64)


def test_heavy_ball_recurrence() -> None:
    # torch's form: b_1 = g, b_t = mu b_{t-1} + g, so under a constant g, b_t = g (1 - mu^t) / (1 - mu).
    g, mu, lr, t = 2.0, 0.9, 0.01, 25
    _, path = _run(descend.SGD, lambda x: np.full_like(x, g), [0.0], t, lr=lr, momentum=mu)
    buffers = g * (1 - mu ** np.arange(1, t + 1)) / (1 - mu)
    assert_close(np.array(path[1:]).ravel(), -lr * np.cumsum(buffers), TRANSCRIPTION_FLOAT64)


def test_dampening_is_not_applied_on_the_first_step() -> None:
    g, mu, tau, lr = 1.0, 0.9, 0.5, 0.1
    _, path = _run(descend.SGD, lambda x: np.full_like(x, g), [0.0], 2, lr=lr, momentum=mu, dampening=tau)
    b1 = g
    b2 = mu * b1 + (1 - tau) * g
    assert_close(np.array(path[1:]).ravel(), [-lr * b1, -lr * (b1 + b2)], TRANSCRIPTION_FLOAT64)


def test_article_momentum_is_an_average_starting_at_zero() -> None:
    # V_t = beta V_{t-1} + (1 - beta) g with V_0 = 0, so under a constant g, V_t = (1 - beta^t) g.
    g, beta, lr, t = 3.0, 0.9, 0.05, 20
    _, path = _run(descend.Momentum, lambda x: np.full_like(x, g), [0.0], t, lr=lr, beta=beta)
    velocities = (1 - beta ** np.arange(1, t + 1)) * g
    assert_close(np.array(path[1:]).ravel(), -lr * np.cumsum(velocities), TRANSCRIPTION_FLOAT64)


def test_momentum_equals_dampened_sgd_after_the_first_step() -> None:
    # Momentum(lr, beta) and SGD(lr, momentum=beta, dampening=beta) agree on the increments from step 2 on, up to
    # the first step: SGD's buffer starts at g_1, Momentum's at (1 - beta) g_1.
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal(3) for _ in range(10)]
    a, b = np.zeros(3), np.zeros(3)
    ours = descend.Momentum([a], lr=0.1, beta=0.9)
    torch_form = descend.SGD([b], lr=0.1, momentum=0.9, dampening=0.9)
    ours.step([grads[0] / 0.1])  # (1 - beta) * g_1 / 0.1 = g_1: the same first buffer
    torch_form.step([grads[0]])
    for g in grads[1:]:
        ours.step([g])
        torch_form.step([g])
    assert_close(a, b, TRANSCRIPTION_FLOAT64)


def test_keras_epsilon_hat_equals_torch_with_rescaled_epsilon() -> None:
    # Keras: lr sqrt(bc2)/bc1 m / (sqrt(v) + eps_hat) equals torch's lr m_hat / (sqrt(v_hat) + eps_hat/sqrt(bc2)):
    # a single step (t = 1) lets us pick the torch epsilon that matches.
    beta2, eps_hat, lr, g = 0.999, 1e-3, 0.1, 0.02
    k = np.array([0.0])
    descend.Adam([k], convention="keras", lr=lr, eps=eps_hat).step([np.array([g])])
    t = np.array([0.0])
    descend.Adam([t], lr=lr, eps=eps_hat / np.sqrt(1 - beta2)).step([np.array([g])])
    assert_close(k, t, TRANSCRIPTION_FLOAT64)
    assert abs(k[0]) < lr * 0.99  # the large effective epsilon really shrinks the step


def test_amsgrad_max_raw_and_corrected_differ_early_and_follow_their_definitions() -> None:
    grads = [np.array([5.0]), np.array([0.1]), np.array([0.1])]
    beta1, beta2, lr = 0.9, 0.999, 0.1
    raw, corrected = np.zeros(1), np.zeros(1)
    o_raw = descend.Adam([raw], lr=lr, amsgrad=True, eps=0.0)
    o_cor = descend.Adam([corrected], lr=lr, amsgrad=True, amsgrad_max="corrected", eps=0.0)
    m = v = vmax_raw = vmax_cor = 0.0
    x_raw = x_cor = 0.0
    for t, g in enumerate(grads, start=1):
        o_raw.step([g])
        o_cor.step([g])
        g = float(g[0])
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        vmax_raw = max(vmax_raw, v)
        vmax_cor = max(vmax_cor, v / (1 - beta2**t))
        m_hat = m / (1 - beta1**t)
        x_raw -= lr * m_hat / np.sqrt(vmax_raw / (1 - beta2**t))
        x_cor -= lr * m_hat / np.sqrt(vmax_cor)
    assert_close(raw, [x_raw], TRANSCRIPTION_FLOAT64)
    assert_close(corrected, [x_cor], TRANSCRIPTION_FLOAT64)
    assert abs(raw[0] - corrected[0]) > 1e-3


def test_decoupled_weight_decay_shrinks_the_weights_directly() -> None:
    # With a zero gradient Adam's update is 0, so AdamW only decays: x_t = (1 - lr wd)^t x_0; L2 Adam moves instead.
    x = np.array([2.0])
    opt = descend.AdamW([x], lr=0.1, weight_decay=0.5)
    for _ in range(5):
        opt.step([np.zeros(1)])
    assert_close(x, [2.0 * (1 - 0.05) ** 5], TRANSCRIPTION_FLOAT64)
