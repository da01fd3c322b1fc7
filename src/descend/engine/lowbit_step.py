"""One param group's step with low-bit storage (:class:`descend.lowbit.StateFormat`), for :class:`.Engine`.

The same four stages as the engine's own step (prepare and refuse, then write), with the state kept in a format: its
slots hold bfloat16 bits, or 8-bit codes with a float32 scale per block under ``<slot>_scale``, and a Kahan
compensation buffer ``kahan_comp`` where the format asks for one. Every parameter keeps a ``step`` count, which is the
random stream's position (also for the algorithms that keep none themselves, such as SGD). The kernel runs a
parameter where it can; the reference (:func:`descend.lowbit.update`) runs the others, on NumPy views of their memory,
and gives the same bits. Parameters whose dtype the format does not apply to (float64) take the engine's own path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from descend import kernels
from descend import lowbit as lb
from descend.algorithms._spec import cast_scalars
from descend.engine.arrays import ArrayKind, fused_refusal, operand_refusal, ranges_overlap
from descend.engine.memory import check_writable, check_written

if TYPE_CHECKING:
    from descend.engine.step import Engine, GroupWork, Item, Prepared

__all__ = ["applies", "expected_keys", "new_state", "prepare", "prepare_uniform", "slot_order"]

_LOWBIT_PARAMS = ("float32", "bfloat16", "float16")


def applies(kind: ArrayKind, p: Any) -> bool:
    """Whether a format applies to parameter ``p`` (float32, bfloat16 or float16; a complex64 one as float32 pairs)."""
    return kind.dtype_name(p) in _LOWBIT_PARAMS


def slot_order(spec: Any, hp: Any) -> list[tuple[str, int, bool]]:
    """Per state slot: its name, its position in the kernel's slot order (the stream's slot number), never negative."""
    layout = kernels.KERNELS.get(spec.name)
    names = spec.state_slots(hp)
    if layout is None:  # an algorithm without a kernel: slots in the spec's order, all signed
        return [(name, k, False) for k, name in enumerate(names)]
    return [(name, layout.slot_names.index(name), name in layout.nonneg) for name in names]


def expected_keys(spec: Any, hp: Any, fmt: lb.StateFormat, dtype: str) -> dict[str, str]:
    """The array keys a parameter of ``dtype`` keeps under ``fmt``, each with its storage."""
    out: dict[str, str] = {}
    for name, _, _ in slot_order(spec, hp):
        if fmt.dtype == "blockwise8":
            out[name], out[name + lb.SCALE_SUFFIX] = "uint8", "float32"
        else:
            out[name] = fmt.dtype
    if fmt.params == "kahan" and dtype != "float32":
        out[lb.KAHAN_KEY] = dtype
    return out


def new_state(kind: ArrayKind, spec: Any, p: Any, hp: Any, fmt: lb.StateFormat, keys: list[str]) -> dict[str, Any]:
    """Fresh state arrays ``keys`` for ``p``: the algorithm's initial values, encoded to nearest."""
    shape = kind.shape(p)
    size = int(np.prod(shape, dtype=np.int64))
    initial = spec.init_state(np, np.zeros(size, dtype=np.float32), hp)
    dtype = kind.dtype_name(p)
    out: dict[str, Any] = {}
    for name, _, nonneg in slot_order(spec, hp):
        values = initial[name]
        if fmt.dtype == "float32":
            stored = {name: ("float32", values)}
        elif fmt.dtype == "bfloat16":
            stored = {name: ("bfloat16", lb.bf16_round(values))}
        else:
            codes, scales = lb.q8_encode(values, nonneg)
            stored = {name: ("uint8", codes), name + lb.SCALE_SUFFIX: ("float32", scales)}
        for key, (storage, data) in stored.items():
            if key in keys:
                item_shape = shape if storage != "float32" or fmt.dtype == "float32" else (data.size,)
                out[key] = kind.new_raw(p, item_shape, storage, data)
    if lb.KAHAN_KEY in keys:
        out[lb.KAHAN_KEY] = kind.new_raw(
            p, shape, dtype, np.zeros(size, dtype=np.uint16 if dtype == "bfloat16" else np.float16)
        )
    return out


def _check(kind: ArrayKind, item: Item, arrays: Mapping[str, Any], expected: Mapping[str, str]) -> None:
    """Every array must have the format's storage, and the parameter's shape (the scales: one per block)."""
    p = item.param
    size = kind.size(p)
    for key, storage in expected.items():
        a = arrays[key]
        shaped = (
            kind.same_layout(a, p)
            if not key.endswith(lb.SCALE_SUFFIX)
            else (len(kind.shape(a)) == 1 and kind.size(a) == -(-size // lb.Q8_BLOCK))
        )
        if kind.storage(a) != storage or not shaped:
            want = (
                "one float32 scale per block of 256 elements"
                if key.endswith(lb.SCALE_SUFFIX)
                else (f"{storage} of the parameter's shape ({kind.describe(p)})")
            )
            raise ValueError(
                f"the state {key!r} of parameter {item.index} has {kind.describe(a)}; the state format keeps {want}"
            )
        if ranges_overlap(kind.span(a), kind.span(p)):
            raise ValueError(f"the state {key!r} of parameter {item.index} shares memory with the parameter")


def prepare(engine: Engine, work: GroupWork, items: list[Item], out: Prepared) -> None:
    """Prepare ``items`` (all of a dtype the format applies to) of one group into ``out``; nothing is written."""
    spec, kind, hp, fmt = engine.spec, engine.kind, work.hp, engine.fmt
    slots = slot_order(spec, hp)
    states = engine.states()
    keys_of = {dtype: expected_keys(spec, hp, fmt, dtype) for dtype in _LOWBIT_PARAMS}
    formats = {dtype: fmt if dtype != "float32" else _nearest(fmt) for dtype in _LOWBIT_PARAMS}
    pending = []
    for item in items:
        if item.state is None:
            item.state = states.get(item.key)
        p = item.param
        kind.check_param(p, f"parameter {item.index}")
        check_writable(kind, item)
        dtype = kind.dtype_name(p)
        current = item.state if item.state is not None else {}
        expected = keys_of[dtype]
        missing = [k for k in expected if k not in current]
        fresh = new_state(kind, spec, p, hp, fmt, missing) if missing else {}
        arrays = {k: current[k] if k in current else fresh[k] for k in expected}
        _check(kind, item, arrays, expected)
        pending.append((item, current, missing, fresh, arrays, dtype))
    copies = check_written(
        kind, [(item, {k: a for k, a in arr.items() if k not in new}) for item, _, _, new, arr, _ in pending]
    )
    buckets: dict[tuple, list] = {}
    for position, (item, current, missing, fresh, arrays, dtype) in enumerate(pending):
        g = item.grad
        step = kind.next_step(current)
        count = kind.count(step)
        first = "step" not in current if spec.has_step else bool([k for k, _, _ in slots if k in missing])
        host_now = {k: kind.read_host(current, k, v) for k, v in spec.host_slots(hp).items()}
        host = spec.advance_host(hp, count, host_now) if host_now else {}
        seen = host_now if spec.host_for_scalars == "before" else host
        scalars = spec.scalars(hp, count if spec.has_step else 0, {k: float(v) for k, v in seen.items()}, first)
        if engine.nan_policy != "propagate":
            out.checks.append((item.index, g, kind.nonfinite_address(g)))
        route = _route(engine, work.backend, item, arrays, dtype, formats[dtype])
        if route is not None:
            grad = kind.contiguous_copy(g) if (route or position in copies) else g
            buckets.setdefault((dtype, scalars, count), []).append((item, arrays, grad))
        else:
            out.reference.append(_reference(engine, item, arrays, scalars, dtype, count, slots, formats[dtype]))
        out.commits.append(engine._committer(item, fresh, step, host, True))  # a step always: the rounding's seed
    for (dtype, scalars, count), members in buckets.items():
        comps = (
            [kind.operand(arrays[lb.KAHAN_KEY], True) for _, arrays, _ in members]
            if (fmt.params == "kahan" and dtype != "float32")
            else None
        )
        out.jobs.append(
            kernels.job(
                spec.name,
                scalars,
                [kind.operand(item.param, True) for item, _, _ in members],
                [kind.operand(grad, False) for _, _, grad in members],
                {
                    k: [kind.operand(arrays[k], True) for _, arrays, _ in members]
                    for k in keys_of[dtype]
                    if k != lb.KAHAN_KEY
                },
                dtype=dtype,
                sizes=[kind.size(item.param) for item, _, _ in members],
                fmt=formats[dtype],
                step=count,
                ids=[item.index for item, _, _ in members],
                comps=comps,
            )
        )
        out.keep += [grad for _, _, grad in members]
        out.written += [item.param for item, _, _ in members]


def prepare_uniform(
    engine: Engine,
    hp: Any,
    backend: str,
    params: list[Any],
    grads: list[Any],
    states: list[dict | None],
    indices: list[int],
) -> Prepared | None:
    """A group's steady state in a format with little Python per parameter, or None where it does not apply: as
    :meth:`.Engine.prepare_uniform`, every parameter already keeps every array of the format, all at one step with
    the same host scalars, in one dtype the format applies to. The kernel checks NumPy's arrays itself (their
    storage, sizes, the scales' sizes, contiguity and overlaps); torch's are checked here in one pass each
    (:meth:`~descend.engine.torch_arrays.TorchKind.steady_operands`), the kernel checking their overlaps. Should the
    kernel refuse, the group is prepared again in full by :func:`prepare` before anything has run."""
    from descend.engine.step import Prepared

    spec, kind, fmt = engine.spec, engine.kind, engine.fmt
    dtype = kind.dtype_name(params[0])
    if dtype not in _LOWBIT_PARAMS or not kind.all_of_dtype(params, params[0]):
        return None
    own = fmt if dtype != "float32" else _nearest(fmt)
    if kernels.format_refusal(spec.name, dtype, own):
        return None
    keys = expected_keys(spec, hp, fmt, dtype)
    host_keys = tuple(spec.host_slots(hp))
    try:
        arrays = {k: [st[k] for st in states] for k in keys}
        steps = [st["step"] for st in states]
        hosts = [tuple(st[k] for k in host_keys) for st in states] if host_keys else [()]
    except (KeyError, TypeError):  # a parameter without state (None) or without some array yet
        return None
    if steps.count(steps[0]) != len(steps) or hosts.count(hosts[0]) != len(hosts):
        return None
    if not all(kind.writable(v) for v in (*steps, *hosts[0])):  # the general path refuses it, having written nothing
        return None
    step = kind.next_step(states[0])
    count = kind.count(step)
    before = dict(zip(host_keys, hosts[0]))
    host = spec.advance_host(hp, count, before) if host_keys else {}
    seen = before if spec.host_for_scalars == "before" else host
    scalars = spec.scalars(hp, count if spec.has_step else 0, {k: float(v) for k, v in seen.items()}, False)
    operands = (params, grads, arrays)
    if not kind.kernel_checks:  # addresses, each tensor checked here
        operands = _addresses(kind, params, grads, arrays, keys)
        if operands is None:
            return None
    comps = operands[2].pop(lb.KAHAN_KEY, None)
    out = Prepared(optimistic=True, keep=list(grads), written=list(params))
    out.jobs.append(
        kernels.job(
            spec.name,
            scalars,
            operands[0],
            operands[1],
            operands[2],
            dtype=dtype,
            sizes=[kind.size(p) for p in params],
            fmt=own,
            step=count,
            ids=list(indices),
            comps=comps,
        )
    )
    return out.finish_steady(kind, engine.nan_policy, indices, grads, states, step, host)


def _addresses(
    kind: ArrayKind, params: list, grads: list, arrays: dict[str, list], keys: Mapping[str, str]
) -> tuple[list, list, dict[str, list]] | None:
    """The addresses of every parameter, gradient and state array of a group, or None as soon as one is not as the
    general path would take it without a copy."""
    p_out, g_out, a_out = [], [], {k: [] for k in arrays}
    for t, (p, g) in enumerate(zip(params, grads)):
        got = kind.steady_operands(p, g, {k: arrays[k][t] for k in arrays}, keys, lb.Q8_BLOCK)
        if got is None:
            return None
        p_out.append(got[0])
        g_out.append(got[1])
        for k, address in zip(arrays, got[2]):
            a_out[k].append(address)
    return p_out, g_out, a_out


def _nearest(fmt: lb.StateFormat) -> lb.StateFormat:
    """The format as it applies to float32 params, which are stored as they are."""
    return replace(fmt, params="nearest") if fmt.params != "nearest" else fmt


def _route(
    engine: Engine, backend: str, item: Item, arrays: Mapping[str, Any], dtype: str, fmt: lb.StateFormat
) -> bool | None:
    """None: the reference runs the parameter; else the kernel does, reading the gradient from a copy if True."""
    if backend == "reference":
        return None
    kind, p, g = engine.kind, item.param, item.grad
    why, copy = kernels.format_refusal(engine.spec.name, dtype, fmt), False
    if not why:
        why, copy = operand_refusal(kind, p, g, arrays, dtype)
    if not why:
        return copy
    if backend == "fused":
        raise fused_refusal(kind, engine.spec.title, item.index, p, why)
    return None


def _reference(
    engine: Engine,
    item: Item,
    arrays: Mapping[str, Any],
    scalars: Any,
    dtype: str,
    count: int,
    slots: list,
    fmt: lb.StateFormat,
) -> tuple:
    """The reference on NumPy views of the arrays' memory, out of place; the results are stored at write time."""
    kind, spec = engine.kind, engine.spec
    views = {k: kind.raw(a) for k, a in [("", item.param), ("grad", kind.resolved(item.grad)), *arrays.items()]}
    missing = [k or "the parameter" for k, v in views.items() if v is None]
    if missing:
        raise ValueError(
            f"parameter {item.index} of {spec.title} ({kind.describe(item.param)}) cannot keep low-bit state: "
            f"{missing[0]} has no view of its memory on the CPU; a state format runs on CPU tensors"
        )
    s32 = cast_scalars(scalars, np.float32)

    def rule(p: np.ndarray, g: np.ndarray, state: dict) -> None:
        with np.errstate(all="ignore"):
            spec.reference_update(np, p, g, state, s32)

    def compute() -> list:
        flat = {k: np.ascontiguousarray(v).reshape(-1) for k, v in views.items()}
        state = {k: flat[k] for k in arrays}
        new_p, new_state = lb.update(
            rule, flat[""], flat["grad"], state, fmt, param_dtype=dtype, slots=slots, key=(count, item.index)
        )
        return [new_p.reshape(views[""].shape), *(new_state[k].reshape(views[k].shape) for k in arrays)]

    targets = [views[""], *(views[k] for k in arrays)]
    return targets, compute, write_raw


def write_raw(dst: np.ndarray, src: np.ndarray) -> None:
    """Store a reference result into a NumPy view of an array's memory."""
    np.copyto(dst, src, casting="unsafe")
