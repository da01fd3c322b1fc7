"""The one place where ``descend.torch`` updates tensors.

:func:`run_group` receives everything a fused kernel needs for one param group (the spec, its validated
hyperparameters, the float64 scalars of each parameter, the parameters, their gradients and their state slots) and
runs the update. Today it runs the spec's ``reference_update`` tensor by tensor; a compiled CPU kernel plugs in here,
behind the same arguments, and the fronts do not change.

The dtype policy lives here too:

- float32 and float64 tensors are updated in their own dtype, with every scalar rounded once to that dtype
  (:func:`descend.algorithms.cast_scalars`), so a kernel that receives the same rounded scalars can be bit-identical;
- bfloat16 and float16 tensors are loaded into float32 (parameter, gradient and every state slot), updated there with
  float32 scalars, and rounded back to their own dtype on store. The state keeps the parameter's dtype, as in torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from descend.algorithms._spec import AlgorithmSpec, Hyperparams, cast_scalars

__all__ = ["FLOAT_DTYPES", "compute_dtype", "fused_ready", "run_group", "scalar_caster"]

FLOAT_DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the update is computed in for tensors stored as ``dtype``: float64 for float64, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _round_to_float32(value: float) -> float:
    return float(np.float32(value))


def scalar_caster(dtype: torch.dtype) -> Any:
    """The function that rounds a host scalar to the compute dtype of tensors stored as ``dtype``."""
    return float if compute_dtype(dtype) == torch.float64 else _round_to_float32


def fused_ready() -> tuple[bool, str]:
    """Whether :func:`run_group` can run a compiled kernel, and if not, why.

    descend.torch does not call the compiled kernels yet: every group runs the reference, so ``backend="fused"`` is
    refused when the optimizer is built, before any step.
    """
    return False, "descend.torch does not call the compiled kernels yet; every update runs the reference"


def run_group(
    spec: AlgorithmSpec,
    hp: Hyperparams,
    scalars_per_param: Sequence[NamedTuple],
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    states: Sequence[dict[str, torch.Tensor]],
    backend: str,
) -> None:
    """Update ``params`` (and their state slots) in place, one param group at a time.

    Args:
        spec: the algorithm.
        hp: the group's validated hyperparameters.
        scalars_per_param: for each parameter, ``spec.scalars(hp, step, host)`` in float64 (parameters of a group may
            be at different steps); they are rounded here to each tensor's compute dtype.
        params: the parameters, updated in place.
        grads: one gradient per parameter, same shape, dtype and device.
        states: for each parameter, its array-valued state slots (``spec.state_slots(hp)``), updated in place.
        backend: the resolved backend of the group: ``"auto"`` or ``"reference"``; ``"fused"`` only where
            :func:`fused_ready` says so (the constructor refuses it otherwise, with the reason).

    Raises:
        ValueError: ``backend`` is ``"fused"`` and :func:`fused_ready` says no kernel can run it.
    """
    if backend == "fused":
        ok, why = fused_ready()
        if not ok:
            raise ValueError(f"backend='fused' was requested for {spec.title} but it cannot run: {why}")
    with torch.no_grad():
        for p, g, state, s in zip(params, grads, states, scalars_per_param):
            _reference_one(spec, p, g, state, cast_scalars(s, scalar_caster(p.dtype)))


def _reference_one(
    spec: AlgorithmSpec, p: torch.Tensor, g: torch.Tensor, state: dict[str, torch.Tensor], s: NamedTuple
) -> None:
    ctype = compute_dtype(p.dtype)
    work_p = p if p.dtype == ctype else p.to(ctype)
    work_g = g if g.dtype == ctype else g.to(ctype)
    work_state = {k: (v if v.dtype == ctype else v.to(ctype)) for k, v in state.items()}
    spec.reference_update(torch, work_p, work_g, work_state, s)
    if work_p is not p:
        p.copy_(work_p)
    for k, v in state.items():
        if work_state[k] is not v:
            v.copy_(work_state[k])
