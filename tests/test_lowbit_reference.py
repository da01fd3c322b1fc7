"""The reference of low-bit storage (descend.lowbit) on its own: rounding to bfloat16 and to the 8-bit format, the
stochastic rounding's probabilities, the random stream, and Kahan compensation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from descend import lowbit as lb

EVERY_16_BITS = np.arange(1 << 16, dtype=np.uint32)


def test_bfloat16_to_nearest_is_torchs_rounding() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [
            rng.standard_normal(100_000).astype(np.float32) * np.float32(1e3),
            np.float32([0.0, -0.0, 1.0 + 2**-8, 1.0 + 3 * 2**-8, 3.0e38, np.inf, -np.inf, 1e-40, -1e-45]),
        ]
    )
    ours = lb.bf16_round(x)
    theirs = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    assert np.array_equal(ours, theirs)
    assert lb.bf16_round(np.float32([np.nan]))[0] == 0x7FC0
    assert np.array_equal(lb.bf16_value(ours), torch.from_numpy(theirs.view(np.int16)).view(torch.bfloat16).float())


@settings(max_examples=200, deadline=None)
@given(x=st.floats(width=32, allow_nan=False, allow_infinity=False).filter(lambda v: abs(v) < 3e38))
def test_bfloat16_stochastic_rounding_goes_up_with_probability_equal_to_the_distance(x: float) -> None:
    """Over every one of the 2**16 random values, a value rounds up exactly as often as its 16 low bits say."""
    value = np.full(1 << 16, np.float32(x))
    rounded = lb.bf16_round(value, EVERY_16_BITS)
    down = lb.bf16_round(np.float32([x]), np.zeros(1, np.uint32))[0]
    low = int(np.float32(x).view(np.uint32)) & 0xFFFF
    assert set(np.unique(rounded)) <= {down, np.uint16(down + 1)}
    assert int(np.count_nonzero(rounded != down)) == low


def test_the_stream_does_not_depend_on_how_it_is_cut() -> None:
    words = lb.stream_words(5, 9, 2, 10_000, 0)
    assert np.array_equal(lb.stream_words(5, 9, 2, 4_000, 0), words[:4_000])
    others = [
        lb.stream_words(6, 9, 2, 10_000, 0),
        lb.stream_words(5, 10, 2, 10_000, 0),
        lb.stream_words(5, 9, 3, 10_000, 0),
        lb.stream_words(5, 9, 2, 10_000, 1),
    ]
    for other in others:
        assert np.count_nonzero(other == words) < 10  # independent keys: about 10_000 / 2**32 equal by chance
    bits = np.unpackbits(words.view(np.uint8)).reshape(-1, 32).mean(axis=0)
    assert np.all(np.abs(bits - 0.5) < 0.03), bits  # every bit about half the time
    assert lb.stream_key(1, 2, 3, 0, 0) != lb.stream_key(1, 2, 3, 1, 0)


def _q8(x: np.ndarray, nonneg: bool, random16: np.ndarray | None = None) -> np.ndarray:
    codes, scales = lb.q8_encode(x, nonneg, random16)
    return lb.q8_decode(codes, scales, nonneg)


@pytest.mark.parametrize("nonneg", [False, True])
def test_eight_bit_rounding_to_nearest_keeps_three_mantissa_bits(nonneg: bool) -> None:
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(1 << 15) * np.exp(rng.uniform(-4, 4, 1 << 15))).astype(np.float32)
    if nonneg:
        x = np.abs(x)
    y = _q8(x, nonneg)
    codes, scales = lb.q8_encode(x, nonneg)
    assert np.all(np.frexp(scales)[0] == 0.5)  # powers of two
    blockmax = np.abs(x).reshape(-1, lb.Q8_BLOCK).max(axis=1)
    assert np.all(scales <= blockmax) and np.all(blockmax < 2 * scales)
    floor = np.repeat(scales, lb.Q8_BLOCK) * np.float32(2.0 ** (-14 if not nonneg else -30))
    normal = np.abs(x) >= floor
    rel = np.abs(y[normal] - x[normal]) / np.abs(x[normal])
    assert rel.max() <= 2.0**-4  # half a step of 3 mantissa bits
    assert np.all(np.sign(y[y != 0]) == np.sign(x[y != 0]))
    assert np.array_equal(_q8(y, nonneg), y)  # what it stores, it stores again unchanged
    order = np.argsort(x[: lb.Q8_BLOCK], kind="stable")
    assert np.all(np.diff(y[: lb.Q8_BLOCK][order]) >= 0)  # monotonic within a block


@pytest.mark.parametrize("nonneg", [False, True])
def test_eight_bit_stochastic_rounding_is_unbiased(nonneg: bool) -> None:
    """A value between two codes rounds up on a share of the 2**16 random values equal to its distance from the
    code below, to within the 1/2**16 the random bits resolve."""
    block = np.full(1 << 16, np.float32(0.3))
    block[::256] = 1.0  # the block's largest magnitude, so the scale is 1
    y = _q8(block, nonneg, EVERY_16_BITS)
    rest = np.delete(y, np.s_[::256])
    lo, hi = np.float32(0.28125), np.float32(0.3125)  # the codes around 0.3 (3 mantissa bits)
    assert set(np.unique(rest)) == {lo, hi}
    assert abs(rest.mean() - 0.3) < 2e-5


def test_eight_bit_special_values() -> None:
    x = np.ones(3 * lb.Q8_BLOCK, np.float32)
    x[5] = np.nan
    x[lb.Q8_BLOCK + 3] = -2.0
    codes, scales = lb.q8_encode(x, nonneg=True)
    y = lb.q8_decode(codes, scales, nonneg=True)
    assert np.isnan(y[: lb.Q8_BLOCK]).all() and np.isnan(scales[0])  # a block holding NaN reads back as NaN
    assert y[lb.Q8_BLOCK + 3] == 0  # a negative value in the unsigned map is 0
    assert np.array_equal(y[2 * lb.Q8_BLOCK :], x[2 * lb.Q8_BLOCK :])
    zeros = lb.q8_encode(np.zeros(10, np.float32), nonneg=False)
    assert not zeros[0].any() and lb.q8_decode(*zeros, nonneg=False).tolist() == [0.0] * 10
    tiny = np.float32([1e-38, 3e-39, -1e-45])  # a block below the smallest normal float32 scale
    assert abs(_q8(tiny, False)[0] - tiny[0]) <= tiny[0] / 16


def test_kahan_compensation_keeps_what_bfloat16_rounding_loses() -> None:
    """10,000 updates of 1e-4 to a bfloat16 weight of 1.0 (each below half its spacing of 2**-7): rounded to
    nearest the weight never moves; compensated it ends within 2% of where float32 arithmetic does (the buffer is
    bfloat16 too, and rounds what it keeps)."""
    p_near = p_kahan = np.float32([1.0])
    comp = np.float32([0.0])
    for _ in range(10_000):
        p_near = lb.bf16_value(lb.bf16_round(p_near + np.float32(1e-4)))
        p_kahan, comp = lb.kahan_store(p_kahan, p_kahan + np.float32(1e-4), comp, "bfloat16")
    assert p_near[0] == 1.0
    assert abs(float(p_kahan[0] + comp[0]) - 2.0) < 0.04


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dtype": "float16"}, "dtype must be one of"),
        ({"seed": -1}, r"seed must be an int in \[0, 2\*\*64\)"),
        ({"params": "round"}, "params must be one of"),
        ({"stochastic_rounding": 1}, "stochastic_rounding must be True or False"),
    ],
)
def test_a_bad_format_is_refused(kwargs: dict, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        lb.StateFormat(**kwargs)
