"""Low-bit state on the NumPy front: NumPy has no bfloat16, so ``state_dtype="bfloat16"`` keeps each slot's bfloat16
bits in a uint16 array, and ``"blockwise8"`` keeps uint8 codes and float32 scales. The optimizer equals the
reference, and a checkpoint (descend.save / descend.load) resumes bit-exactly."""

from __future__ import annotations

import numpy as np
import pytest

import descend
from descend import kernels
from descend import lowbit as lb
from descend.algorithms._spec import cast_scalars
from descend.kernels._layout import KERNELS


def _params() -> list[np.ndarray]:
    rng = np.random.default_rng(4)
    return [rng.standard_normal(s).astype(np.float32) for s in [(300, 9), (1000,), (3,)]]


def _grads(step: int) -> list[np.ndarray]:
    rng = np.random.default_rng(50 + step)
    return [(rng.standard_normal(s) * 1e-2).astype(np.float32) for s in [(300, 9), (1000,), (3,)]]


def _reference(name: str, kwargs: dict, fmt: lb.StateFormat, steps: int) -> tuple[list, list]:
    spec = descend.REGISTRY[name]
    hp = spec.make(**kwargs)
    layout = KERNELS[name]
    slots = [(k, layout.slot_names.index(k), k in layout.nonneg) for k in spec.state_slots(hp)]
    params = [p.reshape(-1) for p in _params()]
    states = []
    for p in params:
        init = spec.init_state(np, np.zeros_like(p), hp)
        st = {}
        for k, _, nonneg in slots:
            if fmt.dtype == "bfloat16":
                st[k] = lb.bf16_round(init[k])
            else:
                st[k], st[k + "_scale"] = lb.q8_encode(init[k], nonneg)
        states.append(st)
    for step in range(1, steps + 1):
        s32 = cast_scalars(spec.scalars(hp, step, {}, step == 1), np.float32)
        for i, g in enumerate(_grads(step)):

            def rule(p: np.ndarray, g: np.ndarray, st: dict, s32: object = s32) -> None:
                spec.reference_update(np, p, g, st, s32)

            params[i], states[i] = lb.update(
                rule, params[i], g.reshape(-1), states[i], fmt, param_dtype="float32", slots=slots, key=(step, i)
            )
    return params, states


@pytest.mark.parametrize("state_dtype", ["bfloat16", "blockwise8"])
@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_the_numpy_front_follows_the_reference(state_dtype: str, backend: str) -> None:
    if backend == "auto" and not kernels.available()[0]:
        pytest.skip(kernels.available()[1])
    params = _params()
    opt = descend.Adam(params, lr=1e-2, amsgrad=True, state_dtype=state_dtype, backend=backend)
    for step in range(1, 5):
        opt.step(_grads(step))
    expected, states = _reference("adam", {"lr": 1e-2, "amsgrad": True}, opt.state_dtype, 4)
    storage = np.uint16 if state_dtype == "bfloat16" else np.uint8
    for i, p in enumerate(params):
        assert np.array_equal(p.reshape(-1).view(np.uint32), expected[i].view(np.uint32)), f"param {i}"
        assert opt.state[i]["exp_avg"].dtype == storage and opt.state[i]["step"] == 4
        for key, value in states[i].items():
            assert np.array_equal(opt.state[i][key].reshape(-1), value), f"state {key!r} of param {i}"


@pytest.mark.parametrize("state_dtype", ["bfloat16", descend.StateFormat("blockwise8", seed=77)])
def test_a_checkpoint_resumes_bit_exactly(tmp_path: object, state_dtype: object) -> None:
    straight = _params()
    reference = descend.AdamW(straight, lr=1e-2, state_dtype=state_dtype)
    for step in range(1, 7):
        reference.step(_grads(step))

    first = _params()
    opt = descend.AdamW(first, lr=1e-2, state_dtype=state_dtype)
    for step in range(1, 4):
        opt.step(_grads(step))
    path = descend.save(tmp_path / "ckpt.npz", opt)  # type: ignore[operator]
    resumed = [np.zeros_like(p) for p in first]
    again = descend.AdamW(resumed, lr=1e-2, state_dtype=descend.StateFormat(opt.state_dtype.dtype, seed=1))
    descend.load(path, again)
    assert again.state_dtype == opt.state_dtype
    for step in range(4, 7):
        again.step(_grads(step))
    for i, (a, b) in enumerate(zip(straight, resumed)):
        assert np.array_equal(a, b)
        for key, value in reference.state[i].items():
            assert np.array_equal(np.asarray(value), np.asarray(again.state[i][key])), key


def test_float32_state_converts_and_bad_values_are_refused() -> None:
    params = _params()
    full = descend.Adam(params)
    full.step(_grads(1))
    low = descend.Adam(params, state_dtype="bfloat16")
    low.load_state_dict(full.state_dict())
    assert np.array_equal(low.state[0]["exp_avg"], lb.bf16_round(full.state[0]["exp_avg"]))
    with pytest.raises(ValueError, match="state_dtype must be None .* 'bfloat16', 'blockwise8' or a descend.State"):
        descend.Adam(params, state_dtype="float16")


@pytest.mark.skipif(not kernels.available()[0], reason=kernels.available()[1])
def test_the_benchmark_gives_format_rows_only_to_algorithms_that_take_a_format() -> None:
    from descend import bench_lowbit

    params = [np.zeros((8, 6), np.float32)]
    grads = [np.ones((8, 6), np.float32)]
    rows = {
        name: sorted(bench_lowbit.contestants(name, params, grads, None, ("descend",), ("float32", "bfloat16")))
        for name in ("adam", "adafactor", "muon")
    }
    assert rows == {"adam": ["descend (NumPy) [bfloat16]"], "adafactor": [], "muon": []}
