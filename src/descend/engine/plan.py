"""The steady-state step of a param group: a plan of its layout, checked and run with one C call each.

Once every parameter of a group that has a gradient also has its state, the group's layout stops changing: the same
parameters at the same addresses, the same state tensors, the same dtype. :func:`build` records it in a
:class:`GroupPlan`. Each step, :meth:`GroupPlan.gather` hands the plan to ``descend.kernels._fused.gather``, which
confirms that nothing it records has changed, checks every gradient (dense, contiguous, the parameter's dtype and
shape) and returns their addresses; :meth:`GroupPlan.run` advances the step counters in C and runs the kernel. So the
Python work of a step no longer grows with the number of tensors, which is what lets a model of thousands of small
tensors step faster than torch's fused path.

Anything the plan does not cover (the first step, a new or changed state, a gradient in another layout, a parameter
or state tensor pointed at other memory or given another layout in place (``.data =``, ``set_()``, ``resize_()``,
``t_()``, ``share_memory_()``), parameters at different steps, the reference backend) makes ``gather`` return None,
having changed nothing, and the engine takes its general path, which gives the same bits and raises where torch
would. So the plan is invisible: nothing done between two steps gives other bits than the reference backend. The plan
keeps the storages it records alive, and holds every gradient it reads until the kernel is done, so no step reads or
writes freed memory even when another thread replaces a ``.grad``.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np
import torch

from descend import kernels
from descend.algorithms._spec import AlgorithmSpec, Hyperparams
from descend.engine.step import Item, Prepared
from descend.engine.torch_arrays import DTYPE_NAMES, TENSOR_OFFSET, plain, torch_library

_TYPES = (torch.Tensor, torch.nn.Parameter)
# torch's C function reading a tensor's data pointer from its Python object, exported (as an address) for its compiled
# wrappers; the plan's checks use it instead of calling data_ptr() where this torch has it.
_GUARDS = getattr(getattr(torch._C, "_dynamo", None), "guards", None)
_READER = getattr(_GUARDS, "_torchinductor_pyobject_tensor_data_ptr", None)
_READER = _READER if type(_READER) is int else None
_STEP_DTYPES = (torch.float32, torch.float64)
# torch's stable C functions for compiled code (the AOTInductor shim) that read a tensor's metadata, in the order
# kernels.compile_plan takes them.
_SHIM_NAMES = (
    "aoti_torch_get_data_ptr",
    "aoti_torch_get_dtype",
    "aoti_torch_get_layout",
    "aoti_torch_get_dim",
    "aoti_torch_get_sizes",
    "aoti_torch_is_contiguous",
)


def _find_shim() -> tuple[int, ...] | None:
    """``(offset, *addresses, is_neg)`` for :func:`descend.kernels.compile_plan`: the offset of a tensor's at::Tensor
    in its Python object (right after the object's header, as torch/csrc/autograd/python_variable.h declares
    THPVariable; the plan confirms it on each tensor it records), the addresses of :data:`_SHIM_NAMES` in the torch
    library this process has loaded, and that of at::native::is_neg or 0 (see :func:`_find_is_neg`); None where that
    library or one of the functions cannot be found (the checks then read the tensors' Python attributes)."""
    library = torch_library() if _READER is not None else None  # no _READER: an older torch, or one built without
    if library is None:  # its compiled-code interface
        return None
    try:
        addresses = tuple(ctypes.cast(getattr(library, n), ctypes.c_void_p).value for n in _SHIM_NAMES)
    except AttributeError:
        return None
    if not all(addresses):
        return None
    return (TENSOR_OFFSET, *addresses, _find_is_neg(library, TENSOR_OFFSET))  # type: ignore[return-value]


def _find_is_neg(library: ctypes.CDLL, offset: int) -> int:
    """The address of at::native::is_neg (what ``tensor.is_neg()`` calls, without the Python method's own cost) in
    the loaded torch library, or 0 where it is not exported or does not tell a lazily negated view from its base
    (the checks then call ``is_neg()``). It is a C++ function of one ``const at::Tensor&``; gather() calls it through
    a wrapper that catches what it might throw."""
    try:
        address = ctypes.cast(library["_ZN2at6native6is_negERKNS_6TensorE"], ctypes.c_void_p).value or 0
    except (AttributeError, OSError):
        return 0
    if not address:
        return 0
    read = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p)(address)
    base = torch.zeros(2)
    negated = torch._neg_view(base)
    return address if (read(id(base) + offset), read(id(negated) + offset)) == (False, True) else 0


_SHIM = _find_shim()


def _hints(tensors: tuple) -> tuple[int, ...] | None:
    """Where torch keeps each tensor's metadata and storage (its TensorImpl and StorageImpl): gather() fetches them
    a few parameters ahead of its checks. Hints only: never dereferenced, so one gone stale (a gradient replaced by
    the next backward pass) costs nothing but speed."""
    try:
        return tuple(address for t in tensors for address in (t._cdata, t.untyped_storage()._cdata))
    except (AttributeError, RuntimeError, TypeError):  # a tensor kind without these (the plan is plain tensors only)
        return None


class GroupPlan:
    """The recorded layout of one param group (see the module docstring). Built by :func:`build`."""

    __slots__ = (
        "spec",
        "slots",
        "params",
        "source",
        "entries",
        "hints",
        "keys",
        "dtype",
        "names",
        "p_ptrs",
        "slot_ptrs",
        "sizes",
        "step_ptrs",
        "step_double",
        "host",
        "host_ptrs",
        "host_double",
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
        self.hints: list = []  # per parameter, addresses the checks will read (see _hints)
        self.host = host  # host scalars kept in 0-d tensors beside the step (NAdam's mu_product)
        self.keys = slots + (("step",) if spec.has_step else ()) + host
        self.dtype = dtype
        self.names = names
        self.p_ptrs: list[int] = []
        self.slot_ptrs: list[list[int]] = [[] for _ in slots]
        self.sizes: list[int] = []
        self.step_ptrs: list[int] = []
        self.step_double = step_dtype is torch.float64
        self.host_ptrs: list[list[int]] = [[] for _ in host]
        self.host_double: list[bool | None] = [None for _ in host]  # each host scalar's dtype: float64 or float32
        self.keep: list[Any] = []  # the storages behind every recorded address
        self.compiled: Any = None  # the entries as one C array (kernels.compile_plan)

    def prepare(
        self, state: dict, group: dict[str, Any], hp: Hyperparams, offset: int, checks: bool
    ) -> Prepared | None:
        """The group's step from the plan, ready for the engine to write; None, having changed nothing, where the
        plan no longer holds (the engine then prepares the group in full).

        Args:
            state: the optimizer's state mapping.
            group: the param group the plan was built for.
            hp: its hyperparameters for this step.
            offset: the index of the group's first parameter over all groups (for messages).
            checks: whether the engine needs the gradients for its finite check.
        """
        spec = self.spec
        params = group["params"]
        if params is not self.source or len(params) != len(self.params) or spec.state_slots(hp) != self.slots:
            return None
        got = kernels.gather(params, self.compiled, state, self.dtype, torch.strided, _TYPES)
        if got is None:
            return None
        addresses, grads = got
        present = None if None not in addresses else [k for k, a in enumerate(addresses) if a is not None]
        if present == []:
            return Prepared()

        def pick(values: list) -> list:
            return values if present is None else [values[k] for k in present]

        step_ptrs = pick(self.step_ptrs) if spec.has_step else []
        host: dict[str, float] = {}
        seen: dict[str, float] = {}
        count, count_value = 0, 0.0
        if spec.has_step:
            now = kernels.common_value(step_ptrs, self.step_double)
            if now is None:  # parameters at different steps: the engine's general path takes one call per step
                return None
            count_value = now + 1.0 if self.step_double else float(np.float32(now) + np.float32(1.0))
            count = int(count_value)
            advanced = self._advance_host(hp, count, pick)
            if advanced is None:
                return None
            before, host = advanced
            seen = before if spec.host_for_scalars == "before" else host
        else:
            seen = {}
        scalars = spec.step_scalars(hp, count, seen, False, shape=(), dtype=self.names[0])  # (no whole_tensor)
        job = kernels.job(
            spec.name,
            scalars,
            pick(self.p_ptrs),
            [a for a in addresses if a is not None],
            {slot: pick(ptrs) for slot, ptrs in zip(self.slots, self.slot_ptrs)},
            dtype=self.names[0],
            state_dtype=self.names[1],
            sizes=pick(self.sizes),
        )
        # The kernel refuses memory written for one tensor that another reads (a gradient that is another
        # parameter, or its state): the group is then prepared again in full, which reads such a gradient from a copy.
        out = Prepared(jobs=[job], keep=grads, optimistic=True, items=lambda: self._items(params, grads, state, offset))
        out.written = pick(self.params)
        if checks:
            name = self.names[0]
            out.checks = [
                (offset + k, grads[k], (addresses[k], self.sizes[k], name))
                for k in range(len(addresses))
                if addresses[k] is not None
            ]
        host_ptrs = [pick(ptrs) for ptrs in self.host_ptrs]
        double = self.step_double

        def commit() -> None:
            if step_ptrs:
                kernels.fill_value(step_ptrs, count_value, double)
            for key, ptrs, host_double in zip(self.host, host_ptrs, self.host_double):
                kernels.fill_value(ptrs, host[key], bool(host_double))

        out.commits.append(commit)
        return out

    @staticmethod
    def _items(params: list, grads: list, state: dict, offset: int) -> list[Item]:
        return [Item(p, p, g, state.get(p), offset + k) for k, (p, g) in enumerate(zip(params, grads)) if g is not None]

    def _advance_host(self, hp: Hyperparams, count: int, pick: Any) -> tuple[dict[str, float], dict[str, float]] | None:
        """The host scalars before and after this step, advanced as the general path advances them (the same torch
        op on a 0-d tensor of the counters' dtype), or None if the parameters hold different values."""
        if not self.host:
            return {}, {}
        dtypes = {key: torch.float64 if double else torch.float32 for key, double in zip(self.host, self.host_double)}
        now = {}
        for key, ptrs, double in zip(self.host, self.host_ptrs, self.host_double):
            value = kernels.common_value(pick(ptrs), bool(double))
            if value is None:
                return None
            now[key] = torch.tensor(value, dtype=dtypes[key])
        with torch.no_grad():
            advanced = self.spec.advance_host(hp, count, now)
        before = {key: float(value) for key, value in now.items()}
        return before, {key: float(torch.as_tensor(value, dtype=dtypes[key])) for key, value in advanced.items()}


def build(state: dict, spec: AlgorithmSpec, hp: Hyperparams, group: dict[str, Any], backend: str) -> GroupPlan | None:
    """The plan of a group after a step, or None where the group does not fit one (see the module docstring)."""
    host = tuple(spec.host_slots(hp))
    if backend in ("reference", "foreach") or not kernels.available()[0] or (host and not spec.has_step):
        return None
    if spec.whole_tensor:  # the slots and scalars may differ with the parameter's shape (Adafactor's): no one layout
        return None
    params = group["params"]
    if len({id(p) for p in params}) != len(params):  # a tensor listed twice is updated twice, one round each
        return None
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
            plan.hints.append(None)
            plan.p_ptrs.append(0)
            plan.sizes.append(0)
            for ptrs in plan.slot_ptrs:
                ptrs.append(0)
            if spec.has_step:
                plan.step_ptrs.append(0)
            for ptrs in plan.host_ptrs:
                ptrs.append(0)
            continue
        if not (plain(p) and p.dtype is dtype) or any(
            isinstance(t, torch.Tensor) and t.is_inference() for t in (p, *(st.values() if st else ()))
        ):
            return None  # (the general path refuses an inference tensor outside inference mode)
        tensors = tuple(st[key] for key in plan.keys) if st is not None else ()
        for key, t in zip(plan.keys, tensors):
            if key == "step":
                if not (plain(t) and t.numel() == 1 and t.dtype is step_dtype):
                    return None
            elif key in host:  # float32 or float64, the same for every parameter (the general path's own dtype)
                k = host.index(key)
                plan.host_double[k] = t.dtype is torch.float64 if plan.host_double[k] is None else plan.host_double[k]
                wanted = torch.float64 if plan.host_double[k] else torch.float32
                if not (plain(t) and t.numel() == 1 and t.dtype is wanted):
                    return None
            elif not (plain(t) and t.dtype is state_dtype and t.shape == p.shape):
                return None
        plan.keep += [t.untyped_storage() for t in (p, *tensors)]
        addresses = tuple(t.data_ptr() for t in tensors)
        plan.entries.append((st, p.data_ptr(), p.shape, tensors, tuple(t.dtype for t in tensors), addresses))
        plan.hints.append(_hints((p, *tensors) if p.grad is None else (p, *tensors, p.grad)))
        plan.p_ptrs.append(p.data_ptr())
        plan.sizes.append(p.numel())
        for ptrs, address in zip(plan.slot_ptrs, addresses):
            ptrs.append(address)
        if spec.has_step:
            plan.step_ptrs.append(addresses[len(slots)])
        for ptrs, address in zip(plan.host_ptrs, addresses[len(slots) + 1 :]):
            ptrs.append(address)
    plan.compiled = kernels.compile_plan(plan.params, plan.entries, plan.keys, len(slots), _READER, plan.hints, _SHIM)
    return plan
