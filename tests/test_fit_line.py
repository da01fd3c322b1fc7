"""The article's example: its Adam code, transcribed with the minus signs its text lost, against descend."""

from __future__ import annotations

import numpy as np
import pytest

import descend
from descend.lab import default_line_data, fit_line
from tests.shapes import matrices_only
from tests.tolerances import TRANSCRIPTION_FLOAT64, assert_close


def article_adam(inits, X, Y, learning_rate=0.01, num_of_iter=10, b1=0.9, b2=0.999, Epsilon=1e-6):
    """The article's ``adam`` function, line for line; ``1e6`` is 1e-6, ``a = g_a_norm`` is ``a -= g_a_norm``."""
    n = len(X)
    a, b = inits
    grad_a, grad_b = lambda x, y: -2 * x * (y - (a * x + b)), lambda x, y: -2 * (y - (a * x + b))
    v_a, v_b = 0, 0
    s_a, s_b = 0, 0
    a_list, b_list = [a], [b]
    t = 1
    for _ in range(num_of_iter):
        for i in range(n):
            x_i, y_i = X[i], Y[i]
            g_a, g_b = grad_a(x_i, y_i), grad_b(x_i, y_i)
            # computing the first moment
            v_a = b1 * v_a + (1 - b1) * g_a
            v_b = b1 * v_b + (1 - b1) * g_b
            # computing the second moment
            s_a = b2 * s_a + (1 - b2) * (g_a**2)
            s_b = b2 * s_b + (1 - b2) * (g_b**2)
            # normalisation
            v_a_norm, v_b_norm = v_a / (1 - np.power(b1, t)), v_b / (1 - np.power(b1, t))
            s_a_norm, s_b_norm = s_a / (1 - np.power(b2, t)), s_b / (1 - np.power(b2, t))
            t += 1
            # updating gradient
            g_a_norm = learning_rate * v_a_norm / (np.sqrt(s_a_norm) + Epsilon)
            g_b_norm = learning_rate * v_b_norm / (np.sqrt(s_b_norm) + Epsilon)
            # updating params
            a -= g_a_norm
            b -= g_b_norm
            a_list.append(a)
            b_list.append(b)
    return a_list, b_list


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reproduces_the_articles_adam_code(seed: int) -> None:
    X, Y = default_line_data(n=15, seed=seed)
    a_list, b_list = article_adam((0.5, -1.0), X, Y)
    result = fit_line(X, Y, optimizer="adam", inits=(0.5, -1.0), epochs=10)
    assert len(result.a_history) == len(a_list) == 1 + 10 * 15
    assert_close(result.a_history, a_list, TRANSCRIPTION_FLOAT64)
    assert_close(result.b_history, b_list, TRANSCRIPTION_FLOAT64)


def test_article_convention_is_the_articles_code_settings() -> None:
    hp = descend.REGISTRY["adam"].make("article")
    assert (hp.lr, hp.betas, hp.eps, hp.eps_root) == (0.01, (0.9, 0.999), 1e-6, 0.0)


def test_other_hyperparameters_change_the_result() -> None:
    X, Y = default_line_data()
    base = fit_line(X, Y)
    faster = fit_line(X, Y, lr=0.05)
    assert faster.loss < base.loss
    assert faster.hyperparams["lr"] == 0.05


@pytest.mark.parametrize("name", [n for n in descend.REGISTRY if not matrices_only(n)])
def test_every_optimizer_fits_a_line(name: str) -> None:
    X, Y = default_line_data(noise=0.0)
    lrs = {"adadelta": 1.0, "adagrad": 0.5, "sgd": 0.1, "momentum": 0.1}
    result = fit_line(X, Y, optimizer=name, epochs=200, lr=lrs.get(name, 0.05))
    assert result.loss < 0.1 * result.loss_history[0]
    assert len(result.loss_history) == len(result.a_history) == len(result.b_history) == 1 + 200 * 20


def test_an_optimizer_for_matrices_refuses_the_line_clearly() -> None:
    """A line has two numbers, not a matrix: Muon says so."""
    with pytest.raises(
        ValueError, match=r"Muon only supports 2D parameters whereas we found a parameter with size: \(\)"
    ):
        fit_line(*default_line_data(), optimizer="muon")


def test_full_batch_updates_once_per_pass_on_the_mean_gradient() -> None:
    X, Y = np.array([0.0, 1.0, 2.0]), np.array([1.0, 3.0, 5.0])
    result = fit_line(X, Y, optimizer="sgd", per_sample=False, epochs=1, lr=0.1)
    # the mean gradients at (0, 0): dL/da = mean(-2 x y) = -26/3, dL/db = mean(-2 y) = -6
    assert_close([result.a, result.b], [0.1 * 26 / 3, 0.1 * 6], TRANSCRIPTION_FLOAT64)
    assert len(result.a_history) == 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"X": [1.0, 2.0], "Y": [1.0]}, "same non-zero length"),
        ({"X": [], "Y": []}, "same non-zero length"),
        ({"X": [1.0, np.nan], "Y": [1.0, 2.0]}, "finite"),
        ({"epochs": -1}, "epochs"),
        ({"optimizer": "adamm"}, "Unknown algorithm 'adamm'"),
        ({"lr": -1.0}, "lr"),
        ({"convention": "pytorch"}, "Unknown convention 'pytorch'"),
    ],
)
def test_bad_input(kwargs: dict, match: str) -> None:
    args = {"X": [0.0, 1.0], "Y": [1.0, 2.0], **kwargs}
    with pytest.raises(ValueError, match=match):
        fit_line(args.pop("X"), args.pop("Y"), **args)
