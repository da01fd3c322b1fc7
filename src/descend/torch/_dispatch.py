"""The one place where ``descend.torch`` updates tensors.

:func:`run_group` receives everything a fused kernel needs for one param group (the spec, its validated
hyperparameters, the float64 scalars of each parameter, the parameters, their gradients and their state slots) and
runs the update: the compiled kernel, one call per bucket of tensors that share dtypes and scalars, for contiguous CPU
tensors (``backend="auto"`` or ``"fused"``), and the spec's ``reference_update`` tensor by tensor for the rest (or for
all under ``"reference"``). The reference runs on torch ops with a correctly rounded square root
(:mod:`descend.torch._xp`), so on float32 and float64 the three backends give the same bits.

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

from descend import kernels
from descend.algorithms._spec import AlgorithmSpec, Hyperparams, cast_scalars
from descend.torch import _xp

__all__ = ["DTYPE_NAMES", "FLOAT_DTYPES", "compute_dtype", "fused_ready", "plain", "run_group", "scalar_caster"]

# The float dtypes descend updates, with the names the kernels know them by.
DTYPE_NAMES: dict[torch.dtype, str] = {
    torch.float32: "float32",
    torch.float64: "float64",
    torch.bfloat16: "bfloat16",
    torch.float16: "float16",
}
FLOAT_DTYPES: tuple[torch.dtype, ...] = tuple(DTYPE_NAMES)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the update is computed in for tensors stored as ``dtype``: float64 for float64, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _round_to_float32(value: float) -> float:
    return float(np.float32(value))


def scalar_caster(dtype: torch.dtype) -> Any:
    """The function that rounds a host scalar to the compute dtype of tensors stored as ``dtype``."""
    return float if compute_dtype(dtype) == torch.float64 else _round_to_float32


def fused_ready() -> tuple[bool, str]:
    """Whether :func:`run_group` can run the compiled kernel, and if not, why."""
    return kernels.available()


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
        if backend == "reference":
            buckets, rest = {}, list(range(len(params)))
        else:
            buckets, rest = _buckets(spec, scalars_per_param, params, grads, states)
        if backend == "fused" and rest:
            k = rest[0]
            raise ValueError(
                f"backend='fused' cannot update parameter {k} of {spec.title} (shape {tuple(params[k].shape)}, dtype "
                f"{params[k].dtype}, device {params[k].device}): the kernel takes contiguous CPU tensors of float32, "
                "float64, bfloat16 or float16 with their gradient and state alike; use backend='auto' to run the "
                "reference for such tensors"
            )
        _run_fused(spec, buckets, params, grads, states)
        for k in rest:
            p, g, state, s = params[k], grads[k], states[k], scalars_per_param[k]
            _reference_one(spec, p, g, state, cast_scalars(s, scalar_caster(p.dtype)))


def plain(t: torch.Tensor) -> bool:
    """A dense, contiguous CPU tensor whose memory holds its values as they read (no lazy negation or conjugation)."""
    return (
        type(t) in (torch.Tensor, torch.nn.Parameter)
        and t.device.type == "cpu"
        and t.layout == torch.strided
        and t.is_contiguous()
        and not t.is_neg()
        and not t.is_conj()
    )


def _buckets(
    spec: AlgorithmSpec,
    scalars_per_param: Sequence[NamedTuple],
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    states: Sequence[dict[str, torch.Tensor]],
) -> tuple[dict[tuple[Any, ...], list[int]], list[int]]:
    """Split the group: (dtype, state dtype, scalars) -> the tensors the kernel takes, and the indices it does not
    (all of them where the kernels are not built)."""
    if not kernels.available()[0]:
        return {}, list(range(len(params)))
    rest: list[int] = []
    buckets: dict[tuple[Any, ...], list[int]] = {}
    for k, (p, g, state, s) in enumerate(zip(params, grads, states, scalars_per_param)):
        dtype = str(p.dtype).removeprefix("torch.")
        state_dtypes = {str(v.dtype).removeprefix("torch.") for v in state.values()}
        state_dtype = state_dtypes.pop() if len(state_dtypes) == 1 else dtype
        fits = (
            not state_dtypes
            and kernels.supports(spec.name, dtype, state_dtype)
            and plain(p)
            and plain(g)
            and g.dtype == p.dtype
            and all(plain(v) and v.shape == p.shape for v in state.values())
        )
        if fits:
            buckets.setdefault((dtype, state_dtype, s), []).append(k)
        else:
            rest.append(k)
    return buckets, rest


def _run_fused(
    spec: AlgorithmSpec,
    buckets: dict[tuple[Any, ...], list[int]],
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    states: Sequence[dict[str, torch.Tensor]],
) -> None:
    """Run the compiled kernel once per bucket of :func:`_buckets`, with torch's thread count."""
    threads = torch.get_num_threads()
    for (dtype, state_dtype, s), members in buckets.items():
        kernels.step(
            spec.name,
            s,
            [params[k].data_ptr() for k in members],
            [grads[k].data_ptr() for k in members],
            {slot: [states[k][slot].data_ptr() for k in members] for slot in states[members[0]]},
            dtype=dtype,
            state_dtype=state_dtype,
            sizes=[params[k].numel() for k in members],
            num_threads=threads,
        )


def _reference_one(
    spec: AlgorithmSpec, p: torch.Tensor, g: torch.Tensor, state: dict[str, torch.Tensor], s: NamedTuple
) -> None:
    ctype = compute_dtype(p.dtype)
    work_p = p if p.dtype == ctype else p.to(ctype)
    work_g = g if g.dtype == ctype else g.to(ctype)
    work_state = {k: (v if v.dtype == ctype else v.to(ctype)) for k, v in state.items()}
    spec.reference_update(_xp, work_p, work_g, work_state, s)
    if work_p is not p:
        p.copy_(work_p)
    for k, v in state.items():
        if work_state[k] is not v:
            v.copy_(work_state[k])
