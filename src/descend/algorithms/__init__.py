"""The math: one module per algorithm, each an :class:`AlgorithmSpec`, collected in :data:`REGISTRY`."""

from descend.algorithms._spec import AlgorithmSpec, ClosureSpec, Hyperparams, Spec, cast_scalars
from descend.algorithms.conventions import CONVENTIONS
from descend.algorithms.registry import ELEMENTWISE, REGISTRY, get

__all__ = [
    "CONVENTIONS",
    "ELEMENTWISE",
    "REGISTRY",
    "AlgorithmSpec",
    "ClosureSpec",
    "Hyperparams",
    "Spec",
    "cast_scalars",
    "get",
]
