"""Checks a state_dict whole before ``load_state_dict`` changes anything.

torch.optim checks only the number of groups and their sizes; a state_dict from another optimizer class, or with
state of other shapes, loads and fails later (or silently trains with the wrong rule). descend refuses both up front,
with a ValueError that says what does not match.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from descend.algorithms import REGISTRY
from descend.algorithms._spec import AlgorithmSpec
from descend.torch._options import COMPAT_OPTIONS

__all__ = ["check_state_dict", "identity_keys"]

# Added to torch's constructors after their first release; torch fills them in when an older state_dict lacks them.
_LATE_ARGUMENTS = frozenset({"decoupled_weight_decay", "maximize"})


def identity_keys(
    spec: AlgorithmSpec, positional: tuple[str, ...], fixed: tuple[str, ...] = ()
) -> tuple[frozenset[str], frozenset[str]]:
    """The group keys a state_dict of ``spec`` must have, and those that show it belongs to another algorithm.

    Args:
        spec: the algorithm.
        positional: the names of the positional hyperparameters of the class's constructor.
        fixed: group keys the class sets itself (AdamW's ``decoupled_weight_decay``).
    """
    own = set(spec.hyperparams.names())
    required = frozenset(name for name in positional if name in own) - _LATE_ARGUMENTS
    others = {name for s in REGISTRY.values() for name in s.hyperparams.names()}
    foreign = frozenset(others - own - set(COMPAT_OPTIONS) - set(fixed))
    return required, foreign


def check_state_dict(
    spec: AlgorithmSpec | Sequence[AlgorithmSpec],
    title: str,
    groups: list[dict[str, Any]],
    state_dict: Any,
    keys: tuple[frozenset[str], frozenset[str]] | Sequence[tuple[frozenset[str], frozenset[str]]],
    *,
    filled: list[dict[str, Any]],
    fmt: Any = None,
) -> None:
    """Raise a ValueError if ``state_dict`` cannot be loaded into an optimizer with these ``groups``.

    Args:
        spec: the optimizer's algorithm, or one per param group where they differ.
        title: the optimizer's class name, for messages.
        groups: the optimizer's param groups.
        state_dict: the candidate.
        keys: :func:`identity_keys` for the class, or one per param group with ``spec``.
        filled: the candidate's param groups with the keys they lack filled in from the optimizer's groups; their
            hyperparameters are validated.
        fmt: the optimizer's low-bit state format (:class:`descend.StateFormat`), or None.
    """
    if not isinstance(state_dict, Mapping) or "state" not in state_dict or "param_groups" not in state_dict:
        raise ValueError(f"a state_dict must be a dict with 'state' and 'param_groups' keys, got {type(state_dict)}")
    saved = state_dict["param_groups"]
    if not isinstance(state_dict["state"], Mapping):
        raise ValueError(f"the state_dict's 'state' must be a dict, got {type(state_dict['state']).__name__}")
    if len(saved) != len(groups):
        raise ValueError(f"the state_dict has {len(saved)} param groups but this {title} has {len(groups)}")
    per_group = not isinstance(spec, AlgorithmSpec)
    specs = list(spec) if per_group else [spec] * len(groups)  # type: ignore[arg-type]
    all_keys = list(keys) if per_group else [keys] * len(groups)
    ids: dict[Any, tuple[int, torch.Tensor]] = {}
    for i, (mine, theirs) in enumerate(zip(groups, saved)):
        spec, (required, foreign) = specs[i], all_keys[i]
        n_saved, n_mine = len(theirs.get("params", ())), len(mine["params"])
        if n_saved != n_mine:
            raise ValueError(f"param group {i} of the state_dict has {n_saved} params, this {title}'s has {n_mine}")
        missing = sorted(required - set(theirs))
        strange = sorted(foreign & set(theirs))
        if missing or strange:
            what = f"lacks {', '.join(missing)}" if missing else f"has {', '.join(strange)}"
            raise ValueError(
                f"param group {i} of the state_dict {what}: it was saved by another optimizer class, not {title}"
            )
        hp = spec.hyperparams.from_group(filled[i])  # raises a clear error for a bad value
        for key, p in zip(theirs["params"], mine["params"]):
            ids[key] = (i, p)
        if fmt is None:
            _check_entries(spec, title, hp, theirs["params"], state_dict["state"], mine["params"])
        else:
            _check_format_entries(spec, title, hp, fmt, theirs["params"], state_dict["state"], mine["params"])
    unknown = [key for key in state_dict["state"] if key not in ids]
    if unknown:
        raise ValueError(f"the state_dict has state for params {unknown!r}, which none of its param groups lists")


def _check_entries(
    spec: AlgorithmSpec, title: str, hp: Any, keys: list[Any], saved_state: Mapping[Any, Any], params: list[Any]
) -> None:
    scalars = set(spec.host_slots(hp)) | ({"step"} if spec.has_step else set())
    for key, p in zip(keys, params):
        entry = saved_state.get(key)
        if not entry:
            continue
        if not isinstance(entry, Mapping):
            raise ValueError(f"state for param {key!r} must be a dict, got {type(entry).__name__}")
        shapes = spec.slots_for(hp, tuple(p.shape))
        slots = set(shapes)
        if set(entry) != slots | scalars:
            raise ValueError(
                f"state for param {key!r} has keys {sorted(entry)}; {title} with these settings keeps "
                f"{sorted(slots | scalars)}: it was saved by another optimizer class or with other settings"
            )
        for name in sorted(slots):
            value = entry[name]
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != shapes[name]:
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                need = "" if shapes[name] == tuple(p.shape) else f" and the state needs shape {shapes[name]}"
                raise ValueError(
                    f"state {name!r} for param {key!r} has shape {shape}, but the parameter has shape "
                    f"{tuple(p.shape)}{need}"
                )
            if not value.is_floating_point():
                raise ValueError(
                    f"state {name!r} for param {key!r} has dtype {value.dtype}; it must be a real floating-point tensor"
                )
        for name in sorted(scalars):
            value = entry[name]
            if isinstance(value, torch.Tensor) and value.numel() != 1:
                raise ValueError(f"state {name!r} for param {key!r} must be a single number, got shape {value.shape}")
            number = value.item() if isinstance(value, torch.Tensor) else value
            if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
                raise ValueError(f"state {name!r} for param {key!r} must be a finite real number, got {value!r}")


def _check_format_entries(
    spec: AlgorithmSpec, title: str, hp: Any, fmt: Any, keys: list[Any], saved_state: Mapping[Any, Any], params: list
) -> None:
    """The entries of a state_dict loaded into an optimizer with a low-bit state format: the state in that format
    (as this optimizer saves it) or float state of the parameter's shape (converted when loaded), and a step."""
    from descend import lowbit as lb
    from descend.engine import lowbit_step
    from descend.engine.torch_arrays import DTYPE_NAMES

    slots = set(spec.state_slots(hp))
    for key, p in zip(keys, params):
        entry = saved_state.get(key)
        if not entry:
            continue
        if not isinstance(entry, Mapping):
            raise ValueError(f"state for param {key!r} must be a dict, got {type(entry).__name__}")
        dtype = DTYPE_NAMES.get(p.dtype, "float32")
        expected = lowbit_step.expected_keys(spec, hp, fmt, dtype) if dtype != "float64" else {k: "" for k in slots}
        allowed = set(expected) | set(spec.host_slots(hp)) | {"step"}
        if not slots <= set(entry) <= allowed:
            raise ValueError(
                f"state for param {key!r} has keys {sorted(entry)}; {title} with these settings keeps "
                f"{sorted(allowed)}: it was saved by another optimizer class or with other settings"
            )
        for name in sorted(set(entry) & set(expected)):
            value = entry[name]
            scale = name.endswith(lb.SCALE_SUFFIX)
            want = (-(-p.numel() // lb.Q8_BLOCK),) if scale else tuple(p.shape)
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != want:
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise ValueError(f"state {name!r} for param {key!r} has shape {shape}; it must have shape {want}")
            if not (value.is_floating_point() or value.dtype == torch.uint8):
                raise ValueError(f"state {name!r} for param {key!r} has dtype {value.dtype}; it must be a real tensor")
        for name in sorted(set(entry) - set(expected)):
            value = entry[name]
            number = value.item() if isinstance(value, torch.Tensor) and value.numel() == 1 else value
            if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
                raise ValueError(f"state {name!r} for param {key!r} must be a finite real number, got {value!r}")
