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
}


def torch_cases() -> list[tuple[str, str, dict]]:
    """(algorithm, description, kwargs) for every case, flattened for pytest.mark.parametrize."""
    return [(name, desc, kwargs) for name, cases in TORCH_CASES.items() for desc, kwargs in cases]
