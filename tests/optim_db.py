"""Hyperparameter sets per algorithm, shared by the parity tests. Each entry is (description, kwargs)."""

from __future__ import annotations

# Sets valid for both descend and torch.optim under the "torch" convention.
TORCH_CASES: dict[str, list[tuple[str, dict]]] = {
    "sgd": [
        ("defaults", {}),
        ("high lr", {"lr": 0.5}),
        ("weight decay", {"lr": 0.05, "weight_decay": 0.1}),
        ("maximize", {"lr": 0.05, "maximize": True}),
        ("momentum", {"lr": 0.05, "momentum": 0.9}),
        ("dampening", {"lr": 0.05, "momentum": 0.9, "dampening": 0.5}),
        ("nesterov", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ],
    "rmsprop": [
        ("defaults", {}),
        ("high lr", {"lr": 0.3}),
        ("weight decay", {"weight_decay": 0.1}),
        ("maximize", {"maximize": True}),
        ("centered", {"centered": True, "alpha": 0.9}),
        ("momentum", {"momentum": 0.9}),
        ("centered momentum", {"centered": True, "momentum": 0.5, "weight_decay": 0.01}),
    ],
    "adagrad": [
        ("defaults", {}),
        ("high lr", {"lr": 0.5}),
        ("lr decay", {"lr_decay": 0.01}),
        ("initial accumulator", {"initial_accumulator_value": 0.1, "weight_decay": 0.1}),
        ("maximize", {"maximize": True, "eps": 1e-6}),
    ],
    "adadelta": [
        ("defaults", {}),
        ("high lr", {"lr": 5.0}),
        ("rho", {"rho": 0.5, "eps": 1e-4}),
        ("weight decay", {"weight_decay": 0.1}),
        ("maximize", {"maximize": True}),
    ],
    "adam": [
        ("defaults", {}),
        ("high lr", {"lr": 0.5}),
        ("weight decay", {"lr": 0.01, "weight_decay": 0.1}),
        ("maximize", {"lr": 0.01, "maximize": True}),
        ("amsgrad", {"lr": 0.01, "amsgrad": True}),
        ("betas", {"lr": 0.01, "betas": (0.5, 0.9), "eps": 1e-6}),
        ("decoupled", {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True, "amsgrad": True}),
    ],
    "adamw": [
        ("defaults", {}),
        ("high lr", {"lr": 0.5}),
        ("weight decay", {"lr": 0.01, "weight_decay": 0.5}),
        ("amsgrad", {"lr": 0.01, "amsgrad": True, "maximize": True}),
    ],
    "adamax": [
        ("defaults", {}),
        ("high lr", {"lr": 0.5}),
        ("weight decay", {"weight_decay": 0.1}),
        ("maximize", {"maximize": True, "betas": (0.5, 0.9)}),
    ],
    "nadam": [
        ("defaults", {}),
        ("high lr", {"lr": 0.5}),
        ("weight decay", {"weight_decay": 0.1}),
        ("decoupled", {"weight_decay": 0.1, "decoupled_weight_decay": True}),
        ("momentum decay", {"momentum_decay": 0.1, "maximize": True}),
    ],
    "radam": [
        ("defaults", {}),
        ("high lr", {"lr": 0.5}),
        ("weight decay", {"weight_decay": 0.1}),
        ("decoupled", {"weight_decay": 0.1, "decoupled_weight_decay": True}),
        ("maximize", {"maximize": True, "betas": (0.8, 0.99)}),
    ],
    "rprop": [
        ("defaults", {}),
        ("high lr", {"lr": 0.5}),
        ("etas", {"lr": 0.05, "etas": (0.3, 1.5)}),
        ("tight step sizes", {"lr": 0.05, "step_sizes": (0.01, 0.08)}),
        ("maximize", {"maximize": True, "etas": (0.7, 1.1), "step_sizes": (0.0, 1.0)}),
    ],
    "asgd": [
        ("defaults", {}),
        ("high lr", {"lr": 0.2}),
        ("fast decay", {"lr": 0.1, "lambd": 0.5, "alpha": 1.0}),
        ("averaging", {"lr": 0.05, "t0": 3.0, "weight_decay": 0.1}),
        ("maximize", {"lr": 0.05, "lambd": 0.1, "alpha": 0.5, "t0": 10.0, "maximize": True}),
    ],
    "adafactor": [
        ("defaults", {}),
        ("high lr", {"lr": 0.5}),
        ("weight decay", {"lr": 0.05, "weight_decay": 0.1}),
        ("maximize", {"maximize": True, "beta2_decay": -1.0}),
        ("eps1 and clipping", {"eps": (1e-4, 1e-2), "d": 2.0, "beta2_decay": -0.5}),
    ],
}


def torch_cases() -> list[tuple[str, str, dict]]:
    """(algorithm, description, kwargs) for every case, flattened for pytest.mark.parametrize."""
    return [(name, desc, kwargs) for name, cases in TORCH_CASES.items() for desc, kwargs in cases]


# -- torch's own optimizer test database ------------------------------------------------------------------------------
#
# torch ships one OptimizerInfo per torch.optim class in torch.testing._internal.common_optimizers.optim_db: the
# hyperparameter sets its tests run (optim_inputs_func) and the bad inputs with the exception type and message regex
# torch raises (optim_error_inputs_func). The functions below hand them to the tests for every descend.torch class
# with a torch counterpart.

# Why an input of torch's database is not run against descend (first matching rule wins).
SKIP_REASONS: tuple[tuple[str, str], ...] = (
    (
        "capturable",
        "capturable=True is CUDA graph capture (torch lists these inputs for CUDA and XPU only); descend refuses it "
        "with a clear ValueError, see test_capturable_is_refused_clearly",
    ),
)


def load_optim_db() -> list:
    """torch's ``optim_db``. Its module imports ``expecttest`` (a test-only dependency of torch's own suite) for the
    base class of torch's TestCase, which nothing here uses; where it is not installed, a stand-in module with that
    one name lets the database import. Nothing else of torch's test machinery runs."""
    import sys
    import types
    import unittest

    try:
        import expecttest  # noqa: F401
    except ImportError:
        stand_in = types.ModuleType("expecttest")
        stand_in.TestCase = unittest.TestCase  # type: ignore[attr-defined]
        stand_in.ACCEPT = False  # type: ignore[attr-defined]
        sys.modules["expecttest"] = stand_in
    from torch.testing._internal.common_optimizers import optim_db

    return optim_db


def shared_infos() -> list[tuple[str, object]]:
    """(descend registry name, torch's OptimizerInfo) for every descend.torch class with a torch.optim counterpart."""
    import descend.torch as dt

    by_torch_name = {cls.spec.torch_name: name for name, cls in dt.OPTIMIZERS.items() if cls.spec.torch_name}
    return [(by_torch_name[info.name], info) for info in load_optim_db() if info.name in by_torch_name]


def skip_reason(kwargs: dict) -> str | None:
    """Why an input is not run against descend, or None (see :data:`SKIP_REASONS`)."""
    for key, reason in SKIP_REASONS:
        if kwargs.get(key):
            return reason
    return None


def db_inputs(device: str = "cpu") -> list[tuple[str, str, dict]]:
    """(algorithm, description, kwargs) for every input torch's database lists for ``device``, with the variants its
    tests add for the implementation flags each class supports (``foreach``, ``differentiable``, ``fused``)."""
    load_optim_db()
    from torch.testing._internal.common_optimizers import _get_optim_inputs_including_global_cliquey_kwargs

    out = []
    for name, info in shared_infos():
        for oi in _get_optim_inputs_including_global_cliquey_kwargs(device, None, info):
            out.append((name, oi.desc, oi.kwargs))
    return out


def db_error_inputs(device: str = "cpu") -> list[tuple[str, object]]:
    """(algorithm, ErrorOptimizerInput) for every error input torch's database lists for ``device``."""
    import torch

    return [(name, e) for name, info in shared_infos() for e in info.optim_error_inputs_func(device, torch.float32)]


def cuda_only_inputs() -> list[tuple[str, str, dict]]:
    """(algorithm, description, kwargs) for the inputs torch's database lists for CUDA but not for the CPU (no CUDA
    tensor is made: the kwargs hold CPU scalars and flags)."""
    out = []
    for name, info in shared_infos():
        on_cpu = {oi.desc for oi in info.optim_inputs_func("cpu")}
        out += [(name, oi.desc, oi.kwargs) for oi in info.optim_inputs_func("cuda") if oi.desc not in on_cpu]
    return out
