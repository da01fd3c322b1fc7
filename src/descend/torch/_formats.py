"""Low-bit state formats on the torch front: the record of a format in the param groups, the check of a state_dict
saved with one, and the state taken back from it as saved.

An optimizer with a :class:`descend.StateFormat` writes the format into every param group under ``state_format`` (a
plain dict: ``dtype``, ``stochastic_rounding``, ``seed``, ``params``), so a state_dict carries everything the next step
needs: the state in its storage (bfloat16 tensors, or 8-bit codes with their float32 scales under ``<slot>_scale``),
the Kahan buffers, each parameter's ``step`` (the random stream's position) and the stream's seed. Loading it resumes
bit for bit. A state_dict saved with another seed gives this optimizer that seed; one saved with another format, or
without one, is converted into this optimizer's format (rounded to nearest), except that a low-bit state_dict does not
load into an optimizer of another format.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from descend import lowbit as lb
from descend.engine import lowbit_step
from descend.engine.torch_arrays import TorchKind

__all__ = ["GROUP_KEY", "check_saved_format", "record", "restore"]

GROUP_KEY = lb.GROUP_KEY
_KIND = TorchKind()
record = lb.format_record
check_saved_format = lb.saved_format


def restore(optimizer: Any, state_dict: Mapping[str, Any], fmt: lb.StateFormat) -> None:
    """After torch's loader (which casts floating state to each parameter's dtype), take each parameter's state
    again from the saved tensors: kept as saved where it is in the format, else converted into it."""
    spec = optimizer.spec
    saved_ids = [i for group in state_dict["param_groups"] for i in group["params"]]
    params = [(p, group) for group in optimizer.param_groups for p in group["params"]]
    for saved_id, (p, group) in zip(saved_ids, params):
        saved = state_dict["state"].get(saved_id)
        if not isinstance(saved, Mapping) or not lowbit_step.applies(_KIND, p):
            continue
        hp = spec.hyperparams.from_group(group)
        dtype = _KIND.dtype_name(p)
        expected = lowbit_step.expected_keys(spec, hp, fmt, dtype)
        state = optimizer.state[p]
        for key in [k for k in state if k in expected]:
            del state[key]
        if all(_fits(saved.get(k), storage) for k, storage in expected.items() if k != lb.KAHAN_KEY):
            for key in expected:
                if isinstance(saved.get(key), torch.Tensor):
                    state[key] = saved[key].detach().to(device=p.device, copy=True)
            continue
        converted = _convert(spec, hp, p, saved, fmt)
        state.update(converted)


def _fits(value: Any, storage: str) -> bool:
    return isinstance(value, torch.Tensor) and _KIND.storage(value) == storage


def _convert(spec: Any, hp: Any, p: torch.Tensor, saved: Mapping[str, Any], fmt: lb.StateFormat) -> dict[str, Any]:
    """The saved float state of ``p`` (any float dtype) in ``fmt``, rounded to nearest."""
    out: dict[str, Any] = {}
    layout_slots = lowbit_step.slot_order(spec, hp)
    for name, _, nonneg in layout_slots:
        value = saved.get(name)
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise ValueError(f"the saved state {name!r} cannot be converted to {fmt}: {value!r}")
        values = value.detach().to(device="cpu", dtype=torch.float32).reshape(-1).numpy()
        if fmt.dtype == "float32":
            out[name] = _KIND.new_raw(p, tuple(p.shape), "float32", values)
        elif fmt.dtype == "bfloat16":
            out[name] = _KIND.new_raw(p, tuple(p.shape), "bfloat16", lb.bf16_round(values))
        else:
            codes, scales = lb.q8_encode(values, nonneg)
            out[name] = _KIND.new_raw(p, tuple(p.shape), "uint8", codes)
            out[name + lb.SCALE_SUFFIX] = _KIND.new_raw(p, (scales.size,), "float32", np.asarray(scales))
    return out
