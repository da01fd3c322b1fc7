"""The steady-state step of a param group through the compiled kernel, with little Python work per tensor.

After the first step, a group whose tensors are plain contiguous CPU float32 or float64 tensors of one dtype, with
their state in place, needs per tensor only its pointers and a check of its gradient. The step counts advance in one
``torch._foreach_add_`` and the scalars are computed once per distinct step count. Anything else (the first step,
16-bit dtypes, host scalars such as NAdam's ``mu_product``, odd layouts) takes the general path in
:func:`descend.torch._dispatch.run_group`, which gives the same bits.
"""

from __future__ import annotations

from operator import is_
from typing import Any

import torch

from descend import kernels
from descend.algorithms._spec import AlgorithmSpec, Hyperparams

_TYPES = (torch.Tensor, torch.nn.Parameter)
_DTYPES = {torch.float32: "float32", torch.float64: "float64"}


def _plain(t: Any, dtype: torch.dtype) -> bool:
    return (
        type(t) in _TYPES
        and t.dtype is dtype
        and t.is_cpu
        and t.layout is torch.strided
        and t.is_contiguous()
        and not t.is_neg()
    )


def fast_group(
    state: Any, cache: dict[int, tuple[Any, ...]], spec: AlgorithmSpec, hp: Hyperparams, live: list, backend: str
) -> bool:
    """Update the group through the kernel if it is in its steady state; return False, changing nothing, if not.

    Args:
        state: the optimizer's ``state`` (param -> dict).
        cache: per parameter id, the checked layout of its state: (param, data pointer, slot tensors, slot pointers).
        spec: the algorithm.
        hp: the group's validated hyperparameters.
        live: (param, grad) pairs of the group's parameters that have a gradient, grads already checked for shape.
        backend: the group's backend; "reference" never takes this path.
    """
    if backend == "reference" or not spec.has_step or spec.host_slots(hp) or not kernels.available()[0]:
        return False
    dtype = live[0][0].dtype
    name = _DTYPES.get(dtype)
    if name is None or not kernels.supports(spec.name, name, name):
        return False
    slots = spec.state_slots(hp)
    steps, p_ptrs, g_ptrs, sizes = [], [], [], []
    slot_ptrs: list[list[int]] = [[] for _ in slots]
    for p, g in live:
        st = state.get(p)
        if not st or not _plain(g, dtype):
            return False
        step = st.get("step")
        if type(step) is not torch.Tensor:
            return False
        ptr = p.data_ptr()
        entry = cache.get(id(p))
        tensors = tuple(map(st.get, slots))
        if entry is None or entry[0] is not p or entry[1] != ptr or not all(map(is_, entry[2], tensors)):
            if not _plain(p, dtype) or not all(
                t is not None and _plain(t, dtype) and t.shape == p.shape for t in tensors
            ):
                return False
            entry = (p, ptr, tensors, tuple(t.data_ptr() for t in tensors))
            cache[id(p)] = entry
        steps.append(step)
        p_ptrs.append(ptr)
        g_ptrs.append(g.data_ptr())
        sizes.append(p.numel())
        for j, slot_ptr in enumerate(entry[3]):
            slot_ptrs[j].append(slot_ptr)
    with torch.no_grad():
        torch._foreach_add_(steps, 1.0)
        counts = torch.stack(steps).tolist()
    by_step: dict[int, list[int]] = {}
    for k, count in enumerate(counts):
        by_step.setdefault(int(count), []).append(k)
    threads = torch.get_num_threads()
    for count, members in by_step.items():
        everyone = len(members) == len(live)
        kernels.step(
            spec.name,
            spec.scalars(hp, count, {}),
            p_ptrs if everyone else [p_ptrs[k] for k in members],
            g_ptrs if everyone else [g_ptrs[k] for k in members],
            {slot: (ptrs if everyone else [ptrs[k] for k in members]) for slot, ptrs in zip(slots, slot_ptrs)},
            dtype=name,
            state_dtype=name,
            sizes=sizes if everyone else [sizes[k] for k in members],
            num_threads=threads,
        )
    return True
