"""The NumPy front's Schedule-Free AdamW: :class:`descend.Optimizer` with train and eval modes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from descend.algorithms.adamw_schedulefree import ADAMW_SCHEDULEFREE
from descend.engine.modes import ModeSwitch
from descend.optim import Optimizer

__all__ = ["AdamWScheduleFree"]


class AdamWScheduleFree(ModeSwitch, Optimizer):
    """Schedule-Free AdamW on NumPy arrays: AdamW without a schedule, its momentum replaced by interpolation and
    averaging (Defazio et al. 2024), as the ``schedulefree`` package's ``AdamWScheduleFree``.

    While training, the arrays hold :math:`y`, where gradients are taken; :meth:`eval` moves them to :math:`x`, the
    average to evaluate and keep, and :meth:`train` moves them back. ``step()`` refuses to run in eval mode. A new
    optimizer is in train mode. The rule, its hyperparameters and references are documented in
    :mod:`descend.algorithms.adamw_schedulefree`; ``describe()`` prints the rule in force. See
    :class:`descend.optim.Optimizer` for the arguments shared by every optimizer.
    """

    spec = ADAMW_SCHEDULEFREE

    def _states_of(self, index: int) -> Iterator[tuple[Any, dict | None]]:
        start = sum(len(g["params"]) for g in self.param_groups[:index])
        for k, p in enumerate(self.param_groups[index]["params"]):
            yield p, self.state.get(start + k)

    def add_param_group(self, group: Mapping[str, Any]) -> None:
        """Add a param group, as :meth:`descend.optim.Optimizer.add_param_group` does; it takes the optimizer's
        current mode."""
        super().add_param_group(self._mode_group(dict(group)) if isinstance(group, Mapping) else group)

    def step(self, grads: Sequence[np.ndarray | None]) -> None:
        """Update every parameter from its gradient, as :meth:`descend.optim.Optimizer.step` does.

        Raises:
            RuntimeError: the optimizer is in eval mode (nothing changes); call :meth:`train` first.
        """
        self._check_train_mode("call optimizer.train() before computing the gradients")
        super().step(grads)
