"""bfloat16 and float16 storage: the kernel loads into float32, runs the update there and rounds to nearest even on
store. It must equal, bit for bit, the NumPy reference run through the same casts (upcast to float32, one reference
step, round each stored array). Tensors come from torch, passed to the kernel by address."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from descend import kernels
from descend.algorithms import registry
from descend.algorithms._spec import cast_scalars
from tests.test_kernels_strategies import NAMES, STRATEGIES, make_hp

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not kernels.available()[0], reason=kernels.available()[1])

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def _f32(t: torch.Tensor) -> np.ndarray:
    return t.float().numpy().copy()


def _store(x: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(dtype)  # round to nearest even


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-identical, except that any NaN equals any NaN: the kernel stores NaN as the quiet NaN of c10's scalar
    conversion (bfloat16 0x7FC0, float16 0x7E00 with the sign), while torch's vectorised conversions store 0xFFFF
    (bfloat16) or keep part of the payload (float16)."""
    nan_a, nan_b = torch.isnan(a), torch.isnan(b)
    if not torch.equal(nan_a, nan_b):
        return False
    bits = torch.int32 if a.dtype == torch.float32 else torch.int16
    return torch.equal(a[~nan_a].view(bits), b[~nan_b].view(bits))


def _run(name: str, kwargs: dict, dtype: str, state_dtype: str, sizes: list[int], steps: int, seed: int) -> None:
    spec = registry.get(name)
    hp = make_hp(name, kwargs)
    tdtype, tstate = DTYPES[dtype], (torch.float32 if state_dtype == "float32" else DTYPES[dtype])
    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(n, generator=gen).to(tdtype) for n in sizes]
    expected = [p.clone() for p in params]
    states = [{k: torch.from_numpy(v).to(tstate) for k, v in spec.init_state(np, _f32(p), hp).items()} for p in params]
    expected_states = [{k: v.clone() for k, v in s.items()} for s in states]
    host = spec.host_slots(hp)
    for step in range(1, steps + 1):
        grads = [torch.randn(n, generator=gen).to(tdtype) for n in sizes]
        host = spec.advance_host(hp, step, host)
        s = spec.step_scalars(hp, step, host, step == 1, shape=tuple(params[0].shape), dtype=dtype)
        kernels.step(
            name,
            s,
            [p.data_ptr() for p in params],
            [g.data_ptr() for g in grads],
            {k: [st[k].data_ptr() for st in states] for k in spec.slots_for(hp, (1,))},
            dtype=dtype,
            state_dtype=state_dtype,
            sizes=sizes,
            shapes=[(n,) for n in sizes] if kernels.shaped(name) else None,
        )
        s32 = cast_scalars(s, np.float32)
        for i, g in enumerate(grads):
            p32, st32 = _f32(expected[i]), {k: _f32(v) for k, v in expected_states[i].items()}
            with np.errstate(all="ignore"):
                spec.reference_update(np, p32, _f32(g), st32, s32)
            expected[i] = _store(p32, tdtype)
            expected_states[i] = {k: _store(v, tstate) for k, v in st32.items()}
    for i in range(len(sizes)):
        assert _same(params[i], expected[i]), f"{name} param {i}"
        for k, v in states[i].items():
            assert _same(v, expected_states[i][k]), f"{name} state {k!r} of param {i}"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    ("dtype", "state_dtype"),
    [("bfloat16", "bfloat16"), ("bfloat16", "float32"), ("float16", "float16"), ("float16", "float32")],
)
@settings(max_examples=10, deadline=None)
@given(
    data=st.data(),
    sizes=st.lists(st.integers(0, 5000), min_size=1, max_size=3),
    steps=st.integers(1, 5),
    seed=st.integers(0, 2**31 - 1),
)
def test_half_storage_matches_the_cast_reference(
    name: str, dtype: str, state_dtype: str, data: st.DataObject, sizes: list[int], steps: int, seed: int
) -> None:
    _run(name, data.draw(STRATEGIES[name]), dtype, state_dtype, sizes, steps, seed)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_storage_over_a_million(dtype: str) -> None:
    _run("adam", {"weight_decay": 0.01, "amsgrad": True}, dtype, dtype, [1_048_583, 0, 7], 3, 0)


def test_rounding_is_to_nearest_even() -> None:
    """Values exactly between two bfloat16/float16 neighbours, subnormals and overflow, through an SGD step of zero."""
    values = np.array(
        [
            1.0 + 2.0**-8,
            1.0 + 3 * 2.0**-8,
            1.0 + 2.0**-11,
            1.0 + 3 * 2.0**-11,
            65520.0,
            70000.0,
            2.0**-24,
            3 * 2.0**-25,
            1e-30,
            -2.5,
            3.0e38,
            np.inf,
            -np.inf,
        ],
        dtype=np.float32,
    )
    for dtype, tdtype in DTYPES.items():
        p = torch.zeros(len(values), dtype=tdtype)
        g = torch.zeros(len(values), dtype=tdtype)
        buf = torch.from_numpy(values.copy())  # float32 state: the buffer takes the gradient, the param the step
        hp = registry.get("sgd").make(lr=1.0, momentum=0.5)
        s = registry.get("sgd").scalars(hp, 2)
        kernels.step(
            "sgd",
            s,
            [p.data_ptr()],
            [g.data_ptr()],
            {"momentum_buffer": [buf.data_ptr()]},
            dtype=dtype,
            state_dtype="float32",
            sizes=[len(values)],
        )
        expected = torch.from_numpy(-(values * np.float32(0.5))).to(tdtype)
        assert torch.equal(p.view(torch.int16), expected.view(torch.int16)), dtype
        nan = torch.full((2,), float("nan"), dtype=torch.float32)
        nan[1] = -nan[1]
        q, zero = torch.zeros(2, dtype=tdtype), torch.zeros(2, dtype=tdtype)  # both alive while the kernel runs
        kernels.step(
            "sgd",
            s,
            [q.data_ptr()],
            [zero.data_ptr()],
            {"momentum_buffer": [nan.data_ptr()]},
            dtype=dtype,
            state_dtype="float32",
            sizes=[2],
        )
        bits = q.view(torch.int16).numpy().view(np.uint16)
        if dtype == "bfloat16":
            assert (bits == 0x7FC0).all(), bits
        else:
            assert ((bits & 0x7FFF) == 0x7E00).all(), bits
