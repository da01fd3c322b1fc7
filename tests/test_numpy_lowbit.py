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


@pytest.mark.skipif(not kernels.available()[0], reason=kernels.available()[1])
@pytest.mark.parametrize("state_dtype", ["bfloat16", "blockwise8"])
def test_the_steady_state_skips_the_per_array_checks_and_gives_the_same_bits(
    state_dtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From the second step every array is there: the step is one kernel call that checks its arrays itself, with
    the bits of the general path (which a backend="reference" run takes on every step)."""
    from descend.engine import lowbit_step

    calls = []
    general = lowbit_step.prepare
    monkeypatch.setattr(lowbit_step, "prepare", lambda *a: calls.append(1) or general(*a))
    fast, slow = _params(), _params()
    opt = descend.Adam(fast, lr=1e-2, amsgrad=True, state_dtype=state_dtype)
    ref = descend.Adam(slow, lr=1e-2, amsgrad=True, state_dtype=state_dtype, backend="reference")
    for step in range(1, 5):
        calls.clear()
        opt.step(_grads(step))
        assert len(calls) == (1 if step == 1 else 0), step  # the first step creates the state
        ref.step(_grads(step))
    for i, (a, b) in enumerate(zip(fast, slow)):
        assert np.array_equal(a.view(np.uint32), b.view(np.uint32)), i
        for key, value in ref.state[i].items():
            assert np.array_equal(np.asarray(value), np.asarray(opt.state[i][key])), key


@pytest.mark.skipif(not kernels.available()[0], reason=kernels.available()[1])
@pytest.mark.parametrize(
    ("key", "bad", "match"),
    [
        (
            "exp_avg",
            lambda a: a.astype(np.float32),
            r"'exp_avg' of parameter 1 has .*dtype float32; the state format keeps uint8",
        ),
        ("exp_avg", lambda a: a[:-1], r"the state 'exp_avg' of parameter 1 has .*; the state format keeps"),
        ("exp_avg_scale", lambda a: a[:1], r"'exp_avg_scale' of parameter 1 has .*one float32 scale per block"),
    ],
    ids=["storage", "size", "scales"],
)
def test_a_state_array_changed_between_steps_is_refused_in_the_general_paths_words(key, bad, match) -> None:
    params = _params()
    opt = descend.Adam(params, lr=1e-2, state_dtype="blockwise8")
    opt.step(_grads(1))
    opt.state[1][key] = bad(opt.state[1][key])
    before = [p.copy() for p in params]
    kept = {k: np.copy(v) for k, v in opt.state[0].items()}
    with pytest.raises(ValueError, match=match):
        opt.step(_grads(2))
    assert all(np.array_equal(a, b) for a, b in zip(params, before))
    assert all(np.array_equal(np.asarray(opt.state[0][k]), v) for k, v in kept.items())


@pytest.mark.skipif(not kernels.available()[0], reason=kernels.available()[1])
def test_a_gradient_that_is_a_state_array_is_read_before_it_is_written() -> None:
    """A gradient sharing memory with an array the step writes: the kernel refuses the steady-state call, and the
    general path reads the gradient from a copy, as the reference does."""
    a, b = _params(), _params()
    opts = [descend.Adam(p, lr=1e-2, state_dtype="bfloat16", backend=bk) for p, bk in ((a, "auto"), (b, "reference"))]
    for opt in opts:
        opt.step(_grads(1))
    for opt, params in zip(opts, (a, b)):
        grads = _grads(2)
        grads[2] = params[2]  # the parameter itself as its gradient
        opt.step(grads)
    assert all(np.array_equal(x.view(np.uint32), y.view(np.uint32)) for x, y in zip(a, b))


@pytest.mark.parametrize("state_dtype", [None, "bfloat16", "blockwise8"])
@pytest.mark.parametrize(
    ("key", "change"),
    [
        ("exp_avg", lambda a: a.reshape(-1)),
        ("exp_avg", lambda a: a.reshape(a.shape[1], a.shape[0])),
        ("exp_avg", lambda a: a.reshape(*a.shape, 1)),
        ("exp_avg_scale", lambda a: a.reshape(1, -1)),
    ],
    ids=["flattened", "transposed-shape", "3-d", "2-d-scales"],
)
def test_a_state_array_of_another_shape_is_refused_as_the_reference_refuses_it(state_dtype, key, change) -> None:
    """The same element count in another shape: the steady-state kernel call refuses it as the general path does
    (with the general path's words), and nothing changes."""
    if key.endswith("_scale") and state_dtype != "blockwise8":
        pytest.skip("only the 8-bit format keeps scales")
    errors = []
    for backend in ("auto", "reference"):
        rng = np.random.default_rng(0)
        p = rng.standard_normal((4, 64)).astype(np.float32)
        opt = descend.Adam([p], lr=1e-2, state_dtype=state_dtype, backend=backend)
        for _ in range(2):
            opt.step([rng.standard_normal((4, 64)).astype(np.float32)])
        opt.state[0][key] = change(opt.state[0][key])
        before = [p.copy(), *(np.array(v, copy=True) for v in opt.state[0].values())]
        with pytest.raises(ValueError) as raised:
            opt.step([rng.standard_normal((4, 64)).astype(np.float32)])
        after = [p, *(np.asarray(v) for v in opt.state[0].values())]
        assert all(np.array_equal(a, b) for a, b in zip(before, after))
        errors.append(str(raised.value))
    assert errors[0] == errors[1]
