"""How each algorithm's host scalars and state slots map onto the compiled kernels' arguments.

For every registry name: the kernel that runs it, the flag bits (read from the scalars, in bit order), the values
(scalar field names, in the order the kernel reads them) and the state slots (in the kernel's slot order; a slot the
settings do not use is passed as ``None``). The C sources document the same order at the top of each loop file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple


class Layout(NamedTuple):
    kernel: str
    flags: Callable[[Any], tuple[bool, ...]]
    values: tuple[str, ...]
    slots: tuple[str, ...]


_ADAM = Layout(
    "adam",
    lambda s: (s.maximize, s.l2 != 0, s.decoupled, s.amsgrad),
    ("l2", "decay_factor", "one_minus_beta1", "beta2", "one_minus_beta2", "amsgrad_div", "root_add", "root_div",
     "eps", "neg_step_size"),
    ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
)

LAYOUTS: dict[str, Layout] = {
    "sgd": Layout(
        "sgd",
        lambda s: (s.maximize, s.weight_decay != 0, s.use_momentum, s.first_step, s.nesterov),
        ("weight_decay", "momentum", "grad_scale", "neg_lr"),
        ("momentum_buffer",),
    ),
    "momentum": Layout(
        "momentum",
        lambda s: (s.maximize, s.weight_decay != 0, s.nesterov),
        ("weight_decay", "beta", "one_minus_beta", "neg_lr"),
        ("exp_avg",),
    ),
    "rmsprop": Layout(
        "rmsprop",
        lambda s: (s.maximize, s.weight_decay != 0, s.centered, s.use_momentum),
        ("weight_decay", "alpha", "one_minus_alpha", "eps_root", "eps", "momentum", "neg_lr"),
        ("square_avg", "grad_avg", "momentum_buffer"),
    ),
    "adagrad": Layout(
        "adagrad",
        lambda s: (s.maximize, s.weight_decay != 0),
        ("weight_decay", "eps_root", "eps", "neg_clr"),
        ("sum",),
    ),
    "adadelta": Layout(
        "adadelta",
        lambda s: (s.maximize, s.weight_decay != 0),
        ("weight_decay", "rho", "one_minus_rho", "eps", "neg_lr"),
        ("square_avg", "acc_delta"),
    ),
    "adam": _ADAM,
    "adamw": _ADAM,
    "adamax": Layout(
        "adamax",
        lambda s: (s.maximize, s.weight_decay != 0),
        ("weight_decay", "one_minus_beta1", "beta2", "eps_in", "eps_out", "neg_clr"),
        ("exp_avg", "exp_inf"),
    ),
    "nadam": Layout(
        "nadam",
        lambda s: (s.maximize, s.l2 != 0, s.decoupled),
        ("l2", "decay_factor", "one_minus_beta1", "beta2", "one_minus_beta2", "bias_correction2", "eps",
         "grad_coef", "exp_avg_coef"),
        ("exp_avg", "exp_avg_sq"),
    ),
    "radam": Layout(
        "radam",
        lambda s: (s.maximize, s.l2 != 0, s.decoupled, s.rectify),
        ("l2", "decay_factor", "one_minus_beta1", "beta2", "one_minus_beta2", "bias_correction1", "lr",
         "bias_correction2_sqrt", "eps", "rect"),
        ("exp_avg", "exp_avg_sq"),
    ),
}

# (param dtype, state dtype) -> the kernels' storage combination, in the order of common.h's enum.
COMBOS: dict[tuple[str, str], int] = {
    ("float32", "float32"): 0,
    ("float64", "float64"): 1,
    ("bfloat16", "bfloat16"): 2,
    ("bfloat16", "float32"): 3,
    ("float16", "float16"): 4,
    ("float16", "float32"): 5,
}
