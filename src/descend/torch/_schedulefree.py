"""``descend.torch.AdamWScheduleFree``: Schedule-Free AdamW with train and eval modes that can follow a model's."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.hooks import RemovableHandle

from descend.algorithms.adamw_schedulefree import ADAMW_SCHEDULEFREE
from descend.engine.modes import ModeSwitch
from descend.torch._optimizer import Optimizer

__all__ = ["AdamWScheduleFree"]


class AdamWScheduleFree(ModeSwitch, Optimizer):
    """Schedule-Free AdamW for torch tensors: AdamW without a schedule, its momentum replaced by interpolation and
    averaging (Defazio et al. 2024), with the signature, defaults, state keys (``z``, ``exp_avg_sq``) and
    ``train()``/``eval()`` of the ``schedulefree`` package's ``AdamWScheduleFree``.

    While training, the parameters hold :math:`y`, where gradients are taken; :meth:`eval` moves them to
    :math:`x`, the average to evaluate and save for deployment, and :meth:`train` moves them back. ``step()``
    refuses to run in eval mode. So that evaluating in train mode cannot happen by forgetting a call,
    :meth:`attach` makes the optimizer follow a model: before each forward call of the model, the optimizer takes
    the model's mode (``model.train()``/``model.eval()``, which the usual training loop calls anyway). A new
    optimizer is in train mode (its parameters hold :math:`y = x = z` until the first step), unlike the package's,
    which refuses to step before ``train()``.

    The rule, its hyperparameters and references are documented in :mod:`descend.algorithms.adamw_schedulefree`;
    ``describe()`` prints the rule in force. See :class:`descend.torch.Optimizer` for the arguments shared by every
    optimizer.
    """

    spec = ADAMW_SCHEDULEFREE
    # the schedulefree package's argument order; foreach=False runs the reference, as torch's for-loop would
    torch_order = ("lr", "betas", "eps", "weight_decay", "warmup_steps", "r", "weight_lr_power", "foreach", "*")

    def _states_of(self, index: int) -> Iterator[tuple[Any, dict | None]]:
        for p in self.param_groups[index]["params"]:
            yield p, self.state.get(p)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group, as torch.optim does; it takes the optimizer's current mode."""
        if isinstance(param_group, dict) and "train_mode" not in param_group:
            param_group["train_mode"] = self._current_mode()
        super().add_param_group(param_group)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient, as :meth:`descend.torch.Optimizer.step` does.

        Raises:
            RuntimeError: the optimizer is in eval mode; nothing changes and the closure is not called.
        """
        self._check_train_mode(
            "call optimizer.train() (or model.train() with optimizer.attach(model)) before the forward pass"
        )
        return super().step(closure)

    def attach(self, module: torch.nn.Module) -> RemovableHandle:
        """Make the optimizer follow ``module``'s mode, now and before each of its forward calls.

        A forward pre-hook on ``module`` switches the optimizer to train mode when ``module.training`` is True and to
        eval mode when it is False, so ``model.eval()`` before evaluating puts the parameters at :math:`x`, and
        ``model.train()`` before training puts them back at :math:`y`. The hook holds the optimizer weakly, and runs
        eagerly under ``torch.compile``. Only calls of ``module`` itself run it: attach the model that is called.

        Returns:
            The hook's handle; ``handle.remove()`` detaches the optimizer.
        """
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"attach() takes a torch.nn.Module, got {type(module).__name__}")
        ref = weakref.ref(self)

        @torch.compiler.disable
        def follow(mod: torch.nn.Module, args: Any) -> None:
            opt = ref()
            if opt is not None:
                opt._switch(bool(mod.training))

        self._switch(bool(module.training))
        return module.register_forward_pre_hook(follow)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state_dict saved by this class, as :meth:`descend.torch.Optimizer.load_state_dict` does, keeping
        the running sums ``lr_max`` and ``weight_sum`` in float64 (torch's loader casts them to each parameter's
        dtype)."""
        super().load_state_dict(state_dict)
        saved_ids = [i for group in state_dict["param_groups"] for i in group["params"]]
        params = [p for group in self.param_groups for p in group["params"]]
        for saved_id, p in zip(saved_ids, params):
            saved = state_dict["state"].get(saved_id)
            if not isinstance(saved, dict):
                continue
            for key in ("lr_max", "weight_sum"):
                if key in saved:
                    value = saved[key]
                    value = value.item() if isinstance(value, torch.Tensor) else float(value)
                    self.state[p][key] = torch.tensor(value, dtype=torch.float64)
