"""The kernel interface, stated once: for each algorithm, the loop body that runs it, its flag bits and its slots.

One line per registry name. The values a body reads are every float field of the algorithm's scalars NamedTuple, in
field order; the flag bits are the names listed (a bool field, or a float field standing for "is not zero"), bit 0
always ``maximize``; the state slots are in the body's order. The build generates ``interface.h`` from this table
(:func:`header`): a named index for every value, flag bit and slot, which the C bodies in ``bodies/`` use instead of
positions, and the names themselves, which the compiled module exports so that a test can hold the build to this
table. A body that reads a scalar the NamedTuple no longer has does not compile.
"""

from __future__ import annotations

import functools
import typing
from typing import Any, NamedTuple

from descend.algorithms._pairwise import LANES
from descend.algorithms.adadelta import AdadeltaScalars
from descend.algorithms.adafactor import AdafactorScalars
from descend.algorithms.adagrad import AdagradScalars
from descend.algorithms.adam import AdamScalars
from descend.algorithms.adamax import AdamaxScalars
from descend.algorithms.adamw_schedulefree import ScheduleFreeScalars
from descend.algorithms.asgd import ASGDScalars
from descend.algorithms.lion import LionScalars
from descend.algorithms.momentum import MomentumScalars
from descend.algorithms.nadam import NAdamScalars
from descend.algorithms.radam import RAdamScalars
from descend.algorithms.rmsprop import RMSpropScalars
from descend.algorithms.rprop import RpropScalars
from descend.algorithms.sgd import SGDScalars
from descend.algorithms.sparse_adam import SparseAdamScalars


@functools.cache
def _float_fields(scalars: type) -> tuple[str, ...]:
    hints = typing.get_type_hints(scalars)
    return tuple(f for f in scalars._fields if hints[f] is float)


class Kernel(NamedTuple):
    """One algorithm's kernel: ``body`` (the file ``bodies/<body>.h``), its scalars type, flag names in bit order,
    and its state slots in the body's order, each with the flag that must be on for it to be used (None: always).
    ``nonneg`` names the slots that are never negative (second moments, sums of squares, step sizes): the 8-bit state
    format stores them without a sign bit and with a wider range (see :mod:`descend.lowbit`); any other slot is
    stored signed.
    A ``shaped`` body updates whole tensors, not ranges of elements (see common.h): its rule reduces over them."""

    body: str
    scalars: type
    flag_names: tuple[str, ...]
    slots: tuple[tuple[str, str | None], ...]
    nonneg: frozenset[str] = frozenset()
    shaped: bool = False

    @property
    def values(self) -> tuple[str, ...]:
        """The scalars the body reads: every float field, in order."""
        return _float_fields(self.scalars)

    @property
    def slot_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.slots)

    def flags(self, s: Any) -> tuple[bool, ...]:
        """The flag bits for scalars ``s``, in bit order."""
        return tuple(bool(getattr(s, name)) for name in self.flag_names)

    def needed(self, s: Any) -> tuple[bool, ...]:
        """Per slot, whether the body reads it with these scalars."""
        return tuple(when is None or bool(getattr(s, when)) for _, when in self.slots)


_ADAM = Kernel(
    "adam",
    AdamScalars,
    ("maximize", "l2", "decoupled", "amsgrad"),
    (("exp_avg", None), ("exp_avg_sq", None), ("max_exp_avg_sq", "amsgrad")),
    frozenset({"exp_avg_sq", "max_exp_avg_sq"}),
)

KERNELS: dict[str, Kernel] = {
    "sgd": Kernel(
        "sgd",
        SGDScalars,
        ("maximize", "weight_decay", "use_momentum", "first_step", "nesterov"),
        (("momentum_buffer", "use_momentum"),),
    ),
    "momentum": Kernel("momentum", MomentumScalars, ("maximize", "weight_decay", "nesterov"), (("exp_avg", None),)),
    "rmsprop": Kernel(
        "rmsprop",
        RMSpropScalars,
        ("maximize", "weight_decay", "centered", "use_momentum"),
        (("square_avg", None), ("grad_avg", "centered"), ("momentum_buffer", "use_momentum")),
        frozenset({"square_avg"}),
    ),
    "adagrad": Kernel("adagrad", AdagradScalars, ("maximize", "weight_decay"), (("sum", None),), frozenset({"sum"})),
    "adadelta": Kernel(
        "adadelta",
        AdadeltaScalars,
        ("maximize", "weight_decay"),
        (("square_avg", None), ("acc_delta", None)),
        frozenset({"square_avg", "acc_delta"}),
    ),
    "adam": _ADAM,
    "adamw": _ADAM,
    "adamax": Kernel(
        "adamax",
        AdamaxScalars,
        ("maximize", "weight_decay"),
        (("exp_avg", None), ("exp_inf", None)),
        frozenset({"exp_inf"}),
    ),
    "nadam": Kernel(
        "nadam",
        NAdamScalars,
        ("maximize", "l2", "decoupled"),
        (("exp_avg", None), ("exp_avg_sq", None)),
        frozenset({"exp_avg_sq"}),
    ),
    "radam": Kernel(
        "radam",
        RAdamScalars,
        ("maximize", "l2", "decoupled", "rectify"),
        (("exp_avg", None), ("exp_avg_sq", None)),
        frozenset({"exp_avg_sq"}),
    ),
    "lion": Kernel("lion", LionScalars, ("maximize", "decay"), (("exp_avg", None),)),
    "rprop": Kernel(
        "rprop", RpropScalars, ("maximize",), (("prev", None), ("step_size", None)), frozenset({"step_size"})
    ),
    "asgd": Kernel("asgd", ASGDScalars, ("maximize", "weight_decay", "average"), (("ax", None),)),
    "adamw_schedulefree": Kernel(
        "adamw_schedulefree",
        ScheduleFreeScalars,
        ("maximize", "weight_decay", "first_step"),
        (("z", None), ("exp_avg_sq", None)),
        frozenset({"exp_avg_sq"}),
    ),
    # a tensor keeps either its row and column averages or its full one, as its shape says (bodies/adafactor.h)
    "adafactor": Kernel(
        "adafactor",
        AdafactorScalars,
        ("maximize", "decay", "high_weight"),
        (("row_var", None), ("col_var", None), ("variance", None)),
        shaped=True,
    ),
    "sparse_adam": Kernel(
        "sparse_adam",
        SparseAdamScalars,
        ("maximize",),
        (("exp_avg", None), ("exp_avg_sq", None)),
        frozenset({"exp_avg_sq"}),
    ),
}


class _RooflineScalars(NamedTuple):
    maximize: bool


# The memory roofline (x += grad for the param and each used slot): not an algorithm, measured by descend bench.
ROOFLINE = Kernel(
    "roofline",
    _RooflineScalars,
    ("maximize", "slot1", "slot2", "slot3"),
    (("slot1", None), ("slot2", None), ("slot3", None)),
)


def bodies() -> list[Kernel]:
    """Each loop body once, in the order the compiled module numbers them: the range bodies, then the shaped ones."""
    seen: dict[str, Kernel] = {}
    for kernel in [*KERNELS.values(), ROOFLINE]:
        seen.setdefault(kernel.body, kernel)
    return sorted(seen.values(), key=lambda k: k.shaped)


def header() -> str:
    """``interface.h``: the named indices of every body's values, flag bits and slots, the list of bodies, and their
    names as strings for the compiled module to export."""
    lines = [
        "/* Generated by the build from descend/kernels/_layout.py: do not edit. */",
        "#ifndef DESCEND_KERNELS_INTERFACE_H",
        "#define DESCEND_KERNELS_INTERFACE_H",
        "",
    ]
    for k in bodies():
        for kind, names in (("v", k.values), ("f", k.flag_names), ("s", k.slot_names)):
            lines += [f"#define {k.body}_{kind}_{name} {i}" for i, name in enumerate(names)]
        lines.append(f"#define {k.body}_n_values {len(k.values)}")
        joined = {kind: " ".join(names) for kind, names in (("v", k.values), ("f", k.flag_names), ("s", k.slot_names))}
        lines.append(f'#define {k.body}_interface "{joined["v"]}|{joined["f"]}|{joined["s"]}"')
        lines.append("")
    lines.append("#define DESCEND_BODIES(X) " + " ".join(f"X({k.body})" for k in bodies() if not k.shaped))
    lines.append("#define DESCEND_SHAPED(X) " + " ".join(f"X({k.body})" for k in bodies() if k.shaped))
    lines.append(f"#define DESCEND_PAIRWISE_LANES {LANES}  /* descend/algorithms/_pairwise.py */")
    lines += ["", "#endif", ""]
    return "\n".join(lines)


def interface() -> dict[str, str]:
    """Per body, ``"values|flags|slots"`` (space-separated names), as :func:`header` states it and the compiled
    module exports it."""
    return {k.body: f"{' '.join(k.values)}|{' '.join(k.flag_names)}|{' '.join(k.slot_names)}" for k in bodies()}


def source(body: str) -> str:
    """The C file that instantiates ``bodies/<body>.h`` for every instruction set and storage combination."""
    shaped = any(k.shaped for k in bodies() if k.body == body)
    once = f'#define SHAPED_ONCE\n#include "bodies/{body}.h"\n#undef SHAPED_ONCE\n' if shaped else ""
    return (
        "/* Generated by the build from descend/kernels/_layout.py: do not edit. */\n"
        '#include "common.h"\n'
        f"{once}"  # a shaped body's plain part (tiling, slot sizes), outside the instruction-set regions
        f'#define IMPL "bodies/{body}.h"\n'
        '#include "instances.h"\n'
        f"DEFINE_{'SHAPED_' if shaped else ''}TABLE({body});\n"
    )


# (param dtype, state dtype) -> the kernels' storage combination, in the order of common.h's enum.
COMBOS: dict[tuple[str, str], int] = {
    ("float32", "float32"): 0,
    ("float64", "float64"): 1,
    ("bfloat16", "bfloat16"): 2,
    ("bfloat16", "float32"): 3,
    ("float16", "float16"): 4,
    ("float16", "float32"): 5,
}
