"""Checking a NumPy optimizer's state_dict whole before anything changes."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from descend import lowbit as lb
from descend.algorithms._spec import AlgorithmSpec


def checked_state(
    spec: AlgorithmSpec | Sequence[AlgorithmSpec],
    param_groups: list[dict[str, Any]],
    sd: Mapping[str, Any],
    fmt: Any = None,
) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]], Any]:
    """Check a NumPy optimizer's state_dict whole against its groups and return (new group options, new state, the
    state format after loading: ``fmt`` with the seed the state_dict records, see :func:`descend.lowbit.saved_format`).

    With a low-bit format ``fmt``, the state of a float32 parameter is taken as saved where it is in the format, and
    float state of the parameter's shape (saved without a format) is converted into it, rounded to nearest.

    ``spec`` is the optimizer's algorithm, or one per param group where they differ.

    Raises:
        ValueError: anything that does not fit (another algorithm, other shapes, group sizes, types), named with
            its value; the caller changes nothing in that case.
    """
    if not isinstance(sd, Mapping) or "state" not in sd or "param_groups" not in sd:
        raise ValueError("a state_dict must be a dict with 'state' and 'param_groups' keys")
    groups, saved_state = sd["param_groups"], sd["state"]
    if not isinstance(groups, (list, tuple)) or not all(isinstance(g, Mapping) for g in groups):
        raise ValueError(f"the state_dict's 'param_groups' must be a list of dicts, got {groups!r}")
    if not isinstance(saved_state, Mapping):
        raise ValueError(f"the state_dict's 'state' must be a dict, got {type(saved_state).__name__}")
    if len(groups) != len(param_groups):
        raise ValueError(f"the state_dict has {len(groups)} param groups but the optimizer has {len(param_groups)}")
    params = [p for g in param_groups for p in g["params"]]
    specs = [spec] * len(groups) if isinstance(spec, AlgorithmSpec) else list(spec)
    new_groups = []
    for i, (mine, theirs) in enumerate(zip(param_groups, groups)):
        spec = specs[i]
        if len(theirs.get("params", ())) != len(mine["params"]):
            raise ValueError(
                f"param group {i} of the state_dict has {len(theirs.get('params', ()))} params, "
                f"the optimizer's has {len(mine['params'])}"
            )
        options = {k: copy.deepcopy(v) for k, v in theirs.items() if k != "params"}
        unknown = sorted(set(spec.hyperparams.names()) - set(options))
        if unknown:
            raise ValueError(
                f"param group {i} of the state_dict lacks {', '.join(unknown)}: it is not a {spec.title} state_dict"
            )
        spec.hyperparams.from_group(options)
        new_groups.append(options)
    fmt = lb.saved_format(specs[0].title, fmt, groups)
    offsets = [sum(len(g["params"]) for g in param_groups[:gi]) for gi in range(len(groups))]
    where = {key: (gi, offsets[gi] + j) for gi, g in enumerate(groups) for j, key in enumerate(g["params"])}
    new_state: dict[int, dict[str, Any]] = {}
    for key, entry in sd["state"].items():
        if key not in where:
            raise ValueError(f"the state_dict has state for param {key!r}, which none of its groups lists")
        if not isinstance(entry, Mapping):
            raise ValueError(f"state for param {key!r} must be a dict of its slots, got {entry!r}")
        gi, i = where[key]
        spec = specs[gi]
        hp = spec.hyperparams.from_group(new_groups[gi])
        p = params[i]
        if fmt is not None and p.dtype == np.float32:
            new_state[i] = _format_entry(spec, hp, fmt, key, entry, p)
            continue
        shapes = spec.slots_for(hp, p.shape)
        expected = set(shapes)
        allowed = expected | set(spec.host_slots(hp)) | ({"step"} if spec.has_step else set())
        if not expected <= set(entry) <= allowed:
            raise ValueError(
                f"state for param {key!r} has keys {sorted(entry)}; {spec.title} with these settings keeps "
                f"{sorted(allowed)} for a parameter of shape {p.shape}"
            )
        restored: dict[str, Any] = {}
        for k, v in entry.items():
            if k in expected:
                arr = np.asarray(v)
                if arr.dtype.kind not in "fiu":
                    raise ValueError(f"state {k!r} for param {key!r} has dtype {arr.dtype}; it must be real numbers")
                if arr.shape != shapes[k]:
                    need = "" if shapes[k] == p.shape else f" and the state needs shape {shapes[k]}"
                    raise ValueError(
                        f"state {k!r} for param {key!r} has shape {arr.shape}, the parameter has shape {p.shape}{need}"
                    )
                restored[k] = arr.astype(p.dtype, copy=True)
            else:
                value = np.asarray(v)
                number = float(value) if value.shape == () and value.dtype.kind in "fiu" else math.nan
                if k == "step" and not (number >= 0 and number.is_integer()):
                    raise ValueError(f"state 'step' for param {key!r} is {v!r}; it must be a non-negative whole number")
                if not math.isfinite(number):
                    raise ValueError(f"state {k!r} for param {key!r} is {v!r}; it must be a finite real number")
                restored[k] = int(number) if k == "step" else number
        new_state[i] = restored
    return new_groups, new_state, fmt


def _format_entry(spec: AlgorithmSpec, hp: Any, fmt: Any, key: Any, entry: Mapping[str, Any], p: np.ndarray) -> dict:
    """A float32 parameter's saved state under a low-bit format: as saved where it is in the format, else its float
    slots converted into it."""
    from descend.engine import lowbit_step

    expected = lowbit_step.expected_keys(spec, hp, fmt, "float32")
    allowed = set(expected) | set(spec.host_slots(hp)) | {"step"}
    slots = set(spec.state_slots(hp))
    if not slots <= set(entry) <= allowed:
        raise ValueError(
            f"state for param {key!r} has keys {sorted(entry)}; {spec.title} with state_dtype={fmt!r} keeps "
            f"{sorted(allowed)}"
        )
    restored: dict[str, Any] = {}
    as_saved = all(k in entry and np.asarray(entry[k]).dtype == _STORAGE[s] for k, s in expected.items())
    if as_saved:
        for k in expected:
            arr = np.asarray(entry[k])
            want = (-(-p.size // lb.Q8_BLOCK),) if k.endswith(lb.SCALE_SUFFIX) else p.shape
            if arr.shape != want:
                raise ValueError(f"state {k!r} for param {key!r} has shape {arr.shape}; it must have shape {want}")
            restored[k] = np.array(arr, copy=True)
    else:
        for name, _, nonneg in lowbit_step.slot_order(spec, hp):
            arr = np.asarray(entry[name])
            if arr.dtype.kind not in "fiu" or arr.shape != p.shape:
                raise ValueError(
                    f"state {name!r} for param {key!r} has dtype {arr.dtype} and shape {arr.shape}; it must be "
                    f"{fmt.dtype} state as this optimizer saves it, or real numbers of the parameter's shape {p.shape}"
                )
            values = arr.astype(np.float32).reshape(-1)
            if fmt.dtype == "float32":
                restored[name] = values.reshape(p.shape)
            elif fmt.dtype == "bfloat16":
                restored[name] = lb.bf16_round(values).reshape(p.shape)
            else:
                codes, scales = lb.q8_encode(values, nonneg)
                restored[name], restored[name + lb.SCALE_SUFFIX] = codes.reshape(p.shape), scales
    for k, v in entry.items():
        if k in expected or k in slots:
            continue
        value = np.asarray(v)
        number = float(value) if value.shape == () and value.dtype.kind in "fiu" else math.nan
        if k == "step" and not (number >= 0 and number.is_integer()):
            raise ValueError(f"state 'step' for param {key!r} is {v!r}; it must be a non-negative whole number")
        if not math.isfinite(number):
            raise ValueError(f"state {k!r} for param {key!r} is {v!r}; it must be a finite real number")
        restored[k] = int(number) if k == "step" else number
    return restored


_STORAGE = {"float32": np.dtype(np.float32), "bfloat16": np.dtype(np.uint16), "uint8": np.dtype(np.uint8)}
