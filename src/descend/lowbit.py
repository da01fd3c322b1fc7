"""Low-precision optimizer state: the formats, the random stream and the rounding, written once in NumPy.

This module is the reference the fused kernels restate (``kernels/lowbit.h``, ``kernels/lowbit_impl.h``); the tests
hold them equal bit for bit. The update itself is always computed in float32: the state is decoded before the
algorithm's ``reference_update`` runs and encoded after it.

**bfloat16 state** keeps each slot as bfloat16 bits (a ``uint16`` array on the NumPy front, a ``torch.bfloat16``
tensor on the torch front). Rounding to it is to nearest even or, by default, stochastic: a value rounds up with
probability equal to its distance from the bfloat16 below it, so a small decay (Adam's ``v * 0.999``) is kept on
average instead of being lost to rounding.

**8-bit blockwise state** keeps, for each block of :data:`Q8_BLOCK` elements, a float32 scale (the power of two at or
below the block's largest magnitude) and one byte per element: the element divided by the scale, which is exact, as a
small float with 3 mantissa bits. A slot that can be negative gets a sign bit and 4 exponent bits (magnitudes 2^-17 to
1.875 of the scale); a slot that cannot (a second moment) gets 5 exponent bits and no sign (2^-33 to 1.875). The codes
are monotonic in the value, so rounding is the same bit trick as for bfloat16. A block holding NaN or an infinity
stores the scale NaN, and every element of it reads back as NaN.

**The stream** gives 16 random bits to each stochastic store, keyed by (seed, step, parameter, element index), so the
bits do not depend on the number of threads or on how the work is cut. Word ``w`` of element ``i`` is
``lowbias32(low32(i) + key)``, where ``key = stream_key(seed, step, parameter, high32(i), w)`` mixes the rest with
splitmix64's finaliser. State slot ``s`` (its position in the kernel's slot order) takes word ``s // 2``, the low
16 bits for even ``s`` and the high 16 bits for odd ``s``; a stochastically rounded bfloat16 parameter takes the high
16 bits of word 1.

**16-bit parameters** are rounded to nearest even by default, as today. ``params="stochastic"`` rounds bfloat16 params
stochastically; ``params="kahan"`` keeps a compensation buffer ``kahan_comp`` of the param's dtype holding what
rounding the param lost, added back on the next step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "DTYPES",
    "PARAM_MODES",
    "Q8_BLOCK",
    "StateFormat",
    "bf16_round",
    "bf16_value",
    "kahan_store",
    "q8_decode",
    "q8_encode",
    "stream_key",
    "stream_words",
    "update",
]

Q8_BLOCK = 256
"""Elements per block of the 8-bit format."""

DTYPES = ("float32", "bfloat16", "blockwise8")
PARAM_MODES = ("nearest", "stochastic", "kahan")
SCALE_SUFFIX = "_scale"
KAHAN_KEY = "kahan_comp"
GROUP_KEY = "state_format"

_MASK64 = (1 << 64) - 1


@dataclasses.dataclass(frozen=True)
class StateFormat:
    """How an optimizer stores its state (``state_dtype=StateFormat(...)`` on either front).

    Args:
        dtype: ``"float32"``, ``"bfloat16"`` or ``"blockwise8"`` (8-bit codes and a float32 scale per block of 256).
        stochastic_rounding: whether stores to bfloat16 or 8-bit state round stochastically (default True: with
            rounding to nearest, a bfloat16 ``exp_avg_sq`` under ``beta2 = 0.999`` stops decaying, see the docs).
        seed: the random stream's seed; the stream is keyed by (seed, step, parameter, element index).
        params: how 16-bit parameters are stored: ``"nearest"`` (to nearest even, as without a format),
            ``"stochastic"`` (bfloat16 params only) or ``"kahan"`` (a compensation buffer ``kahan_comp``).
    """

    dtype: str = "bfloat16"
    stochastic_rounding: bool = True
    seed: int = 0
    params: str = "nearest"

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"StateFormat: dtype must be one of {', '.join(map(repr, DTYPES))}, got {self.dtype!r}")
        if not isinstance(self.stochastic_rounding, bool):
            raise TypeError(f"StateFormat: stochastic_rounding must be True or False, got {self.stochastic_rounding!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**64:
            raise ValueError(f"StateFormat: seed must be an int in [0, 2**64), got {self.seed!r}")
        if self.params not in PARAM_MODES:
            raise ValueError(
                f"StateFormat: params must be one of {', '.join(map(repr, PARAM_MODES))}, got {self.params!r}"
            )

    @property
    def streamed(self) -> bool:
        """Whether some store takes random bits, so the state keeps a step count for the stream's position."""
        rounded_state = self.dtype != "float32" and self.stochastic_rounding
        return rounded_state or self.params == "stochastic"


def format_record(fmt: StateFormat) -> dict:
    """The format as the param groups record it (``state_format``), so a state_dict carries it."""
    return dataclasses.asdict(fmt)


def saved_format(title: str, fmt: StateFormat | None, saved_groups: Sequence[Any]) -> StateFormat | None:
    """The format an optimizer keeping ``fmt`` runs with after loading param groups ``saved_groups``: its own, with
    the seed the groups record (so the stream goes on where it was).

    Raises:
        ValueError: the groups record a format other than ``fmt`` (a seed aside), or different formats.
    """
    recorded = [g.get(GROUP_KEY) for g in saved_groups if isinstance(g, Mapping) and g.get(GROUP_KEY) is not None]
    if not recorded:
        return fmt
    if any(r != recorded[0] for r in recorded):
        raise ValueError(f"the state_dict's param groups record different state formats: {recorded!r}")
    try:
        theirs = StateFormat(**recorded[0])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the state_dict records an invalid state format {recorded[0]!r}: {exc}") from None
    if fmt is None or dataclasses.replace(theirs, seed=fmt.seed) != fmt:
        mine = repr(fmt) if fmt is not None else "its state in each parameter's dtype"
        raise ValueError(
            f"the state_dict was saved with state_dtype={theirs!r}, but this {title} keeps {mine}; create it with "
            f"state_dtype={theirs!r}"
        )
    return theirs


# -- the stream ------------------------------------------------------------------------------------------------------


def _mix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def stream_key(seed: int, step: int, param: int, high: int, word: int) -> int:
    """The 32-bit key of word ``word`` for the elements of parameter ``param`` whose index has high half ``high``."""
    z = _mix64((seed ^ 0x9E3779B97F4A7C15) & _MASK64)
    z = _mix64(z ^ (step & _MASK64))
    z = _mix64(z ^ (param & _MASK64))
    z = _mix64(z ^ (((high << 1) | word) & _MASK64))
    return z & 0xFFFFFFFF


def _lowbias32(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x7FEB352D)
    x = x ^ (x >> np.uint32(15))
    x = x * np.uint32(0x846CA68B)
    return x ^ (x >> np.uint32(16))


def stream_words(seed: int, step: int, param: int, size: int, word: int) -> np.ndarray:
    """Word ``word`` of the stream for elements ``0 .. size - 1`` of a parameter, as uint32."""
    out = np.empty(size, dtype=np.uint32)
    for start in range(0, size, 1 << 32):
        n = min(size - start, 1 << 32)
        key = np.uint32(stream_key(seed, step, param, start >> 32, word))
        with np.errstate(over="ignore"):
            out[start : start + n] = _lowbias32(np.arange(n, dtype=np.uint32) + key)
    return out


def _bits16(words: np.ndarray, high: bool) -> np.ndarray:
    return (words >> np.uint32(16)) if high else (words & np.uint32(0xFFFF))


# -- bfloat16 ----------------------------------------------------------------------------------------------------------


def bf16_round(x: np.ndarray, random16: np.ndarray | None = None) -> np.ndarray:
    """float32 ``x`` as bfloat16 bits (uint16): to nearest even, or stochastically with ``random16`` (uint32 values
    below 2**16). NaN becomes 0x7FC0."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    with np.errstate(over="ignore"):
        added = u + (random16 if random16 is not None else np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1)))
    out = (added >> np.uint32(16)).astype(np.uint16)
    return np.where(np.isnan(x), np.uint16(0x7FC0), out)


def bf16_value(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bits (uint16) as float32, exactly."""
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


# -- the 8-bit blockwise format ----------------------------------------------------------------------------------------

# (offset of the normal codes, float32 bits of the smallest normal, largest magnitude code)
_SIGNED = (np.uint32((127 - 15) << 3), np.uint32((127 - 15 + 1) << 23), np.uint32(127))
_UNSIGNED = (np.uint32((127 - 31) << 3), np.uint32((127 - 31 + 1) << 23), np.uint32(255))


def _blocks(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64) // Q8_BLOCK


def q8_encode(x: np.ndarray, nonneg: bool, random16: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``x`` (flat) as 8-bit codes and per-block float32 scales; to nearest even, or stochastically with
    ``random16``. A slot that is never negative (``nonneg``) uses the unsigned map, where a negative value becomes 0."""
    x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    n = x.size
    nblocks = -(-n // Q8_BLOCK)
    bits = x.view(np.uint32)
    magnitude = bits & np.uint32(0x7FFFFFFF)
    padded = np.zeros(nblocks * Q8_BLOCK, dtype=np.uint32)
    padded[:n] = magnitude
    maxbits = padded.reshape(nblocks, Q8_BLOCK).max(axis=1, initial=0)
    bad = maxbits >= np.uint32(0x7F800000)
    e = np.maximum(maxbits >> np.uint32(23), np.uint32(1))
    scale = np.where(bad, np.uint32(0x7FC00000), e << np.uint32(23))
    inverse = np.where(e == 254, np.uint32(0x00400000), (np.uint32(254) - e) << np.uint32(23))
    inverse = np.where(bad, np.uint32(0), inverse)
    y = magnitude.view(np.float32) * inverse.view(np.float32)[_blocks(n)]
    off, min_normal, cmax = _UNSIGNED if nonneg else _SIGNED
    mn = min_normal.view(np.float32)
    sub = y < mn
    with np.errstate(over="ignore", invalid="ignore"):
        v = np.where(sub, (y + mn).view(np.uint32), y.view(np.uint32))
        base = np.where(sub, min_normal >> np.uint32(20), off)
        if random16 is None:
            add = np.uint32(0x7FFFF) + ((v >> np.uint32(20)) & np.uint32(1))
        else:
            add = random16 << np.uint32(4)
        c = ((v + add) >> np.uint32(20)) - base
    c = np.minimum(c, cmax)
    if nonneg:
        c = np.where(bits >> np.uint32(31) != 0, np.uint32(0), c)
    else:
        c = c | ((bits >> np.uint32(24)) & np.uint32(0x80))
    c = np.where(bad[_blocks(n)], np.uint32(0), c)
    return c.astype(np.uint8), scale.view(np.float32)


def q8_decode(codes: np.ndarray, scales: np.ndarray, nonneg: bool) -> np.ndarray:
    """8-bit codes (flat) and their per-block scales as float32."""
    c = codes.reshape(-1).astype(np.uint32)
    magnitude = c if nonneg else c & np.uint32(0x7F)
    off, min_normal, _ = _UNSIGNED if nonneg else _SIGNED
    sub = magnitude.astype(np.float32) * (min_normal.view(np.float32) * np.float32(0.125))
    normal = ((magnitude + off) << np.uint32(20)).view(np.float32)
    value = np.where(magnitude < 8, sub, normal) * np.asarray(scales, dtype=np.float32)[_blocks(c.size)]
    if not nonneg:
        value = (value.view(np.uint32) | ((c & np.uint32(0x80)) << np.uint32(24))).view(np.float32)
    return value


# -- 16-bit parameters ---------------------------------------------------------------------------------------------


def kahan_store(old: np.ndarray, new: np.ndarray, comp: np.ndarray, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """A 16-bit param's new stored value and compensation: ``old`` and ``comp`` are float32 values of the stored
    param and buffer, ``new`` the float32 result of the update. Returns both as float32 values of the 16-bit dtype."""
    with np.errstate(all="ignore"):
        y = (new - old) + comp
        stored = _round16(old + y, dtype)
        return stored, _round16(y - (stored - old), dtype)


def _round16(x: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bfloat16":
        return bf16_value(bf16_round(x))
    return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)


# -- one tensor's step -------------------------------------------------------------------------------------------------


def update(
    rule: Callable[[np.ndarray, np.ndarray, dict[str, np.ndarray]], None],
    param: np.ndarray,
    grad: np.ndarray,
    state: Mapping[str, np.ndarray],
    fmt: StateFormat,
    *,
    param_dtype: str,
    slots: Sequence[tuple[str, int, bool]],
    key: tuple[int, int],
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One step of one parameter with low-bit storage, out of place: what the fused kernel computes.

    Args:
        rule: ``(param, grad, state)`` -> None, the algorithm's ``reference_update`` on float32 arrays, in place.
        param, grad: the stored param and gradient, flat: float32, bfloat16 bits (uint16) or float16.
        state: the stored state, flat: per slot its array (float32, bfloat16 bits, or 8-bit codes with the scales
            under ``slot + "_scale"``), and ``kahan_comp`` where ``fmt.params == "kahan"``.
        fmt: the storage format.
        param_dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"``.
        slots: per state slot the algorithm uses, ``(name, position in the kernel's slot order, never negative)``.
        key: ``(step, parameter index)``, the stream's position for this update (with ``fmt.seed``).

    Returns:
        The new stored param and the new stored state, in the forms they came in.
    """
    n = param.size
    step, index = key
    words = {w: stream_words(fmt.seed, step, index, n, w) for w in (0, 1)} if fmt.streamed else {}
    p32 = _load16(param, param_dtype)
    g32 = _load16(grad, param_dtype)
    work = {name: _decode(state, name, fmt, nonneg) for name, _, nonneg in slots}
    rule(p32, g32, work)
    out: dict[str, np.ndarray] = {}
    for name, position, nonneg in slots:
        random16 = (
            _bits16(words[position // 2], position % 2 == 1)
            if fmt.stochastic_rounding and fmt.dtype != "float32"
            else None
        )
        if fmt.dtype == "float32":
            out[name] = work[name]
        elif fmt.dtype == "bfloat16":
            out[name] = bf16_round(work[name], random16)
        else:
            out[name], out[name + SCALE_SUFFIX] = q8_encode(work[name], nonneg, random16)
    if param_dtype == "float32":
        new_param = p32
    elif fmt.params == "stochastic":
        new_param = bf16_round(p32, words[1] >> np.uint32(16))
    elif fmt.params == "kahan":
        comp = _load16(state[KAHAN_KEY], param_dtype)
        stored, new_comp = kahan_store(_load16(param, param_dtype), p32, comp, param_dtype)
        new_param, out[KAHAN_KEY] = _store16(stored, param_dtype), _store16(new_comp, param_dtype)
    else:
        new_param = _store16(p32, param_dtype)
    return new_param, out


def _load16(a: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bfloat16":
        return bf16_value(a)
    return np.array(a, dtype=np.float32)


def _store16(x: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bfloat16":
        return bf16_round(x)
    return np.asarray(x, dtype=np.float32).astype(np.float16 if dtype == "float16" else np.float32)


def _decode(state: Mapping[str, np.ndarray], name: str, fmt: StateFormat, nonneg: bool) -> np.ndarray:
    if fmt.dtype == "float32":
        return np.array(state[name], dtype=np.float32)
    if fmt.dtype == "bfloat16":
        return bf16_value(state[name])
    return q8_decode(state[name], state[name + SCALE_SUFFIX], nonneg)
