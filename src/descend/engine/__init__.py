"""The step engine under both fronts: one place that turns gradients into updated parameters and state.

See :mod:`descend.engine.step` for the step and :mod:`descend.engine.arrays` for the array kinds.
"""

from descend.engine.arrays import ArrayKind, NumpyKind
from descend.engine.step import Engine, GroupWork, Item, Prepared

__all__ = ["ArrayKind", "Engine", "GroupWork", "Item", "NumpyKind", "Prepared"]
