"""The steady-state step of a param group: a plan of its layout, checked and run with one C call each.

Once every parameter of a group that has a gradient also has its state, the group's layout stops changing: the same
parameters at the same addresses, the same state tensors, the same dtype. :func:`build` records it in a
:class:`GroupPlan`. Each step, :meth:`GroupPlan.gather` hands the plan to ``descend.kernels._fused.gather``, which
confirms that nothing it records has changed, checks every gradient (dense, contiguous, the parameter's dtype and
shape) and returns their addresses; :meth:`GroupPlan.run` advances the step counters in C and runs the kernel. So the
Python work of a step no longer grows with the number of tensors, which is what lets a model of thousands of small
tensors step faster than torch's fused path.

Anything the plan does not cover (the first step, a new or changed state, a gradient in another layout, a parameter
replaced through ``.data``, NAdam parameters at different steps, whose ``mu_product`` advances with the step, the
reference backend) makes ``gather`` return None, having changed nothing, and the optimizer takes its general path,
which gives the same bits and raises where torch would. Two changes are not looked for, because each check costs a
cache miss per tensor on every step: pointing a state tensor at other memory in place (assigning its ``.data``;
replace the tensor in the state dict instead, or call ``load_state_dict``) and changing a parameter's layout in place
without moving it (``p.t_()``). The plan keeps the storages it records alive and checks that none has moved its data
(``share_memory_()``), so no step can write to freed memory.
"""

from __future__ import annotations

from typing import Any

import torch

from descend import kernels
from descend.algorithms._spec import AlgorithmSpec, Hyperparams
from descend.torch._dispatch import DTYPE_NAMES, plain

_TYPES = (torch.Tensor, torch.nn.Parameter)
_STEP_DTYPES = (torch.float32, torch.float64)


class GroupPlan:
    """The recorded layout of one param group (see the module docstring). Built by :func:`build`."""

    __slots__ = (
        "spec",
        "slots",
        "params",
        "source",
        "entries",
        "keys",
        "dtype",
        "names",
        "p_ptrs",
        "slot_ptrs",
        "sizes",
        "step_ptrs",
        "step_tensors",
        "step_double",
        "host",
        "host_ptrs",
        "keep",
        "compiled",
    )

    def __init__(
        self,
        spec: AlgorithmSpec,
        slots: tuple[str, ...],
        source: list,
        dtype: torch.dtype,
        names: tuple[str, str],
        step_dtype: torch.dtype | None,
        host: tuple[str, ...],
    ) -> None:
        self.spec = spec
        self.slots = slots
        self.source = source  # the group's own list, to notice a group whose list was replaced
        self.params: list = list(source)
        self.entries: list = []
        self.host = host  # host scalars kept in 0-d tensors beside the step (NAdam's mu_product)
        self.keys = slots + (("step",) if spec.has_step else ()) + host
        self.dtype = dtype
        self.names = names
        self.p_ptrs: list[int] = []
        self.slot_ptrs: list[list[int]] = [[] for _ in slots]
        self.sizes: list[int] = []
        self.step_ptrs: list[int] = []
        self.step_tensors: list[torch.Tensor] = []
        self.step_double = step_dtype is torch.float64
        self.host_ptrs: list[list[int]] = [[] for _ in host]
        self.keep: list[Any] = []  # the storages behind every recorded address
        self.compiled: Any = None  # the entries as one C array (kernels.compile_plan)

    def gather(self, state: dict, group: dict[str, Any], hp: Hyperparams) -> list | None:
        """The gradients' addresses (None where a parameter has no gradient), or None if the plan no longer holds."""
        params = group["params"]
        if params is not self.source or len(params) != len(self.params) or self.spec.state_slots(hp) != self.slots:
            return None
        grads = kernels.gather(params, self.compiled, state, self.dtype, torch.strided, _TYPES)
        if grads is None or not self.host:
            return grads
        # Host scalars advance with the step: the plan runs them only when every parameter is at the same step with
        # the same values, which is the case unless some parameters missed steps.
        uniform = [self.step_ptrs, *self.host_ptrs]
        if None in grads or any(kernels.common_value(ptrs, self.step_double) is None for ptrs in uniform):
            return None
        return grads

    def addresses(self, grads: list) -> list[tuple[int, int, str] | None]:
        """Per parameter, where the finite check reads its gradient (None where it has none)."""
        name = self.names[0]
        return [None if g is None else (g, n, name) for g, n in zip(grads, self.sizes)]

    def run(self, hp: Hyperparams, grads: list) -> None:
        """Advance the step counters of the parameters with a gradient and update them in one kernel call each."""
        spec = self.spec
        present = None if None not in grads else [k for k, g in enumerate(grads) if g is not None]
        if present == []:
            return

        def pick(values: list, members: list[int] | None) -> list:
            return values if members is None else [values[k] for k in members]

        host: dict[str, float] = {}
        if not spec.has_step:
            runs = {2: present}  # the general path's count for a stateless or initialised step (SGD)
        else:
            count = kernels.advance_steps(pick(self.step_ptrs, present), self.step_double)
            if count is not None:
                runs = {int(count): present}
                host = self._advance_host(hp, int(count))
            else:  # parameters at different steps (never with host scalars, see gather): one call per step count
                runs = {}
                for k in range(len(grads)) if present is None else present:
                    runs.setdefault(int(self.step_tensors[k].item()), []).append(k)
        threads = torch.get_num_threads()
        for count, members in runs.items():
            kernels.step(
                spec.name,
                spec.scalars(hp, count, host),
                pick(self.p_ptrs, members),
                pick(grads, members),
                {slot: pick(ptrs, members) for slot, ptrs in zip(self.slots, self.slot_ptrs)},
                dtype=self.names[0],
                state_dtype=self.names[1],
                sizes=pick(self.sizes, members),
                num_threads=threads,
            )

    def _advance_host(self, hp: Hyperparams, count: int) -> dict[str, float]:
        """Advance the host scalars as the general path does (the same torch op on a 0-d tensor), and store them."""
        if not self.host:
            return {}
        dtype = torch.float64 if self.step_double else torch.float32
        now = {  # gather() found each the same for every parameter
            key: torch.tensor(kernels.common_value(ptrs, self.step_double), dtype=dtype)
            for key, ptrs in zip(self.host, self.host_ptrs)
        }
        with torch.no_grad():
            advanced = self.spec.advance_host(hp, count, now)
        values = {key: float(torch.as_tensor(value, dtype=dtype)) for key, value in advanced.items()}
        for key, ptrs in zip(self.host, self.host_ptrs):
            kernels.fill_value(ptrs, values[key], self.step_double)
        return values


def build(state: dict, spec: AlgorithmSpec, hp: Hyperparams, group: dict[str, Any], backend: str) -> GroupPlan | None:
    """The plan of a group after a step, or None where the group does not fit one (see the module docstring)."""
    host = tuple(spec.host_slots(hp))
    if backend == "reference" or not kernels.available()[0] or (host and not spec.has_step):
        return None
    params = group["params"]
    slots = tuple(spec.state_slots(hp))
    stateless = not slots and not spec.has_step  # SGD without momentum
    with_state = params if stateless else [p for p in params if state.get(p)]
    if not with_state:
        return None
    first = with_state[0]
    dtype = first.dtype
    state_dtype = state[first][slots[0]].dtype if slots and slots[0] in state[first] else dtype
    names = (DTYPE_NAMES.get(dtype), DTYPE_NAMES.get(state_dtype))
    if None in names or not kernels.supports(spec.name, *names):
        return None
    step = None if stateless else state[first].get("step")
    step_dtype = step.dtype if isinstance(step, torch.Tensor) else None
    if spec.has_step and step_dtype not in _STEP_DTYPES:
        return None
    plan = GroupPlan(spec, slots, params, dtype, names, step_dtype, host)  # type: ignore[arg-type]
    for p in params:
        st = None if stateless else state.get(p)
        if not stateless and (not st or any(key not in st for key in plan.keys)):
            plan.entries.append(None)  # no state yet: the general path runs if it gets a gradient
            plan.p_ptrs.append(0)
            plan.sizes.append(0)
            for ptrs in plan.slot_ptrs:
                ptrs.append(0)
            if spec.has_step:
                plan.step_ptrs.append(0)
                plan.step_tensors.append(None)  # type: ignore[arg-type]
            for ptrs in plan.host_ptrs:
                ptrs.append(0)
            continue
        if not (plain(p) and p.dtype is dtype):
            return None
        tensors = tuple(st[key] for key in plan.keys) if st is not None else ()
        for key, t in zip(plan.keys, tensors):
            if key == "step" or key in host:
                if not (plain(t) and t.numel() == 1 and t.dtype is step_dtype):
                    return None
            elif not (plain(t) and t.dtype is state_dtype and t.shape == p.shape):
                return None
        storages = tuple(t.untyped_storage() for t in tensors)
        plan.keep.append(p.untyped_storage())
        addresses = tuple(t.data_ptr() for t in tensors)
        bases = tuple(s.data_ptr() for s in storages)
        plan.entries.append((st, p.data_ptr(), p.shape, tensors, storages, bases))
        plan.p_ptrs.append(p.data_ptr())
        plan.sizes.append(p.numel())
        for ptrs, address in zip(plan.slot_ptrs, addresses):
            ptrs.append(address)
        if spec.has_step:
            plan.step_ptrs.append(addresses[len(slots)])
            plan.step_tensors.append(tensors[len(slots)])
        for ptrs, address in zip(plan.host_ptrs, addresses[len(slots) + 1 :]):
            ptrs.append(address)
    plan.compiled = kernels.compile_plan(plan.params, plan.entries, plan.keys)
    return plan
