"""Hypothesis strategies and runners shared by the fused-kernel tests: hyperparameters for every algorithm and flag,
and the NumPy reference the kernels must reproduce bit for bit."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from descend.algorithms import registry
from descend.algorithms._spec import cast_scalars
from descend.kernels._layout import KERNELS

# The algorithms with a fused kernel: the kernels restate reference_update (a closure-driven spec has none, and
# Muon's rule reads whole matrices and has none).
NAMES = tuple(name for name in registry.ELEMENTWISE if name in KERNELS)

_unit = st.floats(0.0, 0.999)
_lr = st.sampled_from([0.0, 1e-4, 1e-3, 0.01, 0.1, 0.5, 1.0])
_wd = st.sampled_from([0.0, 0.0, 1e-4, 0.01, 0.1])
_eps = st.sampled_from([0.0, 1e-10, 1e-8, 1e-6, 1e-3])
_betas = st.tuples(st.sampled_from([0.0, 0.5, 0.9, 0.95]), st.sampled_from([0.0, 0.5, 0.9, 0.99, 0.999]))

_HAND_WRITTEN: dict[str, Any] = {
    "sgd": st.fixed_dictionaries(
        {
            "lr": _lr,
            "momentum": st.sampled_from([0.0, 0.5, 0.9]),
            "dampening": st.sampled_from([0.0, 0.0, 0.1, 0.5]),
            "weight_decay": _wd,
            "nesterov": st.booleans(),
            "maximize": st.booleans(),
        }
    ),
    "momentum": st.fixed_dictionaries(
        {"lr": _lr, "beta": _unit, "nesterov": st.booleans(), "weight_decay": _wd, "maximize": st.booleans()}
    ),
    "rmsprop": st.fixed_dictionaries(
        {
            "lr": _lr,
            "alpha": st.sampled_from([0.0, 0.9, 0.99, 1.0]),
            "eps": _eps,
            "weight_decay": _wd,
            "momentum": st.sampled_from([0.0, 0.5, 0.9]),
            "centered": st.booleans(),
            "maximize": st.booleans(),
            "eps_root": _eps,
        }
    ),
    "adagrad": st.fixed_dictionaries(
        {
            "lr": _lr,
            "lr_decay": st.sampled_from([0.0, 0.01, 0.5]),
            "weight_decay": _wd,
            "initial_accumulator_value": st.sampled_from([0.0, 0.1]),
            "eps": _eps,
            "maximize": st.booleans(),
            "eps_root": _eps,
        }
    ),
    "adadelta": st.fixed_dictionaries(
        {
            "lr": st.sampled_from([0.1, 1.0, 5.0]),
            "rho": st.sampled_from([0.0, 0.5, 0.9, 1.0]),
            "eps": st.sampled_from([1e-8, 1e-6, 1e-3]),
            "weight_decay": _wd,
            "maximize": st.booleans(),
        }
    ),
    "adam": st.fixed_dictionaries(
        {
            "lr": _lr,
            "betas": _betas,
            "eps": _eps,
            "weight_decay": _wd,
            "amsgrad": st.booleans(),
            "maximize": st.booleans(),
            "decoupled_weight_decay": st.booleans(),
            "eps_root": _eps,
            "bias_correction": st.booleans(),
            "eps_hat": st.booleans(),
            "amsgrad_max": st.sampled_from(["raw", "corrected"]),
        }
    ),
    "adamw": st.fixed_dictionaries(
        {
            "lr": _lr,
            "betas": _betas,
            "eps": _eps,
            "weight_decay": _wd,
            "amsgrad": st.booleans(),
            "maximize": st.booleans(),
            "eps_root": _eps,
            "bias_correction": st.booleans(),
            "eps_hat": st.booleans(),
            "amsgrad_max": st.sampled_from(["raw", "corrected"]),
        }
    ),
    "adamax": st.fixed_dictionaries(
        {
            "lr": _lr,
            "betas": _betas,
            "eps": _eps,
            "weight_decay": _wd,
            "maximize": st.booleans(),
            "eps_in_max": st.booleans(),
        }
    ),
    "nadam": st.fixed_dictionaries(
        {
            "lr": _lr,
            "betas": _betas,
            "eps": _eps,
            "weight_decay": _wd,
            "momentum_decay": st.sampled_from([0.0, 4e-3]),
            "decoupled_weight_decay": st.booleans(),
            "maximize": st.booleans(),
        }
    ),
    "radam": st.fixed_dictionaries(
        {
            "lr": _lr,
            "betas": _betas,
            "eps": _eps,
            "weight_decay": _wd,
            "decoupled_weight_decay": st.booleans(),
            "maximize": st.booleans(),
        }
    ),
    "rprop": st.fixed_dictionaries(
        {
            "lr": _lr,
            "etas": st.tuples(st.sampled_from([0.1, 0.5, 0.9]), st.sampled_from([1.1, 1.2, 2.0])),
            "step_sizes": st.sampled_from([(0.0, 50.0), (1e-6, 50.0), (1e-3, 0.05), (0.01, 0.01)]),
            "maximize": st.booleans(),
        }
    ),
    # eps[0] None is the dtype's machine epsilon; 1e-30 squared is 0 in float32, where a zero gradient gives 0/0
    "adafactor": st.fixed_dictionaries(
        {
            "lr": _lr,
            "beta2_decay": st.sampled_from([-0.8, -0.5, -1.0, 0.0]),
            "eps": st.tuples(st.sampled_from([None, None, 1e-30, 1e-3]), st.sampled_from([0.0, 1e-3, 0.1])),
            "d": st.sampled_from([1.0, 1.5, 100.0]),
            "weight_decay": _wd,
            "maximize": st.booleans(),
        }
    ),
    # t0 below the number of steps turns the averaging on (mu < 1); a large one keeps ax a copy of the params.
    "asgd": st.fixed_dictionaries(
        {
            "lr": _lr,
            "lambd": st.sampled_from([0.0, 1e-4, 0.1, 1.0]),
            "alpha": st.sampled_from([0.0, 0.75, 1.0]),
            "t0": st.sampled_from([-3.0, 0.0, 1.0, 2.5, 1e6]),
            "weight_decay": _wd,
            "maximize": st.booleans(),
        }
    ),
    # beta1 above 0 (eval() divides by it); warmup, r and the weight power change c_t and the step size
    "adamw_schedulefree": st.fixed_dictionaries(
        {
            "lr": _lr,
            "betas": st.tuples(st.sampled_from([0.1, 0.5, 0.9, 0.95]), st.sampled_from([0.0, 0.5, 0.9, 0.999])),
            "eps": _eps,
            "weight_decay": _wd,
            "warmup_steps": st.sampled_from([0, 1, 3, 10]),
            "r": st.sampled_from([0.0, 0.5, 2.0]),
            "weight_lr_power": st.sampled_from([0.0, 1.0, 2.0]),
            "maximize": st.booleans(),
        }
    ),
}


def _generic(spec: Any) -> Any:
    """Hyperparameters drawn from the dataclass alone, for an algorithm without a hand-written strategy: booleans
    both ways, rates, decays and epsilons from the usual grids, a betas pair, other floats near their default, and a
    string among the choices its module lists (a tuple of strings holding the default)."""
    import dataclasses

    fields = {}
    for f in dataclasses.fields(spec.hyperparams):
        default = f.default
        if isinstance(default, bool):
            fields[f.name] = st.booleans()
        elif f.name == "lr":
            fields[f.name] = _lr
        elif f.name == "weight_decay":
            fields[f.name] = _wd
        elif f.name.startswith("eps"):
            fields[f.name] = _eps
        elif isinstance(default, tuple):
            fields[f.name] = _betas
        elif isinstance(default, float):
            fields[f.name] = st.sampled_from([0.0, default, default * 0.5, min(1.0, default * 2 + 0.01)])
        elif isinstance(default, str):
            choices = [v for v in vars(spec.module).values() if isinstance(v, tuple) and default in v]
            fields[f.name] = st.sampled_from(list(choices[0]) if choices else [default])
    return st.fixed_dictionaries(fields)


# Every algorithm with a kernel, hand-written where a tuned strategy exists.
STRATEGIES: dict[str, Any] = {
    name: _HAND_WRITTEN[name] if name in _HAND_WRITTEN else _generic(registry.get(name)) for name in NAMES
}


def make_hp(name: str, kwargs: dict[str, Any]) -> Any:
    """Validated hyperparameters; combinations the spec rejects are discarded from the search."""
    try:
        return registry.get(name).make(**kwargs)
    except ValueError:
        assume(False)


def data(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any, scale: float) -> np.ndarray:
    """Normal values times ``scale``, with some exact zeros and some repeated values."""
    x = np.asarray(rng.standard_normal(shape) * scale)
    if x.size:
        x.flat[rng.integers(0, x.size, size=max(1, x.size // 10))] = 0.0
    return np.asarray(x, dtype=dtype).copy()


def reference_steps(name: str, hp: Any, param: np.ndarray, grads: list[np.ndarray], cast: Any = None) -> dict:
    """Run ``reference_update`` over ``grads`` on ``param`` (in place); return the final state (slots and host)."""
    spec = registry.get(name)
    state = spec.init_state(np, param, hp)
    host = spec.host_slots(hp)
    for step, g in enumerate(grads, start=1):
        before, host = host, spec.advance_host(hp, step, host)
        seen = before if spec.host_for_scalars == "before" else host
        s = spec.step_scalars(hp, step, seen, step == 1, shape=param.shape, dtype=param.dtype.name)
        s = cast_scalars(s, cast or param.dtype.type)
        with np.errstate(all="ignore"):  # eps = 0 with zero gradients divides 0 by 0, in both paths alike
            spec.reference_update(np, param, g, state, s)
    return state


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
