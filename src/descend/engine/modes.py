"""Train and eval modes, for an algorithm whose parameters hold one point while training and another to evaluate.

Schedule-Free (:mod:`descend.algorithms.adamw_schedulefree`) takes its gradients at :math:`y` and evaluates at
:math:`x`; the parameters hold one of them, and the state keeps :math:`z`, from which the other follows. Each param
group records which one its parameters hold in ``train_mode`` (the reference package's key), so that the state dicts
and checkpoints of both fronts carry it. :class:`ModeSwitch` gives both fronts' optimizers ``train()``, ``eval()``
and the check their ``step()`` makes; the algorithm's module supplies the rule (``mode_weight``, ``switch_mode``),
and the switch runs it as the engine runs a reference step: in the compute dtype (float32 for 16-bit storage), then
stored with one rounding, so both fronts give the same bits.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from descend.engine.step import Engine

__all__ = ["ModeSwitch"]

MODE_KEY = "train_mode"


class ModeSwitch:
    """Mixin for a front's optimizer class whose algorithm has train and eval modes.

    The class it is mixed into has ``spec``, ``param_groups``, ``_hps`` and ``_engine``, and implements
    :meth:`_states_of`. A new optimizer is in train mode: before its first step its parameters hold
    :math:`y = x = z`, and its steps need no call first. Groups added later take the optimizer's mode.
    """

    spec: Any
    param_groups: list[dict[str, Any]]
    _hps: Any
    _engine: Engine

    def _states_of(self, index: int) -> Iterator[tuple[Any, dict | None]]:  # pragma: no cover - each front's own
        """Each parameter of param group ``index`` with its state dict (None if it has none yet)."""
        raise NotImplementedError

    def _current_mode(self) -> bool:
        return all(group.get(MODE_KEY, True) is True for group in self.param_groups)

    @property
    def train_mode(self) -> bool:
        """Whether every param group is in train mode: its parameters hold :math:`y`, where gradients are taken."""
        return self._current_mode()

    def train(self) -> None:
        """Put the parameters at the point where gradients are taken (:math:`y`), for training. A group already in
        train mode, and a parameter without state yet, are left as they are."""
        self._switch(True)

    def eval(self) -> None:
        """Put the parameters at the point to evaluate and deploy (:math:`x`, the average). ``step()`` refuses to run
        until :meth:`train` is called again."""
        self._switch(False)

    def _switch(self, train: bool) -> None:
        engine = self._engine
        kind, module = engine.kind, self.spec.module
        with engine.lock:
            todo = [(i, g) for i, g in enumerate(self.param_groups) if g.get(MODE_KEY, True) is not train]
            weights = [module.mode_weight(self._hps.get(group), train) for _, group in todo]  # may refuse: nothing done
            for (index, group), weight in zip(todo, weights):
                pairs = [(p, st["z"]) for p, st in self._states_of(index) if st and "z" in st]
                _run_all([_mover(kind, module, p, z, weight) for p, z in pairs])
                group[MODE_KEY] = train

    def _check_train_mode(self, where: str) -> None:
        """Raise if a param group is not in train mode (its parameters hold x, not y); nothing has changed then."""
        for i, group in enumerate(self.param_groups):
            mode = group.get(MODE_KEY, True)
            if not isinstance(mode, bool):
                raise TypeError(f"param group {i} has train_mode={mode!r}; it must be True or False")
            if not mode:
                raise RuntimeError(
                    f"{type(self).__name__}.step() was called in eval mode (param group {i}): the parameters hold "
                    f"x, the average to evaluate, not y, where the gradient must be taken; {where}"
                )

    def _mode_group(self, group: Any) -> Any:
        """``group`` with the optimizer's current mode where it names none (a new group takes the current mode)."""
        if isinstance(group, dict) and MODE_KEY not in group:
            return {**group, MODE_KEY: self._current_mode()}
        return group


def _mover(kind: Any, module: Any, p: Any, z: Any, weight: float) -> Any:
    """One parameter's move, computed in its compute dtype, then stored; rerunning it after it stored rewrites the
    same values."""
    name = kind.dtype_name(p) or "float64"
    done: list = []

    def move() -> None:
        if not done:
            work = kind.work_copy(p, name)
            module.switch_mode(kind.xp, work, kind.work_copy(z, name), kind.scalar_caster(name)(weight))
            done.append(work)
        kind.write_back(p, done[0])

    return move


def _run_all(actions: list) -> None:
    """Run every action, even when one is interrupted (a KeyboardInterrupt, a signal handler's exception): the
    interrupted one is run again and the rest follow, then the exception is raised, so a group is never left half
    switched. An action that fails twice in a row is a fault of its own and is raised at once."""
    done, failed, error = 0, -1, None
    while done < len(actions):
        try:
            while done < len(actions):
                actions[done]()
                done += 1
        except BaseException as exc:  # noqa: BLE001 - raised once every action has run
            if failed == done:
                raise
            error = error or exc
            failed = done
    if error is not None:
        raise error
