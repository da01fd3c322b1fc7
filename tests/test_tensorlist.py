"""TensorList and its namespace: every operation gives the per-tensor namespace's bits, and the tensors a list
borrows are never written."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from descend.engine import torch_xp as _xp  # noqa: E402
from descend.engine.tensorlist import XP, TensorList, multi_tensor_sign  # noqa: E402

SPECIAL = [0.0, -0.0, 1.0, -1.0, 3.0, 1e-40, -1e-40, 1e30, float("inf"), -float("inf"), float("nan"), 0.1, -2.5]
_INTS = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def tensors(dtype: torch.dtype = torch.float32, seed: int = 0) -> list:
    """Mixed shapes (0-d, empty, transposed), random values and the special ones."""
    gen = torch.Generator().manual_seed(seed)
    out = [torch.randn(s, generator=gen, dtype=torch.float64) for s in [(3, 4), (), (0,), (len(SPECIAL),)]]
    out[3] = torch.tensor(SPECIAL, dtype=torch.float64)[torch.randperm(len(SPECIAL), generator=gen)]
    out.append(torch.randn(5, 2, generator=gen, dtype=torch.float64).t())
    return [t.to(dtype) for t in out]


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(_INTS[t.element_size()]) if t.is_floating_point() else t


def same_lists(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        x.dtype == y.dtype and x.shape == y.shape and torch.equal(bits(x), bits(y)) for x, y in zip(a, b)
    )


def borrowed(ts: list) -> TensorList:
    return TensorList(ts, owned=False)


NUMBER = 0.3  # not a power of two: a division by it that multiplies by its reciprocal rounds differently

BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "gt": lambda a, b: a > b,
    "lt": lambda a, b: a < b,
    "ge": lambda a, b: a >= b,
    "le": lambda a, b: a <= b,
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "pow": lambda a, b: a**b,
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("op", list(BINARY))
def test_binary_operators_match_the_per_tensor_ones(op: str, dtype: torch.dtype) -> None:
    f = BINARY[op]
    a, b = tensors(dtype, 1), tensors(dtype, 2)
    with np.errstate(all="ignore"):
        assert same_lists(f(borrowed(a), borrowed(b)).tensors, [f(x, y) for x, y in zip(a, b)])
        assert same_lists(f(borrowed(a), NUMBER).tensors, [f(x, NUMBER) for x in a])
        assert same_lists(f(NUMBER, borrowed(a)).tensors, [f(NUMBER, x) for x in a])  # the reflected operators


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_division_by_a_number_is_correctly_rounded(dtype: torch.dtype) -> None:
    a = tensors(dtype, 3)
    got = (borrowed(a) / NUMBER).tensors
    with np.errstate(all="ignore"):
        want = [torch.from_numpy(np.asarray(x.numpy() / x.numpy().dtype.type(NUMBER))) for x in a]
    assert same_lists(got, want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_functions_match_the_per_tensor_namespace(dtype: torch.dtype) -> None:
    a, b = tensors(dtype, 4), tensors(dtype, 5)
    la, lb = borrowed(a), borrowed(b)
    with np.errstate(all="ignore"):
        assert same_lists((-la).tensors, [-x for x in a])
        for name in ("sqrt", "abs", "sign", "zeros_like", "exp"):  # exp: a function the namespace runs per tensor
            fn = getattr(_xp, name, None) or getattr(torch, name)
            assert same_lists(getattr(XP, name)(la).tensors, [fn(x) for x in a]), name
        for name in ("maximum", "minimum", "divide"):
            fn = getattr(_xp, name, None) or getattr(torch, name)
            assert same_lists(getattr(XP, name)(la, lb).tensors, [fn(x, y) for x, y in zip(a, b)]), name
        assert same_lists(XP.divide(NUMBER, lb).tensors, [_xp.divide(NUMBER, y) for y in b])
        assert same_lists(XP.divide(la, NUMBER).tensors, [_xp.divide(x, NUMBER) for x in a])
        mask = la > 0
        assert same_lists(XP.where(mask, la, lb).tensors, [torch.where(x > 0, x, y) for x, y in zip(a, b)])


def test_the_sign_used_off_the_cpu_is_sign_and_keeps_nan() -> None:
    a = tensors(torch.float32, 6)
    for got, x in zip(multi_tensor_sign(a), a):
        nan = torch.isnan(x)
        assert torch.equal(torch.isnan(got), nan)
        assert torch.equal(got[~nan], torch.sign(x)[~nan])


IN_PLACE: dict[str, Callable[[TensorList, TensorList], None]] = {
    "+= list": lambda x, y: x.__iadd__(y),
    "-= number": lambda x, y: x.__isub__(NUMBER),
    "*= list": lambda x, y: x.__imul__(y),
    "/= number": lambda x, y: x.__itruediv__(NUMBER),
    "/= list": lambda x, y: x.__itruediv__(y),
    "[...] = list": lambda x, y: x.__setitem__(Ellipsis, y),
    "[...] = number": lambda x, y: x.__setitem__(Ellipsis, NUMBER),
    "[mask] = number": lambda x, y: x.__setitem__(y > 0, NUMBER),
    "maximum(out=)": lambda x, y: XP.maximum(x, y, out=x),
}


def _per_tensor(op: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    {
        "+= list": lambda: x.add_(y),
        "-= number": lambda: x.sub_(NUMBER),
        "*= list": lambda: x.mul_(y),
        "/= number": lambda: x.div_(NUMBER),
        "/= list": lambda: x.div_(y),
        "[...] = list": lambda: x.copy_(y),
        "[...] = number": lambda: x.fill_(NUMBER),
        "[mask] = number": lambda: x.__setitem__(y > 0, NUMBER),
        "maximum(out=)": lambda: x.copy_(torch.maximum(x, y)),
    }[op]()
    return x


@pytest.mark.parametrize("op", list(IN_PLACE))
def test_in_place_operations_leave_borrowed_tensors_alone(op: str) -> None:
    a, b = tensors(torch.float32, 7), tensors(torch.float32, 8)
    before = [t.clone() for t in a]
    x = borrowed(a)
    IN_PLACE[op](x, borrowed(b))
    assert same_lists(a, before), "a borrowed tensor was written"
    assert x.owned and x.dirty
    assert same_lists(x.tensors, [_per_tensor(op, t, u) for t, u in zip(before, b)])
    held = list(x.tensors)
    IN_PLACE[op](x, borrowed(b))  # owned now: changed in place
    assert all(t is u for t, u in zip(x.tensors, held)) or op == "maximum(out=)"
    assert same_lists(x.tensors, [_per_tensor(op, _per_tensor(op, t, u), u) for t, u in zip(before, b)])


def test_a_copy_is_not_an_alias() -> None:
    a, b = tensors(torch.float32, 9), tensors(torch.float32, 10)
    x, y = borrowed(a), TensorList([t.clone() for t in b])
    x[...] = y
    y += 1.0
    assert same_lists(x.tensors, b)


def test_what_a_tensorlist_refuses() -> None:
    x = borrowed(tensors())
    with pytest.raises(TypeError, match="truth value of a TensorList is ambiguous"):
        bool(x > 0)
    with pytest.raises(TypeError, match="combines with a TensorList or a number, got ndarray"):
        x + np.ones(3)
    with pytest.raises(TypeError, match=r"x\[mask\] = number with a boolean TensorList mask; got a key of type int"):
        x[0] = 1.0
    with pytest.raises(AttributeError, match="has no function 'no_such_function'"):
        XP.no_such_function(x)
    assert "TensorList(5 tensors: (3, 4), (), (0,), (13,), ...)" == repr(x)
