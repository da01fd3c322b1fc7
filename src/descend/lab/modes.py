"""Where the lab evaluates an optimizer whose parameters hold another point while training (Schedule-Free).

Such an optimizer (``descend.AdamWScheduleFree``, ``descend.torch.AdamWScheduleFree``) takes its gradients at one
point and is judged at another, the average its ``eval()`` moves the parameters to. The lab measures every optimizer
where it would be deployed: these helpers put the parameters there before a measurement and back before a step, and do
nothing for an optimizer without modes.
"""

from __future__ import annotations

from typing import Any

__all__ = ["to_eval", "to_train"]


def _has_modes(opt: Any) -> bool:
    return callable(getattr(opt, "eval", None)) and callable(getattr(opt, "train", None))


def to_eval(opt: Any) -> None:
    """Put ``opt``'s parameters at the point to evaluate (a no-op for an optimizer without modes)."""
    if _has_modes(opt):
        opt.eval()


def to_train(opt: Any) -> None:
    """Put ``opt``'s parameters back where its gradients are taken (a no-op for an optimizer without modes)."""
    if _has_modes(opt):
        opt.train()
