"""Low-bit storage in the fused kernels: for every algorithm, format and param dtype, params and every stored array
(bfloat16 bits, 8-bit codes and scales, Kahan buffers) are bit-identical to descend.lowbit.update, the reference, and
do not depend on the number of threads or on where chunks fall."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from descend import kernels
from descend import lowbit as lb
from descend.algorithms import registry
from descend.kernels._layout import KERNELS
from tests.test_kernels_strategies import NAMES, STRATEGIES, make_hp

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not kernels.available()[0], reason=kernels.available()[1])

from tests.lowbit_runner import bits_equal, run  # noqa: E402


@st.composite
def formats(draw: st.DrawFn) -> tuple[str, lb.StateFormat]:
    """A param dtype and a state format that applies to it."""
    pdtype = draw(st.sampled_from(["float32", "float32", "bfloat16", "float16"]))
    modes = {"float32": ["nearest"], "bfloat16": ["nearest", "stochastic", "kahan"], "float16": ["nearest", "kahan"]}
    fmt = lb.StateFormat(
        dtype=draw(st.sampled_from(["bfloat16", "blockwise8", "float32"])),
        stochastic_rounding=draw(st.booleans()),
        seed=draw(st.integers(0, 2**64 - 1)),
        params=draw(st.sampled_from(modes[pdtype])),
    )
    return pdtype, fmt


# A shaped kernel (Adafactor's, whose rule reduces over whole tensors) keeps no low-bit state: it is refused below.
LOWBIT_NAMES = tuple(name for name in NAMES if not KERNELS[name].shaped)


def _check(kernel_params: list, kernel_state: list, expected: list, expected_state: list, what: str) -> None:
    for i, (p, e) in enumerate(zip(kernel_params, expected)):
        assert bits_equal(p, e), f"{what}: param {i}"
        for key, value in kernel_state[i].items():
            assert bits_equal(value, expected_state[i][key]), f"{what}: state {key!r} of param {i}"


@pytest.mark.parametrize("name", LOWBIT_NAMES)
@settings(max_examples=12, deadline=None)
@given(
    data=st.data(),
    case=formats(),
    sizes=st.lists(st.integers(0, 3000) | st.integers(30_000, 70_000), min_size=1, max_size=3),
    steps=st.integers(1, 4),
    seed=st.integers(0, 2**31 - 1),
)
def test_fused_equals_the_reference(
    name: str, data: st.DataObject, case: tuple, sizes: list[int], steps: int, seed: int
) -> None:
    pdtype, fmt = case
    kwargs = data.draw(STRATEGIES[name])
    make_hp(name, kwargs)  # discards combinations the spec refuses
    params, state, expected, expected_state = run(name, kwargs, pdtype, fmt, sizes, steps, seed)
    _check(params, state, expected, expected_state, f"{name} {kwargs} {pdtype} {fmt}")


def test_nan_meets_nan_in_the_same_places() -> None:
    # lr = alpha = eps = 0 makes every value NaN within three steps: the NaNs stand in the same places in the kernel
    # and the reference, and every state slot matches bit for bit (which NaN an addition of two NaNs returns is the
    # compiler's choice, see bits_equal)
    hp = {
        "lr": 0.0,
        "alpha": 0.0,
        "eps": 0.0,
        "weight_decay": 0.0,
        "momentum": 0.5,
        "centered": True,
        "maximize": False,
        "eps_root": 0.0,
    }
    fmt = lb.StateFormat("bfloat16", stochastic_rounding=False)
    kernel_params, kernel_state, expected, expected_state = run("rmsprop", hp, "float32", fmt, [2], 3, 0)
    assert bool(kernel_params[0].isnan().all())
    _check(kernel_params, kernel_state, expected, expected_state, "all NaN")


@pytest.mark.parametrize("fmt", [lb.StateFormat("bfloat16"), lb.StateFormat("blockwise8")], ids=str)
def test_threads_and_chunks_do_not_change_the_bits(fmt: lb.StateFormat) -> None:
    """Tensors whose chunk boundaries fall inside 8-bit blocks, with one thread and with every thread."""
    sizes = [40_000, 33_001, 100_003, 257, 0, 70_000]
    one = run("adam", {"amsgrad": True, "weight_decay": 0.1}, "float32", fmt, sizes, 3, 11, threads=1)
    every = run("adam", {"amsgrad": True, "weight_decay": 0.1}, "float32", fmt, sizes, 3, 11, threads=0)
    _check(one[0], one[1], one[2], one[3], f"one thread {fmt}")
    _check(every[0], every[1], one[0], one[1], f"threads {fmt}")


@pytest.mark.parametrize("isa", kernels._supported_isas())
def test_every_8bit_code_decodes_as_the_reference(isa: str) -> None:
    """Both moments start as every code under scales from the smallest normal power of two to the largest (and a
    block whose scale is NaN), so each code of both maps, subnormals and the unsigned map's top binade included, is
    decoded by the kernel and by the reference; one Adam step carries the decoded values into params and state."""
    scales = np.array([1.0, 2.0**-126, 2.0**127, 2.0**-100, 2.0**-9, np.nan], dtype=np.float32)
    codes = np.tile(np.arange(256, dtype=np.uint8), scales.size)
    rng = np.random.default_rng(3)

    def start(name: str, hp: object, n: int) -> dict:
        # the second tensor's codes are shuffled, so a code meets others than its neighbours in a vector
        c = codes if n == codes.size else rng.permutation(codes)[:n]
        out = {}
        for key in ("exp_avg", "exp_avg_sq"):
            out[key] = torch.from_numpy(c.copy())
            out[key + lb.SCALE_SUFFIX] = torch.from_numpy(scales[: -(-n // lb.Q8_BLOCK)].copy())
        return out

    before = kernels.isa()
    kernels._set_isa(isa)
    try:
        for sr in (False, True):
            fmt = lb.StateFormat("blockwise8", stochastic_rounding=sr)
            out = run("adam", {"lr": 0.5}, "float32", fmt, [codes.size, codes.size - 77], 1, 9, start=start)
            _check(*out, f"{isa} {fmt}")
    finally:
        kernels._set_isa(before)


@pytest.mark.parametrize("isa", kernels._supported_isas())
@pytest.mark.parametrize("pdtype", ["float32", "bfloat16", "float16"])
def test_every_instruction_set(isa: str, pdtype: str) -> None:
    before = kernels.isa()
    kernels._set_isa(isa)
    try:
        for dtype in ("bfloat16", "blockwise8"):
            fmt = lb.StateFormat(dtype, params="kahan" if pdtype != "float32" else "nearest")
            out = run("adamw", {"weight_decay": 0.1}, pdtype, fmt, [5000, 31, 1024], 3, 5)
            _check(*out, f"{isa} {pdtype} {fmt}")
    finally:
        kernels._set_isa(before)


def test_the_seed_the_step_and_the_parameter_key_the_stream() -> None:
    """The same update with another seed, or for another parameter number, rounds differently; with the same
    ones, identically."""
    fmt = lb.StateFormat("bfloat16")
    base = run("adam", {}, "float32", fmt, [20_000], 2, 3)
    again = run("adam", {}, "float32", fmt, [20_000], 2, 3)
    reseeded = run("adam", {}, "float32", lb.StateFormat("bfloat16", seed=1), [20_000], 2, 3)
    moved = run("adam", {}, "float32", fmt, [20_000], 2, 3, ids_from=7)
    assert bits_equal(base[1][0]["exp_avg"], again[1][0]["exp_avg"])
    assert not bits_equal(base[1][0]["exp_avg"], reseeded[1][0]["exp_avg"])
    assert not bits_equal(base[1][0]["exp_avg"], moved[1][0]["exp_avg"])


def test_refusals_name_what_is_wrong() -> None:
    spec = registry.get("adam")
    scalars = spec.scalars(spec.make(), 1, {}, True)
    p, g = torch.zeros(4), torch.ones(4)
    codes = [torch.zeros(4, dtype=torch.uint8) for _ in range(2)]

    def job(dtype: str, fmt: lb.StateFormat, state: dict | None = None) -> tuple:
        return kernels.job(
            "adam", scalars, [p.data_ptr()], [g.data_ptr()], state or {}, dtype=dtype, sizes=[4], fmt=fmt
        )

    with pytest.raises(ValueError, match="applies to 16-bit params"):
        job("float32", lb.StateFormat(params="kahan"))
    with pytest.raises(ValueError, match="applies to bfloat16 params, not float16"):
        job("float16", lb.StateFormat(params="stochastic"))
    with pytest.raises(ValueError, match="float32, bfloat16 and float16 params, not float64"):
        job("float64", lb.StateFormat())
    unscaled = job(
        "float32",
        lb.StateFormat("blockwise8"),
        {k: [c.data_ptr()] for k, c in zip(spec.state_slots(spec.make()), codes)},
    )
    with pytest.raises(ValueError, match="state slot 0 needs scales"):
        kernels.run([unscaled])
    assert torch.equal(p, torch.zeros(4))


def test_a_shaped_kernel_keeps_no_low_bit_state() -> None:
    spec = registry.get("adafactor")
    scalars = spec.step_scalars(spec.make(), 1, {}, True, shape=(5, 3), dtype="float32")
    p, g = torch.zeros(5, 3), torch.ones(5, 3)
    row, col = torch.zeros(5), torch.zeros(3)
    states = {"row_var": [row.data_ptr()], "col_var": [col.data_ptr()]}
    with pytest.raises(ValueError, match="adafactor keeps no low-bit state"):
        kernels.job(
            "adafactor",
            scalars,
            [p.data_ptr()],
            [g.data_ptr()],
            states,
            dtype="float32",
            sizes=[15],
            fmt=lb.StateFormat("bfloat16"),
        )
    plain = kernels.job(
        "adafactor", scalars, [p.data_ptr()], [g.data_ptr()], states, dtype="float32", sizes=[15], shapes=[(5, 3)]
    )
    lowbit = (1, 0, 0, 0, 0, 1, [0], None, None)  # bfloat16 state, as kernels.job would give it to an elementwise body
    with pytest.raises(ValueError, match="updates whole tensors: it keeps no low-bit state"):
        kernels.run([(*plain[:8], lowbit, plain[9])])
    assert not p.any() and not row.any() and not col.any()
    kernels.run([plain])
    assert p.all() and row.all() and col.all()
