"""What an optimizer does with gradients that hold NaN or infinity: ``nan_policy=``, shared by both fronts.

- ``"propagate"`` (the default, as torch.optim): the step runs and the non-finite values flow into the parameters.
- ``"skip"``: the whole step is skipped, nothing changes, and the optimizer's ``skipped_steps`` counter goes up.
- ``"raise"``: a ValueError names the first parameter whose gradient is not finite, and nothing changes.

A skip or a refusal must be decided before anything is written, so ``"skip"`` and ``"raise"`` read every gradient
once before the step (one pass over the gradients, not over the state); ``"propagate"`` costs nothing. With the
compiled kernels the pass is multi-threaded and tests exponent bits (:func:`descend.kernels.first_nonfinite`);
arrays it cannot read directly (not contiguous) are checked with NumPy or torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from descend import kernels

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


def first_nonfinite(
    grads: Sequence[Any | None],
    address: Callable[[Any], tuple[int, int, str] | None],
    slow_check: Callable[[Any], bool],
) -> int | None:
    """The index of the first gradient holding NaN or infinity, or None; ``None`` entries are skipped.

    Args:
        grads: the gradients, NumPy arrays or torch tensors.
        address: for a gradient the kernel can read, (address, element count, dtype name); else None.
        slow_check: True if a gradient the kernel cannot read holds a non-finite value.
    """
    use_kernel = kernels.available()[0]
    batches: dict[str, tuple[list[int], list[int], list[int]]] = {}
    first: int | None = None
    for i, g in enumerate(grads):
        if g is None:
            continue
        where = address(g) if use_kernel else None
        if where is None:
            if first is None and slow_check(g):
                first = i
            continue
        indices, addresses, sizes = batches.setdefault(where[2], ([], [], []))
        indices.append(i)
        addresses.append(where[0])
        sizes.append(where[1])
    for dtype, (indices, addresses, sizes) in batches.items():
        k = kernels.first_nonfinite(addresses, sizes, dtype)
        if k >= 0 and (first is None or indices[k] < first):
            first = indices[k]
    return first
