"""Convention presets: the defaults and flags that make an algorithm behave as a given library or paper does.

A preset only sets hyperparameters; arguments given explicitly always win. Each algorithm module declares its own
overrides (``AlgorithmSpec.presets``) for the conventions whose library (or paper) has the algorithm, and a note
(``AlgorithmSpec.notes``) for each convention that has none: the library has no such optimizer, or descend does not
run its variant, and the note says which rule runs instead (torch's, with torch's defaults, unless it says otherwise).
``describe()`` prints that note, so no convention falls back to torch's rule silently.

- ``"torch"`` (default): ``torch.optim``'s defaults and rules.
- ``"optax"``: optax's defaults (epsilon inside the root for RMSprop and AdaGrad, AMSGrad on the corrected second
  moment, AdamW's weight decay 1e-4).
- ``"keras"``: Keras 3's defaults (epsilon 1e-7, Adam's "epsilon hat", RMSprop's rho 0.9 with epsilon inside the
  root, AdaGrad's initial accumulator 0.1, AdamW's weight decay 0.004).
- ``"paper"``: the values in the original papers (RMSprop's 0.9 from Hinton's lecture, Adadelta's 0.95).
- ``"article"``: the article this project started from (Adam with lr 0.01 and epsilon 1e-6 outside the root, as
  its code does; RMSprop with a decay of 0.95 and epsilon inside the root, as its equations do).
"""

from __future__ import annotations

CONVENTIONS: tuple[str, ...] = ("torch", "optax", "keras", "paper", "article")

DESCRIPTIONS: dict[str, str] = {
    "torch": "torch.optim's defaults and rules (the default)",
    "optax": "optax's defaults: epsilon inside the root where optax puts it, AMSGrad on the corrected moment",
    "keras": "Keras 3's defaults: epsilon 1e-7, Adam's epsilon hat, RMSprop rho 0.9 with epsilon inside the root",
    "paper": "the values of the original papers",
    "article": "the article's code and equations (Adam: lr 0.01, eps 1e-6 outside the root)",
}


KERAS_WEIGHT_DECAY = (
    "Keras's weight_decay is decoupled (theta -= lr * weight_decay * theta), here it is torch's L2 term (not a flag)"
)


def not_in_article(title: str) -> str:
    """The note of an algorithm the article does not cover."""
    return f"the article does not cover {title}: torch's rule runs with torch's defaults"


def check_convention(convention: object) -> str:
    """Return ``convention`` if it is known, else raise a ValueError listing the known ones."""
    if not isinstance(convention, str) or convention not in CONVENTIONS:
        raise ValueError(f"Unknown convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")
    return convention
