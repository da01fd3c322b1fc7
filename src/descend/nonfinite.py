"""What an optimizer does with gradients that hold NaN or infinity: ``nan_policy=``, shared by both fronts.

- ``"propagate"`` (the default, as torch.optim): the step runs and the non-finite values flow into the parameters.
- ``"skip"``: the whole step is skipped, nothing changes, and the optimizer's ``skipped_steps`` counter goes up.
- ``"raise"``: a ValueError names the first parameter whose gradient is not finite, and nothing changes.

A skip or a refusal must be decided before anything is written, so ``"skip"`` and ``"raise"`` read every gradient
once before the step (one pass over the gradients, not over the state); ``"propagate"`` costs nothing.
"""

from __future__ import annotations

NAN_POLICIES: tuple[str, ...] = ("propagate", "skip", "raise")


def check_nan_policy(value: object) -> str:
    """Return ``value`` if it is a known policy, else raise a ValueError listing them."""
    if not isinstance(value, str) or value not in NAN_POLICIES:
        raise ValueError(f"Invalid nan_policy {value!r}; choose one of {', '.join(map(repr, NAN_POLICIES))}")
    return value


def refusal(index: int, shape: tuple[int, ...]) -> ValueError:
    """The error of ``nan_policy="raise"`` for the gradient of parameter ``index``."""
    return ValueError(
        f"the gradient of parameter {index} (shape {shape}) holds NaN or infinite values; nan_policy='raise' "
        "stopped the step and nothing was updated"
    )
