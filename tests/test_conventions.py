"""Convention presets, describe(), and the registry's promises about every algorithm module."""

from __future__ import annotations

import numpy as np
import pytest

import descend
from descend.algorithms import CONVENTIONS, REGISTRY
from tests.shapes import shape_for
from tests.test_kernels_strategies import reference_steps
from tests.tolerances import TRANSCRIPTION_FLOAT64, assert_close


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_module_documents_its_rule_and_references(name: str) -> None:
    doc = REGISTRY[name].module.__doc__
    assert ".. math::" in doc and "References:" in doc


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("name", list(REGISTRY))
def test_describe_under_every_convention_names_the_values_in_force(name: str, convention: str) -> None:
    """Whatever changes the rule changes what describe() prints: each hyperparameter in turn is given another valid
    value, and wherever that changes the per-step scalars (so the update), the text must change too."""
    import dataclasses

    spec = REGISTRY[name]
    hp = spec.make(convention)
    text = spec.describe(hp)
    assert f"{hp.lr:g}" in text and ("theta_t" in text if spec.elementwise else "x_{k+1}" in text)
    changed = 0

    def run(h: object) -> bytes:
        shape = shape_for(name, (7,))
        param = np.linspace(-1.0, 1.0, 7).reshape(shape)
        if not spec.elementwise:  # a closure-driven rule: a few steps on a fixed smooth loss
            opt = descend.OPTIMIZERS[name]([param], **h.as_dict())
            for _ in range(3):
                opt.step(lambda: (float(np.sum(np.cosh(param - 0.3))), [np.sinh(param - 0.3)]))
            return param.tobytes()
        grads = [np.sin(np.arange(7.0) + k).reshape(shape) for k in range(3)]
        reference_steps(name, h, param, grads)
        return param.tobytes()

    base = run(hp)
    for field in dataclasses.fields(hp):
        value = getattr(hp, field.name)
        if isinstance(value, bool):
            others = [not value]
        elif isinstance(value, float):
            others = [value * 0.5 + 0.0123, value + 0.0456]
        elif isinstance(value, tuple):  # (a pair whose first may be None: Adafactor's eps)
            others = [(1e-6 if value[0] is None else value[0] * 0.5, value[1]), (value[0], value[1] * 0.99)]
        elif isinstance(value, str):
            others = ["raw", "corrected", None]
        elif isinstance(value, int):
            others = [1, value + 3]
        elif value is None:
            others = ["strong_wolfe"]
        else:
            continue
        for other in others:
            try:
                hp2 = dataclasses.replace(hp, **{field.name: other}).validate()
            except (ValueError, TypeError):
                continue
            if run(hp2) != base:
                changed += 1
                assert spec.describe(hp2) != text, f"{name}: {field.name}={other!r} changes the rule, not the text"
    assert changed >= 2


@pytest.mark.parametrize(
    ("name", "convention", "expected"),
    [
        ("adam", "keras", {"eps": 1e-7, "eps_hat": True}),
        ("adam", "optax", {"amsgrad_max": "corrected", "eps": 1e-8}),
        ("adam", "article", {"lr": 1e-2, "eps": 1e-6, "eps_root": 0.0}),
        ("adamw", "torch", {"weight_decay": 1e-2}),
        ("adamw", "optax", {"weight_decay": 1e-4}),
        ("adamw", "keras", {"weight_decay": 0.004}),
        ("rmsprop", "torch", {"alpha": 0.99, "eps": 1e-8, "eps_root": 0.0}),
        ("rmsprop", "keras", {"alpha": 0.9, "eps": 0.0, "eps_root": 1e-7}),
        ("rmsprop", "optax", {"alpha": 0.9, "eps": 0.0, "eps_root": 1e-8}),
        ("adagrad", "keras", {"initial_accumulator_value": 0.1, "eps_root": 1e-7}),
        ("adagrad", "torch", {"initial_accumulator_value": 0.0, "eps": 1e-10}),
        ("adamax", "keras", {"eps_in_max": False, "eps": 1e-7}),
        ("adadelta", "paper", {"rho": 0.95}),
    ],
)
def test_presets(name: str, convention: str, expected: dict) -> None:
    hp = REGISTRY[name].make(convention).as_dict()
    assert {k: hp[k] for k in expected} == expected


def test_explicit_arguments_override_the_preset() -> None:
    hp = REGISTRY["rmsprop"].make("keras", eps_root=0.0, eps=1e-8)
    assert (hp.alpha, hp.eps, hp.eps_root) == (0.9, 1e-8, 0.0)


def test_unknown_argument_is_named() -> None:
    with pytest.raises(TypeError, match="unexpected argument.*learning_rate"):
        REGISTRY["adam"].make(learning_rate=0.1)


def test_keras_adam_follows_keras_update_step() -> None:
    # Keras 3 Adam.update_step: alpha = lr sqrt(1 - b2^t) / (1 - b1^t); m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2);
    # var -= m alpha / (sqrt(v) + eps).
    rng = np.random.default_rng(3)
    grads = [rng.standard_normal(4) for _ in range(15)]
    x = np.zeros(4)
    opt = descend.Adam([x], convention="keras", lr=0.01)
    var, m, v = np.zeros(4), np.zeros(4), np.zeros(4)
    for t, g in enumerate(grads, start=1):
        opt.step([g])
        alpha = 0.01 * np.sqrt(1 - 0.999**t) / (1 - 0.9**t)
        m += (g - m) * 0.1
        v += (g * g - v) * (1 - 0.999)
        var -= m * alpha / (np.sqrt(v) + 1e-7)
    assert_close(x, var, TRANSCRIPTION_FLOAT64)


def test_keras_rmsprop_puts_epsilon_inside_the_root() -> None:
    rng = np.random.default_rng(4)
    grads = [rng.standard_normal(3) * 1e-4 for _ in range(10)]
    x = np.zeros(3)
    opt = descend.RMSprop([x], convention="keras")
    var, velocity = np.zeros(3), np.zeros(3)
    for g in grads:
        opt.step([g])
        velocity = 0.9 * velocity + 0.1 * g * g
        var -= 1e-3 * g / np.sqrt(velocity + 1e-7)
    assert_close(x, var, TRANSCRIPTION_FLOAT64)


def test_optax_adagrad_starts_the_sum_at_one_tenth() -> None:
    x = np.zeros(1)
    descend.Adagrad([x], convention="optax", lr=1.0).step([np.array([1.0])])
    assert_close(x, [-1.0 / np.sqrt(1.1 + 1e-7)], TRANSCRIPTION_FLOAT64)


def test_spec_describe_defaults_to_the_conventions_values() -> None:
    spec = REGISTRY["adam"]
    assert spec.describe() == spec.describe(spec.make("torch"))
    assert "1e-07" in spec.describe(convention="keras") and "epsilon hat" in spec.describe(convention="keras")
