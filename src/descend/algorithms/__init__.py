"""The math: one module per algorithm, each an :class:`AlgorithmSpec`, collected in :data:`REGISTRY`."""

from descend.algorithms._spec import AlgorithmSpec, Hyperparams, cast_scalars
from descend.algorithms.conventions import CONVENTIONS
from descend.algorithms.registry import REGISTRY, get

__all__ = ["CONVENTIONS", "REGISTRY", "AlgorithmSpec", "Hyperparams", "cast_scalars", "get"]
