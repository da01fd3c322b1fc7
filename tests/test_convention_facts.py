"""Every (algorithm, convention) pair against the library's own facts.

FACTS says, for each pair, whether the library (or paper, or the article) has the algorithm in a form descend runs,
and the defaults it uses, with where that was read. A preset that drifts from the library, a new algorithm or
convention without a decision, or a convention that falls back to torch's rule without saying so fails here. The
transcription tests below run the libraries' update rules, copied from their code, against descend's presets.
"""

from __future__ import annotations

import itertools
from typing import Any, NamedTuple

import numpy as np
import pytest

import descend
from descend.algorithms import CONVENTIONS, REGISTRY
from tests.tolerances import TRANSCRIPTION_FLOAT64, assert_close


class Fact(NamedTuple):
    has: bool  # the library has this algorithm and descend runs its rule under the convention
    defaults: dict[str, Any]  # the library's defaults, in descend's names ({} where it has none to check)
    source: str


NONE = {}  # noqa: RUF012 - a library without the algorithm has no defaults to check
UN = "user-needs.md (b)"
KERAS = "keras-team/keras keras/src/optimizers/{}.py"
OPTAX = "google-deepmind/optax optax/_src/{}"
TORCH = "torch/optim/{}.py"

FACTS: dict[tuple[str, str], Fact] = {
    ("sgd", "torch"): Fact(True, {"lr": 1e-3, "momentum": 0.0, "dampening": 0.0}, TORCH.format("sgd")),
    ("sgd", "optax"): Fact(True, {"dampening": 0.0}, f"{UN} 3: optax trace is v = g + mu v; alias.sgd has no lr"),
    ("sgd", "keras"): Fact(True, {"lr": 1e-2}, f"{UN} 3; {KERAS.format('sgd')}: learning_rate=0.01"),
    ("sgd", "paper"): Fact(False, NONE, "Robbins & Monro (1951), Polyak (1964): no default values"),
    ("sgd", "article"): Fact(True, {"lr": 1e-2}, "the article's code: learning rate 0.01"),
    ("momentum", "torch"): Fact(False, NONE, f"{TORCH.format('sgd')}: momentum is a sum, not an average"),
    ("momentum", "optax"): Fact(False, NONE, f"{OPTAX.format('alias.py')}: sgd uses trace (a sum)"),
    ("momentum", "keras"): Fact(False, NONE, f"{UN} 3: Keras SGD is v = mu v - lr g"),
    ("momentum", "paper"): Fact(False, NONE, "Polyak (1964): the heavy ball is a sum"),
    ("momentum", "article"): Fact(True, {"lr": 1e-2, "beta": 0.9}, "the article: Vdw = beta*Vdw + (1-beta)*dw"),
    ("rmsprop", "torch"): Fact(True, {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "eps_root": 0.0}, f"{UN} 2"),
    ("rmsprop", "optax"): Fact(True, {"alpha": 0.9, "eps": 0.0, "eps_root": 1e-8}, f"{UN} 2: eps_in_sqrt=True"),
    ("rmsprop", "keras"): Fact(True, {"lr": 1e-3, "alpha": 0.9, "eps": 0.0, "eps_root": 1e-7}, f"{UN} 2"),
    ("rmsprop", "paper"): Fact(True, {"alpha": 0.9}, f"{UN} 2: Hinton's lecture 6e"),
    ("rmsprop", "article"): Fact(True, {"alpha": 0.95, "eps": 0.0, "eps_root": 1e-6}, "the article's equations"),
    ("adagrad", "torch"): Fact(True, {"lr": 1e-2, "initial_accumulator_value": 0.0, "eps": 1e-10}, f"{UN} 7"),
    ("adagrad", "optax"): Fact(
        True,
        {"initial_accumulator_value": 0.1, "eps": 0.0, "eps_root": 1e-7},
        f"{OPTAX.format('alias.py')}: adagrad(initial_accumulator_value=0.1, eps=1e-7), rsqrt(sum + eps)",
    ),
    ("adagrad", "keras"): Fact(
        True,
        {"lr": 1e-3, "initial_accumulator_value": 0.1, "eps": 0.0, "eps_root": 1e-7},
        f"{KERAS.format('adagrad')}: lr * g / sqrt(accumulator + epsilon), 0.1, 1e-7, 0.001",
    ),
    ("adagrad", "paper"): Fact(True, {"initial_accumulator_value": 0.0, "eps_root": 0.0}, "Duchi et al. (2011)"),
    ("adagrad", "article"): Fact(False, NONE, "the article covers GD, momentum, RMSprop and Adam only"),
    ("adadelta", "torch"): Fact(True, {"lr": 1.0, "rho": 0.9, "eps": 1e-6}, TORCH.format("adadelta")),
    ("adadelta", "optax"): Fact(
        True, {"lr": 1.0, "rho": 0.9, "eps": 1e-6}, f"{OPTAX.format('alias.py')}: adadelta(rho=0.9, eps=1e-6)"
    ),
    ("adadelta", "keras"): Fact(True, {"lr": 1e-3, "rho": 0.95, "eps": 1e-7}, KERAS.format("adadelta")),
    ("adadelta", "paper"): Fact(True, {"lr": 1.0, "rho": 0.95, "eps": 1e-6}, "Zeiler (2012), Algorithm 1"),
    ("adadelta", "article"): Fact(False, NONE, "the article covers GD, momentum, RMSprop and Adam only"),
    ("adam", "torch"): Fact(True, {"lr": 1e-3, "eps": 1e-8, "eps_hat": False, "amsgrad_max": "raw"}, f"{UN} 1, 5"),
    ("adam", "optax"): Fact(True, {"eps": 1e-8, "eps_root": 0.0, "amsgrad_max": "corrected"}, f"{UN} 1, 5"),
    ("adam", "keras"): Fact(True, {"lr": 1e-3, "eps": 1e-7, "eps_hat": True, "amsgrad_max": "raw"}, f"{UN} 1, 5"),
    ("adam", "paper"): Fact(True, {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8}, "Kingma & Ba, Algorithm 1"),
    ("adam", "article"): Fact(True, {"lr": 1e-2, "eps": 1e-6, "eps_root": 0.0}, "the article's code"),
    ("adamw", "torch"): Fact(True, {"weight_decay": 1e-2}, f"{UN} 6"),
    ("adamw", "optax"): Fact(True, {"weight_decay": 1e-4, "amsgrad_max": "corrected"}, f"{UN} 6"),
    ("adamw", "keras"): Fact(True, {"weight_decay": 0.004, "eps": 1e-7, "eps_hat": True}, f"{UN} 6"),
    ("adamw", "paper"): Fact(False, NONE, f"{UN} 6: the paper multiplies the decay by the schedule only"),
    ("adamw", "article"): Fact(True, {"lr": 1e-2, "eps": 1e-6}, "the article's Adam values (it has no AdamW)"),
    ("adamax", "torch"): Fact(True, {"lr": 2e-3, "eps": 1e-8, "eps_in_max": True}, TORCH.format("adamax")),
    ("adamax", "optax"): Fact(
        True,
        {"betas": (0.9, 0.999), "eps": 1e-8, "eps_in_max": True},
        f"{OPTAX.format('transform.py')}: update_infinity_moment is max(|g| + eps, decay * t)",
    ),
    ("adamax", "keras"): Fact(
        True,
        {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-7, "eps_in_max": False},
        f"{KERAS.format('adamax')}: u = max(b2 u, |g|); lr m / ((1 - b1^t)(u + eps))",
    ),
    ("adamax", "paper"): Fact(True, {"lr": 2e-3, "betas": (0.9, 0.999)}, "Kingma & Ba, Algorithm 2"),
    ("adamax", "article"): Fact(False, NONE, "the article covers GD, momentum, RMSprop and Adam only"),
    ("nadam", "torch"): Fact(
        True, {"lr": 2e-3, "eps": 1e-8, "momentum_decay": 4e-3, "momentum_schedule": True}, TORCH.format("nadam")
    ),
    ("nadam", "optax"): Fact(
        True,
        {"betas": (0.9, 0.999), "eps": 1e-8, "momentum_schedule": False},
        f"{OPTAX.format('alias.py')}: nadam = adam(nesterov=True), no schedule",
    ),
    ("nadam", "keras"): Fact(
        True,
        {"lr": 1e-3, "eps": 1e-7, "momentum_decay": 1.0, "momentum_schedule": True},
        f"{KERAS.format('nadam')}: u_t = beta_1 (1 - 0.5 * 0.96^t)",
    ),
    ("nadam", "paper"): Fact(True, {"momentum_decay": 4e-3, "momentum_schedule": True}, "Dozat (2016): 0.96^(t/250)"),
    ("nadam", "article"): Fact(False, NONE, "the article covers GD, momentum, RMSprop and Adam only"),
    ("radam", "torch"): Fact(True, {"lr": 1e-3, "eps": 1e-8, "eps_hat": True}, TORCH.format("radam")),
    ("radam", "optax"): Fact(
        True,
        {"betas": (0.9, 0.999), "eps": 1e-8, "eps_hat": False},
        f"{OPTAX.format('transform.py')}: scale_by_radam, r * m_hat / (sqrt(v_hat + eps_root) + eps)",
    ),
    ("radam", "keras"): Fact(False, NONE, "keras-team/keras keras/src/optimizers/: no RAdam"),
    ("radam", "paper"): Fact(True, {"lr": 1e-3, "eps": 1e-8, "eps_hat": True}, "Liu et al. (2020), their code"),
    ("radam", "article"): Fact(False, NONE, "the article covers GD, momentum, RMSprop and Adam only"),
    ("lion", "torch"): Fact(False, NONE, "torch.optim has no Lion"),
    ("lion", "optax"): Fact(True, {"betas": (0.9, 0.99), "weight_decay": 1e-3}, f"{OPTAX.format('alias.py')}: lion"),
    ("lion", "keras"): Fact(True, {"lr": 1e-3, "betas": (0.9, 0.99)}, KERAS.format("lion")),
    ("lion", "paper"): Fact(True, {"lr": 1e-4, "betas": (0.9, 0.99), "weight_decay": 0.0}, "Chen et al. (2023)"),
    ("lion", "article"): Fact(False, NONE, "the article covers GD, momentum, RMSprop and Adam only"),
    ("sparse_adam", "torch"): Fact(
        True, {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8}, "torch/optim/sparse_adam.py"
    ),
    ("sparse_adam", "optax"): Fact(False, NONE, "google-deepmind/optax: no sparse or lazy Adam (dense updates only)"),
    ("sparse_adam", "keras"): Fact(False, NONE, "keras-team/keras keras/src/optimizers/: no sparse or lazy Adam"),
    ("sparse_adam", "paper"): Fact(False, NONE, "Kingma & Ba (2015) define Adam on dense gradients only"),
    ("sparse_adam", "article"): Fact(False, NONE, "the article covers GD, momentum, RMSprop and Adam only"),
    ("rprop", "torch"): Fact(True, {"lr": 1e-2, "etas": (0.5, 1.2), "step_sizes": (1e-6, 50.0)}, TORCH.format("rprop")),
    ("rprop", "optax"): Fact(
        False, NONE, f"{OPTAX.format('transform.py')}: scale_by_rprop returns state.prev_updates, one step late"
    ),
    ("rprop", "keras"): Fact(False, NONE, "keras-team/keras keras/src/optimizers/: no Rprop"),
    ("rprop", "paper"): Fact(False, NONE, "Riedmiller & Braun (1993): weight backtracking, not run here"),
    ("rprop", "article"): Fact(False, NONE, "the article covers GD, momentum, RMSprop and Adam only"),
    ("asgd", "torch"): Fact(True, {"lr": 1e-2, "lambd": 1e-4, "alpha": 0.75, "t0": 1e6}, TORCH.format("asgd")),
    ("asgd", "optax"): Fact(False, NONE, "optax has no ASGD"),
    ("asgd", "keras"): Fact(False, NONE, "keras-team/keras keras/src/optimizers/: no ASGD"),
    ("asgd", "paper"): Fact(False, NONE, "Polyak & Juditsky (1992): no default values"),
    ("asgd", "article"): Fact(False, NONE, "the article covers GD, momentum, RMSprop and Adam only"),
    ("adamw_schedulefree", "torch"): Fact(False, NONE, "torch.optim has no Schedule-Free optimizer"),
    ("adamw_schedulefree", "optax"): Fact(
        True,
        {"lr": 0.0025, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "weight_lr_power": 2.0, "r": 0.0},
        "google-deepmind/optax optax/contrib/_schedule_free.py: schedule_free_adamw(0.0025, None, 0.9, 0.999, 1e-8, "
        "0.0, 2.0); its weights have no t^r factor",
    ),
    ("adamw_schedulefree", "keras"): Fact(False, NONE, "keras-team/keras keras/src/optimizers/: no Schedule-Free"),
    ("adamw_schedulefree", "paper"): Fact(
        True,
        {"lr": 0.0025, "betas": (0.9, 0.999), "eps": 1e-8, "warmup_steps": 0, "r": 0.0, "weight_lr_power": 2.0},
        "Defazio et al. (2024); facebookresearch/schedule_free schedulefree/adamw_schedulefree.py (the reference code)",
    ),
    ("adamw_schedulefree", "article"): Fact(False, NONE, "the article covers GD, momentum, RMSprop and Adam only"),
    ("lbfgs", "torch"): Fact(
        True,
        {
            "lr": 1,
            "max_iter": 20,
            "max_eval": 25,
            "tolerance_grad": 1e-7,
            "tolerance_change": 1e-9,
            "history_size": 100,
            "line_search_fn": None,
        },
        f"{TORCH.format('lbfgs')}: max_eval defaults to max_iter * 5 // 4",
    ),
    ("lbfgs", "optax"): Fact(
        False, NONE, f"{OPTAX.format('alias.py')}: lbfgs(memory_size=10) with scale_by_zoom_linesearch by default"
    ),
    ("lbfgs", "keras"): Fact(False, NONE, "keras-team/keras keras/src/optimizers/: no L-BFGS"),
    ("lbfgs", "paper"): Fact(
        True, {"line_search_fn": "strong_wolfe"}, "Liu & Nocedal (1989): a Wolfe line search, c1 = 1e-4, c2 = 0.9"
    ),
    ("lbfgs", "article"): Fact(False, NONE, "the article covers GD, momentum, RMSprop and Adam only"),
    ("muon", "torch"): Fact(
        True,
        {"lr": 1e-3, "weight_decay": 0.1, "momentum": 0.95, "nesterov": True, "eps": 1e-7, "ns_steps": 5},
        f"{TORCH.format('_muon')}: Muon(lr=1e-3, weight_decay=0.1, momentum=0.95, nesterov=True, eps=1e-7)",
    ),
    ("muon", "optax"): Fact(
        False, NONE, "google-deepmind/optax optax/contrib/_muon.py: bias-corrected momentum, sqrt(max(1, B/A))"
    ),
    ("muon", "keras"): Fact(False, NONE, f"{KERAS.format('muon')}: m = momentum * m + g, ns_steps=6"),
    ("muon", "paper"): Fact(
        True,
        {"lr": 0.02, "weight_decay": 0.0, "momentum": 0.95, "nesterov": True, "ns_steps": 5},
        "KellerJordan/Muon muon.py: Muon(lr=0.02, weight_decay=0, momentum=0.95), nesterov=True, 5 steps",
    ),
    ("muon", "article"): Fact(False, NONE, "the article covers GD, momentum, RMSprop and Adam only"),
    ("adafactor", "torch"): Fact(
        True, {"lr": 1e-2, "beta2_decay": -0.8, "eps": (None, 1e-3), "d": 1.0}, TORCH.format("_adafactor")
    ),
    ("adafactor", "optax"): Fact(
        False, NONE, f"{OPTAX.format('factorized.py')}: epsilon 1e-30 added to g^2, min_dim_size_to_factor=128"
    ),
    ("adafactor", "keras"): Fact(False, NONE, f"{KERAS.format('adafactor')}: epsilon_1 added to the squared gradient"),
    ("adafactor", "paper"): Fact(False, NONE, "Shazeer & Stern (2018), Algorithm 4: epsilon_1 added to g^2"),
    ("adafactor", "article"): Fact(False, NONE, "the article covers GD, momentum, RMSprop and Adam only"),
}

PAIRS = list(itertools.product(REGISTRY, CONVENTIONS))


def test_every_algorithm_and_convention_has_a_fact() -> None:
    assert set(FACTS) == set(PAIRS)


@pytest.mark.parametrize(("name", "convention"), PAIRS, ids=[f"{n}-{c}" for n, c in PAIRS])
def test_the_convention_follows_the_library_or_says_it_does_not(name: str, convention: str) -> None:
    spec, fact = REGISTRY[name], FACTS[name, convention]
    assert spec.follows(convention) == fact.has, fact.source
    hp = spec.make(convention).as_dict()
    assert {k: hp[k] for k in fact.defaults} == fact.defaults, fact.source
    text = spec.describe(convention=convention)
    note = spec.note(convention)
    if fact.has:
        assert "Not available" not in text
    else:
        assert note is not None and " runs" in note, f"{name} under {convention} falls back without saying so"
        assert text.startswith(f"Not available under {convention}: {note}.")
    if note is not None:
        assert note in text
    assert text.endswith(spec.describe(spec.make(convention)))


def test_a_spec_without_a_decision_for_a_convention_is_refused() -> None:
    import dataclasses

    spec = REGISTRY["asgd"]
    with pytest.raises(ValueError, match="neither a preset nor a note.*keras"):
        dataclasses.replace(spec, notes={k: v for k, v in spec.notes.items() if k != "keras"})


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["nadam", "--convention", "keras"], ["0.96^(t * 1)", "+ 1e-07", "lr=0.001"]),
        (["nadam", "--convention", "optax"], ["no momentum-decay schedule", "momentum_schedule=False"]),
        (["asgd", "--convention", "optax"], ["Not available under optax: optax has no ASGD"]),
        (["momentum", "--convention", "torch"], ["Not available under torch", "SGD(lr=lr*(1-beta), momentum=beta)"]),
    ],
)
def test_the_cli_says_what_a_convention_means(args: list[str], expected: list[str]) -> None:
    pytest.importorskip("typer")
    from typer.testing import CliRunner

    from descend.cli import app

    result = CliRunner().invoke(app, ["describe", *args])
    assert result.exit_code == 0, result.output
    for text in expected:
        assert text in result.output, (text, result.output)


# -- the libraries' rules, transcribed from their code, against the presets ------------------------------------------


def _grads(seed: int, n: int = 25, size: int = 4) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(size) for _ in range(n)]


def test_optax_nadam_has_no_momentum_schedule() -> None:
    # optax scale_by_adam(nesterov=True): mu_hat = b1 m / (1 - b1^(t+1)) + (1 - b1) g / (1 - b1^t);
    # update = -lr mu_hat / (sqrt(nu / (1 - b2^t)) + eps).
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    x = np.zeros(4)
    opt = descend.NAdam([x], convention="optax", lr=lr)
    var, m, v = np.zeros(4), np.zeros(4), np.zeros(4)
    for t, g in enumerate(_grads(5), start=1):
        opt.step([g])
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        mu_hat = b1 * m / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t)
        var -= lr * mu_hat / (np.sqrt(v / (1 - b2**t)) + eps)
    assert_close(x, var, TRANSCRIPTION_FLOAT64)
    y = np.zeros(4)  # momentum_decay=0 is not optax's rule: it gives mu_t = beta1 / 2
    zero_decay = descend.NAdam([y], lr=lr, momentum_decay=0.0)
    for g in _grads(5):
        zero_decay.step([g])
    assert np.abs(y - var).max() > 1e-3


def test_keras_nadam_follows_keras_update_step() -> None:
    # Keras 3 Nadam: u_t = b1 (1 - 0.5 * 0.96^t); u_product *= u_t before the step;
    # m_hat = u_{t+1} m / (1 - u_product u_{t+1}) + (1 - u_t) g / (1 - u_product); var -= m_hat lr / (sqrt(v_hat) + eps)
    lr, b1, b2, eps = 0.001, 0.9, 0.999, 1e-7
    x = np.zeros(4)
    opt = descend.NAdam([x], convention="keras")
    var, m, v, u_product = np.zeros(4), np.zeros(4), np.zeros(4), 1.0
    for t, g in enumerate(_grads(6), start=1):
        opt.step([g])
        u_t, u_next = b1 * (1 - 0.5 * 0.96**t), b1 * (1 - 0.5 * 0.96 ** (t + 1))
        u_product *= u_t
        m += (g - m) * (1 - b1)
        v += (g * g - v) * (1 - b2)
        m_hat = u_next * m / (1 - u_product * u_next) + (1 - u_t) * g / (1 - u_product)
        var -= m_hat * lr / (np.sqrt(v / (1 - b2**t)) + eps)
    assert_close(x, var, TRANSCRIPTION_FLOAT64)


@pytest.mark.parametrize("eps", [1e-8, 1e-2])
def test_optax_radam_adds_epsilon_to_the_corrected_root(eps: float) -> None:
    # optax scale_by_radam: ro = ro_inf - 2 t b2^t / (1 - b2^t); where ro >= 5 the update is
    # r * m_hat / (sqrt(v_hat) + eps), else m_hat; then scaled by -lr. A large eps makes the placement visible.
    lr, b1, b2 = 0.01, 0.9, 0.999
    ro_inf = 2 / (1 - b2) - 1
    x, y = np.zeros(4), np.zeros(4)
    opt = descend.RAdam([x], convention="optax", lr=lr, eps=eps)
    torch_form = descend.RAdam([y], lr=lr, eps=eps)
    var, m, v = np.zeros(4), np.zeros(4), np.zeros(4)
    for t, g in enumerate(_grads(7), start=1):
        opt.step([g])
        torch_form.step([g])
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        ro = ro_inf - 2 * t * b2**t / (1 - b2**t)
        if ro >= 5:
            r = np.sqrt((ro - 4) * (ro - 2) * ro_inf / ((ro_inf - 4) * (ro_inf - 2) * ro))
            var -= lr * r * m_hat / (np.sqrt(v_hat) + eps)
        else:
            var -= lr * m_hat
    assert_close(x, var, TRANSCRIPTION_FLOAT64)
    if eps > 1e-3:
        assert np.abs(y - var).max() > 1e-4  # torch's placement is another rule


def test_keras_adamax_adds_epsilon_outside_the_maximum() -> None:
    # Keras 3 Adamax: u = max(b2 u, |g|); var -= lr m / ((1 - b1^t) (u + eps)).
    lr, b1, b2, eps = 0.001, 0.9, 0.999, 1e-7
    x = np.zeros(4)
    opt = descend.Adamax([x], convention="keras")
    var, m, u = np.zeros(4), np.zeros(4), np.zeros(4)
    for t, g in enumerate(_grads(8), start=1):
        opt.step([g])
        m += (g - m) * (1 - b1)
        u = np.maximum(b2 * u, np.abs(g))
        var -= lr * m / ((1 - b1**t) * (u + eps))
    assert_close(x, var, TRANSCRIPTION_FLOAT64)


def test_keras_adagrad_starts_at_one_tenth_with_epsilon_inside() -> None:
    # Keras 3 Adagrad: accumulator = 0.1 + sum g^2; var -= lr g / sqrt(accumulator + eps).
    x = np.zeros(4)
    opt = descend.Adagrad([x], convention="keras")
    var, acc = np.zeros(4), np.full(4, 0.1)
    for g in _grads(9):
        opt.step([g])
        acc += g * g
        var -= 0.001 * g / np.sqrt(acc + 1e-7)
    assert_close(x, var, TRANSCRIPTION_FLOAT64)


def test_momentum_note_names_the_torch_optimizer_with_the_same_steps() -> None:
    # The torch note says SGD(lr=lr*(1-beta), momentum=beta) takes the same steps: V_t = (1 - beta) b_t.
    a, b = np.zeros(4), np.zeros(4)
    ours = descend.Momentum([a], lr=0.1, beta=0.9)
    torch_form = descend.SGD([b], lr=0.1 * (1 - 0.9), momentum=0.9)
    for g in _grads(10):
        ours.step([g])
        torch_form.step([g])
    assert_close(a, b, TRANSCRIPTION_FLOAT64)
