"""Parameter shapes an algorithm takes, for tests written with any shape in mind."""

from __future__ import annotations

import math
from typing import Any

from descend.algorithms import REGISTRY


def shape_for(name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """``shape`` itself, or for an algorithm that takes matrices only (Muon) a matrix with as many elements: as
    square as the count allows (one row where it is prime)."""
    if REGISTRY[name].param_ndim != 2 or len(shape) == 2:
        return tuple(shape)
    n = math.prod(shape)
    rows = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0) if n else 0
    return (rows, n // rows if rows else 0)


def matrices_only(name: str) -> bool:
    """Whether the algorithm takes 2-D parameters only."""
    return REGISTRY[name].param_ndim == 2


def torch_grad(cls: type, grad: Any) -> Any:
    """The gradient a test written with dense gradients gives ``cls``, a descend.torch class: ``grad`` itself, or
    for a class that takes sparse gradients only (SparseAdam, as torch's), ``grad`` as a sparse tensor that lists
    every entry, which that rule updates as the NumPy front updates the dense one."""
    if getattr(cls, "dense_gradients", True):
        return grad
    from descend.torch._sparse_adam import every_entry

    return every_entry(grad)


def takes_dense_gradients(name: str) -> bool:
    """Whether descend.torch's class for ``name`` takes dense gradients (SparseAdam's takes sparse ones only)."""
    import descend.torch as dt

    return getattr(dt.OPTIMIZERS[name], "dense_gradients", True)
