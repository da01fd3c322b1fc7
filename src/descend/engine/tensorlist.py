"""Lists of tensors as the arrays of ``reference_update``, so that each algorithm's one rule runs a whole group.

A :class:`TensorList` stands for one array of the rule (a parameter, its gradient or a state slot) over every tensor
of a group, and :data:`XP` is the array namespace that goes with it. Their operators and functions map to torch's
multi-tensor operations (``torch._foreach_*``) where torch has one that rounds as the per-tensor operation does, and
to a loop over the tensors, with the per-tensor namespace's own function, where it has none (comparisons, masked
assignment, ``where``, powers, and any function the rules may use later). So ``reference_update`` runs unchanged, one
operation per line of the rule for the whole group instead of one per line and tensor.

Every operation is one correctly rounded operation per element, as in the per-tensor rule, so the results are the
reference's bit for bit. The details that keep it so:

- Python floats stay Python floats (torch's "wrapped numbers"), so they never promote a tensor's dtype; the host
  scalars arrive already rounded to the compute dtype.
- ``list / number`` divides by a 0-d tensor of the list's dtype on its device: torch's CUDA ``_foreach_div`` by a
  number (like its per-tensor division by a number) multiplies by the reciprocal, which rounds twice.
  ``number / list`` is torch's ``reciprocal() * number``, as the per-tensor namespace computes it; ``divide(number,
  list)`` is the correctly rounded quotient.
- ``sqrt`` and ``sign`` of CPU tensors run the per-tensor namespace's functions (:mod:`descend.engine.torch_xp`: NumPy's
  correctly rounded square root, and NaN kept as NaN); elsewhere ``_foreach_sqrt`` (correctly rounded on CUDA) and a
  sign built from ``_foreach_sign``, ``_foreach_clamp_max`` and ``_foreach_maximum`` that passes NaN through.
- Subtraction from a number subtracts the list from a list filled with the number (``-x + number`` would round
  alike but flip the sign of a NaN).

Nothing here writes a tensor it was given. A list made from the caller's tensors is *borrowed*: an in-place operation
on it computes out of place and makes the list hold the result (it is then *owned*, and marked dirty); only owned
lists are changed in place. So the caller's tensors stay as they were until the engine copies the dirty lists back,
which keeps a step atomic without copying the state first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from descend.engine import torch_xp as _xp

__all__ = ["XP", "TensorList", "multi_tensor_sign"]


class TensorList:
    """One array of the rule over the tensors of a group (see the module docstring).

    Args:
        tensors: the tensors, all of one dtype and on one device.
        owned: False for the caller's tensors, which are never written (an in-place operation then replaces them).
    """

    __slots__ = ("dirty", "owned", "tensors")
    __hash__ = None  # type: ignore[assignment]  # compared elementwise, like an array
    __array_ufunc__ = None  # a NumPy scalar on the left gives way to the reflected operator

    def __init__(self, tensors: Sequence[torch.Tensor], *, owned: bool = True) -> None:
        self.tensors = list(tensors)
        self.owned = owned
        self.dirty = False  # whether an in-place operation or an assignment changed it

    def __repr__(self) -> str:
        shapes = ", ".join(str(tuple(t.shape)) for t in self.tensors[:4])
        more = ", ..." if len(self.tensors) > 4 else ""
        return f"TensorList({len(self.tensors)} tensors: {shapes}{more})"

    def __bool__(self) -> bool:
        raise TypeError("the truth value of a TensorList is ambiguous: it stands for an array of many elements")

    # -- out of place ------------------------------------------------------------------------------------------------

    def __neg__(self) -> TensorList:
        return TensorList(torch._foreach_neg(self.tensors))

    def __add__(self, other: Any) -> TensorList:
        return TensorList(torch._foreach_add(self.tensors, _operand(other)))

    __radd__ = __add__

    def __sub__(self, other: Any) -> TensorList:
        return TensorList(torch._foreach_sub(self.tensors, _operand(other)))

    def __rsub__(self, other: Any) -> TensorList:
        return TensorList(torch._foreach_sub(_full_like(self, _operand(other)), self.tensors))

    def __mul__(self, other: Any) -> TensorList:
        return TensorList(torch._foreach_mul(self.tensors, _operand(other)))

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> TensorList:
        return TensorList(torch._foreach_div(self.tensors, _divisor(self, other)))

    def __rtruediv__(self, other: Any) -> TensorList:
        return TensorList(torch._foreach_mul(torch._foreach_reciprocal(self.tensors), _operand(other)))

    def __pow__(self, other: Any) -> TensorList:
        return _per_tensor(lambda a, b: a**b)(self, other)

    def __rpow__(self, other: Any) -> TensorList:
        return _per_tensor(lambda a, b: b**a)(self, other)

    def __gt__(self, other: Any) -> TensorList:  # type: ignore[override]
        return _per_tensor(torch.gt)(self, other)

    def __ge__(self, other: Any) -> TensorList:  # type: ignore[override]
        return _per_tensor(torch.ge)(self, other)

    def __lt__(self, other: Any) -> TensorList:  # type: ignore[override]
        return _per_tensor(torch.lt)(self, other)

    def __le__(self, other: Any) -> TensorList:  # type: ignore[override]
        return _per_tensor(torch.le)(self, other)

    def __eq__(self, other: Any) -> TensorList:  # type: ignore[override]
        return _per_tensor(torch.eq)(self, other)

    def __ne__(self, other: Any) -> TensorList:  # type: ignore[override]
        return _per_tensor(torch.ne)(self, other)

    # -- in place ----------------------------------------------------------------------------------------------------

    def _inplace(self, name: str, other: Any) -> TensorList:
        if self.owned:
            getattr(torch, f"_foreach_{name}_")(self.tensors, other)
        else:
            self.tensors = getattr(torch, f"_foreach_{name}")(self.tensors, other)
            self.owned = True
        self.dirty = True
        return self

    def __iadd__(self, other: Any) -> TensorList:
        return self._inplace("add", _operand(other))

    def __isub__(self, other: Any) -> TensorList:
        return self._inplace("sub", _operand(other))

    def __imul__(self, other: Any) -> TensorList:
        return self._inplace("mul", _operand(other))

    def __itruediv__(self, other: Any) -> TensorList:
        return self._inplace("div", _divisor(self, other))

    def assign(self, tensors: list[torch.Tensor]) -> None:
        """Make the list hold ``tensors``, new tensors that nothing else holds (``out=`` of a function)."""
        self.tensors, self.owned, self.dirty = tensors, True, True

    def __setitem__(self, key: Any, value: Any) -> None:
        """``x[...] = y`` copies y (a list or a number) into x; ``x[mask] = number`` sets x where a boolean list of
        the same shapes is true, as the per-tensor rule's masked assignment does."""
        if key is Ellipsis or (isinstance(key, slice) and key == slice(None)):
            if isinstance(value, TensorList):
                if self.owned:
                    torch._foreach_copy_(self.tensors, value.tensors)
                else:
                    copies = [torch.empty_like(t) for t in self.tensors]
                    torch._foreach_copy_(copies, value.tensors)
                    self.tensors, self.owned = copies, True
            elif _is_number(value):
                if self.owned:
                    for t in self.tensors:
                        t.fill_(value)
                else:
                    self.tensors, self.owned = [torch.full_like(t, value) for t in self.tensors], True
            else:
                raise TypeError(f"x[...] = value takes a TensorList or a number, got {type(value).__name__}")
        elif isinstance(key, TensorList) and _is_number(value):
            if self.owned:
                for t, m in zip(self.tensors, key.tensors):
                    t.masked_fill_(m, value)
            else:
                self.tensors = [t.masked_fill(m, value) for t, m in zip(self.tensors, key.tensors)]
                self.owned = True
        else:
            raise TypeError(
                "a TensorList takes x[...] = list or number, and x[mask] = number with a boolean TensorList mask; "
                f"got a key of type {type(key).__name__} and a value of type {type(value).__name__}"
            )
        self.dirty = True


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, complex)


def _operand(other: Any) -> Any:
    """The second argument of a ``torch._foreach_*`` call: a list's tensors, or the number itself."""
    if isinstance(other, TensorList):
        return other.tensors
    if _is_number(other):
        return other
    raise TypeError(f"a TensorList combines with a TensorList or a number, got {type(other).__name__}")


def _divisor(x: TensorList, other: Any) -> Any:
    """A divisor for ``_foreach_div``: a list's tensors, or a number as a 0-d tensor of x's dtype on x's device (true
    division; a number would be turned into a multiplication by its reciprocal on CUDA)."""
    if isinstance(other, TensorList) or not x.tensors:
        return _operand(other)
    first = x.tensors[0]
    return torch.full((), _operand(other), dtype=first.dtype, device=first.device)


def _full_like(like: TensorList, value: float) -> list[torch.Tensor]:
    """New contiguous tensors shaped as ``like``'s, filled with ``value``: views of one buffer, filled at once."""
    if not like.tensors:
        return []
    first = like.tensors[0]
    sizes = [t.numel() for t in like.tensors]
    flat = torch.full((sum(sizes),), value, dtype=first.dtype, device=first.device)
    return [part.view(t.shape) for part, t in zip(flat.split(sizes), like.tensors)]


def _per_tensor(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` applied tensor by tensor: TensorList arguments give their i-th tensor, others are passed as they are;
    ``out=`` (a TensorList) receives the result."""

    def apply(*args: Any, out: TensorList | None = None, **kwargs: Any) -> Any:
        lists = [a for a in (*args, *kwargs.values()) if isinstance(a, TensorList)]
        if not lists:
            return fn(*args, **kwargs)
        results = []
        for i in range(len(lists[0].tensors)):
            pick = [a.tensors[i] if isinstance(a, TensorList) else a for a in args]
            named = {k: v.tensors[i] if isinstance(v, TensorList) else v for k, v in kwargs.items()}
            results.append(fn(*pick, **named))
        return _result(results, out)

    return apply


def _result(tensors: list[torch.Tensor], out: TensorList | None) -> TensorList:
    if out is None:
        return TensorList(tensors)
    out.assign(tensors)
    return out


def multi_tensor_sign(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """sign(x) with NaN kept as NaN, in three multi-tensor operations: sign(x) is at least -1 and min(x, -1) at most
    -1 but NaN where x is NaN, so their maximum is sign(x), or NaN (torch's CUDA functors pass a NaN operand on)."""
    return torch._foreach_maximum(torch._foreach_sign(tensors), torch._foreach_clamp_max(tensors, -1.0))


def _on_cpu(x: TensorList) -> bool:
    return bool(x.tensors) and x.tensors[0].device.type == "cpu"


class _Namespace:
    """The array namespace of :class:`TensorList` (see the module docstring). A function it does not define runs
    tensor by tensor with the per-tensor namespace's function of that name (:mod:`descend.engine.torch_xp`, else
    torch's)."""

    def sqrt(self, x: TensorList) -> TensorList:
        if _on_cpu(x):
            return TensorList([_xp.sqrt(t) for t in x.tensors])
        return TensorList(torch._foreach_sqrt(x.tensors))

    def abs(self, x: TensorList) -> TensorList:
        return TensorList(torch._foreach_abs(x.tensors))

    def sign(self, x: TensorList) -> TensorList:
        """-1, 0 or 1, and NaN where x is NaN."""
        if _on_cpu(x):
            return TensorList([_xp.sign(t) for t in x.tensors])
        return TensorList(multi_tensor_sign(x.tensors))

    def maximum(self, a: Any, b: Any, out: TensorList | None = None) -> Any:
        if isinstance(a, TensorList) and isinstance(b, TensorList):
            return _result(torch._foreach_maximum(a.tensors, b.tensors), out)
        return _per_tensor(_xp.maximum)(a, b, out=out)

    def minimum(self, a: Any, b: Any, out: TensorList | None = None) -> Any:
        if isinstance(a, TensorList) and isinstance(b, TensorList):
            return _result(torch._foreach_minimum(a.tensors, b.tensors), out)
        return _per_tensor(torch.minimum)(a, b, out=out)

    def divide(self, a: Any, b: Any, out: TensorList | None = None) -> Any:
        """The correctly rounded quotient, also of a number by a list."""
        if isinstance(b, TensorList) and not isinstance(a, TensorList):
            return _result(torch._foreach_div(_full_like(b, _operand(a)), b.tensors), out)
        if isinstance(a, TensorList):
            return _result((a / b).tensors, out)
        return _per_tensor(_xp.divide)(a, b, out=out)

    def zeros_like(self, x: TensorList) -> TensorList:
        return TensorList(_full_like(x, 0.0))

    def where(self, condition: Any, a: Any, b: Any) -> Any:
        return _per_tensor(torch.where)(condition, a, b)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("__"):
            raise AttributeError(name)
        fn = getattr(_xp, name, None) or getattr(torch, name, None)
        if not callable(fn):
            raise AttributeError(f"the TensorList namespace has no function {name!r} (neither has torch)")
        return _per_tensor(fn)


#: The array namespace of :class:`TensorList`.
XP = _Namespace()
