"""Runs the fused kernel with low-bit storage and the reference (descend.lowbit.update) side by side, tensor by
tensor, on torch tensors passed by address; shared by the low-bit kernel tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from descend import kernels
from descend import lowbit as lb
from descend.algorithms import registry
from descend.algorithms._spec import cast_scalars
from descend.kernels._layout import KERNELS

TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def raw(t: torch.Tensor) -> np.ndarray:
    """The tensor's bytes as NumPy sees them: bfloat16 as uint16 bits."""
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16)
    return t.numpy()


def tensor(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    a = np.ascontiguousarray(a)
    if dtype == torch.bfloat16:
        return torch.from_numpy(a.astype(np.uint16).view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a.astype(raw(torch.zeros(0, dtype=dtype)).dtype))


def slots_of(name: str, hp: Any) -> list[tuple[str, int, bool]]:
    layout = KERNELS[name]
    return [(k, layout.slot_names.index(k), k in layout.nonneg) for k in registry.get(name).state_slots(hp)]


def fresh_state(name: str, hp: Any, n: int, fmt: lb.StateFormat, pdtype: str) -> dict[str, torch.Tensor]:
    init = registry.get(name).init_state(np, np.zeros(n, np.float32), hp)
    out: dict[str, torch.Tensor] = {}
    for k, _, nonneg in slots_of(name, hp):
        if fmt.dtype == "float32":
            out[k] = torch.from_numpy(init[k].copy())
        elif fmt.dtype == "bfloat16":
            out[k] = tensor(lb.bf16_round(init[k]), torch.bfloat16)
        else:
            codes, scales = lb.q8_encode(init[k], nonneg)
            out[k], out[k + lb.SCALE_SUFFIX] = torch.from_numpy(codes), torch.from_numpy(scales.copy())
    if fmt.params == "kahan" and pdtype != "float32":
        out[lb.KAHAN_KEY] = torch.zeros(n, dtype=TORCH_DTYPES[pdtype])
    return out


def bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-identical, except that a NaN equals any NaN in the same place. Which NaN comes out is not part of the
    rule: NumPy's float16 conversion keeps a payload where the kernel's stores the quiet NaN, and where both operands
    of an addition are NaN the hardware returns the first, an order the C compiler is free to swap (a float32
    parameter that is already NaN, updated by a NaN step, came out +NaN in the kernel and -NaN in the reference)."""
    x, y = raw(a).reshape(-1), raw(b).reshape(-1)
    if x.dtype in (np.float16, np.float32, np.float64):
        nan = np.isnan(x)
        if not np.array_equal(nan, np.isnan(y)):
            return False
        x, y = x[~nan], y[~nan]
    return np.array_equal(x.view(np.uint8), y.view(np.uint8))


def run(
    name: str,
    kwargs: dict,
    pdtype: str,
    fmt: lb.StateFormat,
    sizes: list[int],
    steps: int,
    seed: int,
    threads: int = 0,
    ids_from: int = 0,
    start: Any = None,
) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]], list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """``steps`` steps of the kernel and of the reference from the same start; returns (kernel params, kernel
    state, reference params, reference state). ``start(name, hp, size)``, where given, makes each tensor's initial
    state in place of a fresh one."""
    spec = registry.get(name)
    hp = spec.make(**kwargs)
    tdtype = TORCH_DTYPES[pdtype]
    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(n, generator=gen).to(tdtype) for n in sizes]
    states = [start(name, hp, n) if start else fresh_state(name, hp, n, fmt, pdtype) for n in sizes]
    expected = [p.clone() for p in params]
    expected_states = [{k: v.clone() for k, v in s.items()} for s in states]
    slots = slots_of(name, hp)
    host = spec.host_slots(hp)
    for step in range(1, steps + 1):
        grads = [torch.randn(n, generator=gen).to(tdtype) for n in sizes]
        host = spec.advance_host(hp, step, host)
        s = spec.scalars(hp, step if spec.has_step else 0, host, step == 1)
        addresses = {k: [st[k].data_ptr() for st in states] for k in states[0]} if sizes else {}
        comps = addresses.pop(lb.KAHAN_KEY, None)
        job = kernels.job(
            name,
            s,
            [p.data_ptr() for p in params],
            [g.data_ptr() for g in grads],
            addresses,
            dtype=pdtype,
            sizes=sizes,
            fmt=fmt,
            step=step,
            ids=[ids_from + i for i in range(len(sizes))],
            comps=comps,
        )
        kernels.run([job], threads)
        s32 = cast_scalars(s, np.float32)

        def rule(p: np.ndarray, g: np.ndarray, st: dict, s32: Any = s32) -> None:
            spec.reference_update(np, p, g, st, s32)

        for i, g in enumerate(grads):
            with np.errstate(all="ignore"):
                new_p, new_state = lb.update(
                    rule,
                    raw(expected[i]).copy(),
                    raw(g),
                    {k: raw(v) for k, v in expected_states[i].items()},
                    fmt,
                    param_dtype=pdtype,
                    slots=slots,
                    key=(step, ids_from + i),
                )
            expected[i] = tensor(new_p, tdtype)
            expected_states[i] = {k: tensor(new_state[k], v.dtype) for k, v in expected_states[i].items()}
    return params, states, expected, expected_states
