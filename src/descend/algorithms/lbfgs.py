r"""L-BFGS: a quasi-Newton direction from the last few steps and gradient changes, found by a two-loop recursion.

Every parameter is one flat vector :math:`x`. After each iteration :math:`k` the method keeps the step and the change
of gradient, :math:`s_k = x_{k+1} - x_k` and :math:`y_k = g_{k+1} - g_k`, for the last :math:`m` iterations
(``history_size``) where :math:`y_k^\top s_k > 10^{-10}` (a pair without positive curvature is dropped), with
:math:`\rho_k = 1 / y_k^\top s_k`. The direction applies the inverse-Hessian estimate :math:`H_k` to :math:`-g_k`
without forming it (Nocedal & Wright, Algorithm 7.4), from the newest pair to the oldest and back:

.. math::

    q &\leftarrow -g_k; \quad \alpha_i = \rho_i\, s_i^\top q,\ \ q \leftarrow q - \alpha_i y_i
        \quad (i = k-1, \dots, k-m) \\
    r &\leftarrow \gamma_k q, \quad \gamma_k = \frac{s_{k-1}^\top y_{k-1}}{y_{k-1}^\top y_{k-1}} \\
    \beta_i &= \rho_i\, y_i^\top r,\ \ r \leftarrow r + (\alpha_i - \beta_i)\, s_i
        \quad (i = k-m, \dots, k-1) \\
    d_k &= r, \qquad x_{k+1} = x_k + t_k d_k

The first direction is :math:`-g_0` with :math:`t_0 = \eta \min(1, 1/\lVert g_0 \rVert_1)`; after it the step is
:math:`t_k = \eta` (``lr``), or with ``line_search_fn="strong_wolfe"`` the step a strong-Wolfe line search finds
starting from that value (see :mod:`descend.algorithms._wolfe`: :math:`c_1 = 10^{-4}`, :math:`c_2 = 0.9`).

One ``step(closure)`` runs up to ``max_iter`` iterations and ``max_eval`` evaluations of the closure (1.25 times
``max_iter`` by default; a line search that ends a step may take one more, its first trial not being counted against
its budget, as in torch). It stops early when :math:`\max_i |g_i|` falls to ``tolerance_grad`` (also before the first
iteration, without moving), when the slope :math:`g^\top d` is not below minus ``tolerance_change``, or when the move
:math:`\max_i |t d_i|` or the change of loss falls to ``tolerance_change``. The history persists from one step to the
next. Without a line search, the last iteration of a step does not evaluate the closure at its new point; the next
step's first evaluation does. The closure is called with gradients enabled; on the torch front it fills in the
gradients and returns the loss, on the NumPy front it returns the loss and the gradients (see :mod:`descend.closure`).

Conventions. This is torch's ``LBFGS`` (after minFunc): its defaults, its state keys (``func_evals``, ``n_iter``,
``d``, ``t``, ``old_dirs``, ``old_stps``, ``ro``, ``H_diag``, ``prev_flat_grad``, ``prev_loss``, ``al``, kept on the
first parameter) and its arithmetic, each scalar in the parameters' dtype as torch keeps it. optax's ``lbfgs`` keeps
10 pairs and runs its own zoom line search by default; Keras has no L-BFGS. The paper's method always runs a line
search that satisfies the Wolfe conditions (Moré and Thuente's) and leaves the number of pairs to the user; the
"paper" convention turns the strong-Wolfe search on. Not elementwise: the parameters form one vector (one param
group; complex parameters count as pairs of reals), and the fused kernels do not run it.

References:
    Liu & Nocedal (1989), "On the Limited Memory BFGS Method for Large Scale Optimization", Mathematical
    Programming 45, 503-528.

    Nocedal & Wright (2006), "Numerical Optimization", 2nd edition, Springer: Algorithm 7.4 (the two-loop
    recursion), Algorithm 7.5 (L-BFGS), Algorithms 3.5 and 3.6 (the strong-Wolfe line search).
"""

from __future__ import annotations

import dataclasses
import numbers
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from descend.algorithms._spec import ClosureSpec, Hyperparams, check_real
from descend.algorithms._wolfe import strong_wolfe
from descend.algorithms.conventions import not_in_article

__all__ = ["LBFGS", "Flat", "LBFGSHyperparams", "step"]

LINE_SEARCHES = (None, "strong_wolfe")
CURVATURE_MIN = 1e-10  # a pair (s, y) enters the history only where y . s exceeds this, as in torch


def check_count(name: str, value: Any) -> int:
    """Check that ``value`` is an integer of at least 1 (not a bool) and return it as an int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer of at least 1, got {value!r} of type {type(value).__name__}")
    if value < 1:
        raise ValueError(f"Invalid {name} value: {value!r}; it must be an integer of at least 1")
    return int(value)


@dataclass(frozen=True)
class LBFGSHyperparams(Hyperparams):
    lr: float = 1  # torch's default is the int 1
    max_iter: int = 20
    max_eval: int | None = None
    tolerance_grad: float = 1e-7
    tolerance_change: float = 1e-9
    history_size: int = 100
    line_search_fn: str | None = None

    def validate(self) -> LBFGSHyperparams:
        """Check every value; ``max_eval=None`` becomes ``max_iter * 5 // 4``, as torch stores it."""
        max_iter = check_count("max_iter", self.max_iter)
        if self.line_search_fn not in LINE_SEARCHES or not isinstance(self.line_search_fn, (str, type(None))):
            raise ValueError(
                f"Invalid line_search_fn value: {self.line_search_fn!r}; allowed values are None and 'strong_wolfe'"
            )
        return dataclasses.replace(
            self,
            lr=check_real("lr", self.lr, low=0.0, label="learning rate"),
            max_iter=max_iter,
            max_eval=max_iter * 5 // 4 if self.max_eval is None else check_count("max_eval", self.max_eval),
            tolerance_grad=check_real("tolerance_grad", self.tolerance_grad, low=0.0),
            tolerance_change=check_real("tolerance_change", self.tolerance_change, low=0.0),
            history_size=check_count("history_size", self.history_size),
        )


class Flat(Protocol):
    """What a front gives the step: the parameters as one flat vector, the closure, and the vector operations that
    are not the same method in NumPy and torch. Vectors are 1-D arrays (or tensors) of the parameters' dtype; the
    step also uses ``-v``, ``v - w``, ``v * s`` and ``v.dot(w)``, which both have."""

    def evaluate(self) -> tuple[Any, float, Any]:
        """Call the closure at the parameters as they are: (its loss as returned, that loss as a float, the flat
        gradient, a new vector nobody else holds)."""

    def evaluate_at(self, x: Any, t: Any, d: Any) -> tuple[float, Any]:
        """The loss (a float) and flat gradient at ``x + t d``; the parameters are ``x`` again afterwards."""

    def add(self, t: Any, d: Any) -> None:
        """Move the parameters by ``t * d``."""

    def snapshot(self) -> Any:
        """A copy of the parameters' values, for :meth:`evaluate_at` and for undoing a failed step."""

    def axpy(self, v: Any, alpha: Any, w: Any) -> None:
        """``v += alpha * w``, in place."""

    def abs_max(self, v: Any) -> Any:
        """``max |v_i|``, a 0-d value of ``v``'s dtype."""

    def abs_sum(self, v: Any) -> Any:
        """``sum |v_i|``, a 0-d value of ``v``'s dtype."""

    def sqrt(self, s: Any) -> Any:
        """The square root of a 0-d value."""

    def clone(self, v: Any) -> Any:
        """A copy of ``v``."""

    numel: int  # how many reals the parameters hold (a complex number counts twice)

    def is_vector(self, v: Any) -> bool:
        """Whether ``v`` can be a flat vector of these parameters (for checking a saved state)."""

    def is_number(self, v: Any) -> bool:
        """Whether ``v`` is a real number, or a 0-d array or tensor holding one (for checking a saved state)."""


def step(flat: Flat, hp: LBFGSHyperparams, state: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """One ``step(closure)``: up to ``hp.max_iter`` iterations. ``state`` is read, never changed: the state after the
    step is returned whole (its keys in torch's order), with the closure's first loss, for the front to commit.

    ``hp.lr`` is used as it is, so a front may pass torch's 0-d tensor learning rate to keep torch's arithmetic.
    """
    new = dict(state)
    new.setdefault("func_evals", 0)
    new.setdefault("n_iter", 0)
    first_loss, loss, flat_grad = flat.evaluate()
    evals = 1
    new["func_evals"] += 1
    if flat.abs_max(flat_grad) <= hp.tolerance_grad:
        return first_loss, new

    d, t, h_diag = new.get("d"), new.get("t"), new.get("H_diag")
    old_dirs, old_stps, ro = (list(new[k]) if new.get(k) is not None else None for k in ("old_dirs", "old_stps", "ro"))
    prev_flat_grad, prev_loss = new.get("prev_flat_grad"), new.get("prev_loss")
    al = None
    opt_cond = False
    n_iter = 0
    while n_iter < hp.max_iter:
        n_iter += 1
        new["n_iter"] += 1
        if new["n_iter"] == 1:
            d = -flat_grad
            old_dirs, old_stps, ro = [], [], []
            h_diag = 1
        else:
            y = flat_grad - prev_flat_grad
            s = d * t
            ys = y.dot(s)
            if ys > CURVATURE_MIN:
                while len(old_dirs) >= hp.history_size:  # forget the oldest pair
                    del old_dirs[0], old_stps[0], ro[0]
                old_dirs.append(y)
                old_stps.append(s)
                ro.append(1.0 / ys)
                h_diag = ys / y.dot(y)
            if al is None:  # this step's own copy of the scratch list torch keeps in the state
                al = list(new.get("al") or [None] * hp.history_size)
                al += [None] * (len(old_dirs) - len(al))
                new["al"] = al
            d = two_loop(flat, flat_grad, old_dirs, old_stps, ro, h_diag, al)
        prev_flat_grad, prev_loss = flat_grad, loss  # the gathered gradient is never changed in place

        t = min(1.0, 1.0 / flat.abs_sum(flat_grad)) * hp.lr if new["n_iter"] == 1 else hp.lr
        gtd = flat_grad.dot(d)
        if gtd > -hp.tolerance_change:  # not a descent direction (to the tolerance)
            break
        if hp.line_search_fn is not None:
            loss, flat_grad, t, used = strong_wolfe(
                flat, flat.snapshot(), t, d, loss, flat_grad, gtd, max_ls=hp.max_eval - evals
            )
            flat.add(t, d)
            opt_cond = flat.abs_max(flat_grad) <= hp.tolerance_grad
        else:
            flat.add(t, d)
            used = 0
            if n_iter != hp.max_iter:  # the last iteration leaves the new point to the next step's evaluation
                _, loss, flat_grad = flat.evaluate()
                opt_cond = flat.abs_max(flat_grad) <= hp.tolerance_grad
                used = 1
        evals += used
        new["func_evals"] += used
        if n_iter == hp.max_iter or evals >= hp.max_eval or opt_cond:
            break
        if flat.abs_max(d * t) <= hp.tolerance_change or abs(loss - prev_loss) < hp.tolerance_change:
            break  # no progress
    new.update(d=d, t=t, old_dirs=old_dirs, old_stps=old_stps, ro=ro, H_diag=h_diag)
    new.update(prev_flat_grad=prev_flat_grad, prev_loss=prev_loss)
    return first_loss, new


def two_loop(flat: Flat, g: Any, dirs: list, stps: list, ro: list, h_diag: Any, al: list) -> Any:
    """The direction :math:`-H g` from the pairs (``dirs`` are the :math:`y`, ``stps`` the :math:`s`), newest last;
    ``al`` receives the :math:`\\alpha_i`."""
    q = -g
    for i in range(len(dirs) - 1, -1, -1):
        al[i] = stps[i].dot(q) * ro[i]
        flat.axpy(q, -al[i], dirs[i])
    r = q * h_diag
    for i in range(len(dirs)):
        be_i = dirs[i].dot(r) * ro[i]
        flat.axpy(r, al[i] - be_i, stps[i])
    return r


STATE_DOC: dict[str, str] = {
    "func_evals": "evaluations of the closure, over every step",
    "n_iter": "iterations, over every step",
    "d": "the last direction (a flat vector)",
    "t": "the last step length",
    "old_dirs": "the gradient changes y of the kept pairs, oldest first",
    "old_stps": "the steps s of the kept pairs, oldest first",
    "ro": "1 / (y . s) of each kept pair",
    "H_diag": "the scale gamma of the initial inverse Hessian (1 until a pair is kept)",
    "prev_flat_grad": "the flat gradient at the last iteration's start",
    "prev_loss": "the loss at the last iteration's start",
    "al": "the two-loop recursion's alphas (scratch torch keeps in the state)",
}
STATE_KEYS = tuple(STATE_DOC)
_AFTER_AN_ITERATION = ("d", "t", "old_dirs", "old_stps", "ro", "H_diag", "prev_flat_grad", "prev_loss")


def check_state(entry: Mapping[str, Any], flat: Any) -> None:
    """Raise a ValueError naming what does not fit if ``entry`` cannot be the state of ``flat``'s parameters.

    ``flat`` says what a vector and a number are on its front (``is_vector``, ``is_number``) and how many reals
    the parameters hold (``numel``).
    """
    unknown = sorted(set(entry) - set(STATE_KEYS), key=str)
    if unknown:
        raise ValueError(f"LBFGS state has unknown keys {unknown}; its keys are {', '.join(STATE_KEYS)}")
    for key in ("func_evals", "n_iter"):
        value = entry.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
            raise ValueError(f"LBFGS state {key!r} must be a count (an integer of at least 0), got {value!r}")
    missing = [k for k in _AFTER_AN_ITERATION if k not in entry] if entry.get("n_iter", 0) > 0 else []
    if missing:
        raise ValueError(f"LBFGS state has n_iter={entry['n_iter']} but lacks {', '.join(missing)}")
    for key in ("d", "prev_flat_grad"):
        if key in entry and not flat.is_vector(entry[key]):
            raise ValueError(
                f"LBFGS state {key!r} must be a flat vector of the parameters' {flat.numel} numbers, got "
                f"{_what(entry[key])}"
            )
    for key in ("t", "H_diag", "prev_loss"):
        if key in entry and not flat.is_number(entry[key]):
            raise ValueError(f"LBFGS state {key!r} must be a real number, got {_what(entry[key])}")
    lengths = set()
    for key, ok in (("old_dirs", flat.is_vector), ("old_stps", flat.is_vector), ("ro", flat.is_number)):
        if key not in entry:
            continue
        value = entry[key]
        if not isinstance(value, (list, tuple)) or not all(ok(v) for v in value):
            kind = "flat vectors of the parameters' numbers" if ok is flat.is_vector else "real numbers"
            raise ValueError(f"LBFGS state {key!r} must be a list of {kind}, got {_what(value)}")
        lengths.add(len(value))
    if len(lengths) > 1:
        raise ValueError(f"LBFGS state old_dirs, old_stps and ro must have one entry per pair, got lengths {lengths}")
    al = entry.get("al", [])
    if not isinstance(al, (list, tuple)) or not all(a is None or flat.is_number(a) for a in al):
        raise ValueError(f"LBFGS state 'al' must be a list of real numbers or None, got {_what(al)}")


def _what(value: Any) -> str:
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"a {type(value).__name__} of shape {tuple(shape)} and dtype {getattr(value, 'dtype', '?')}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)} entries"
    return f"{value!r}"


def describe(hp: LBFGSHyperparams) -> str:
    first = f"t_0 = {hp.lr:g} * min(1, 1 / |g_0|_1)"
    later = f"t_k = {hp.lr:g}"
    if hp.line_search_fn == "strong_wolfe":
        first, later = first + ", then a strong-Wolfe line search", later + ", then a strong-Wolfe line search"
    lines = [
        f"L-BFGS on all parameters as one vector x, keeping the last {hp.history_size} pairs (s, y):",
        "  g_k = grad f(x_k), from the closure",
        "  d_k = -H_k g_k by the two-loop recursion over the kept pairs, H_0 = (s.y / y.y of the newest pair) I;",
        "        d_0 = -g_0",
        f"  x_{{k+1}} = x_k + t_k d_k,  {first};  {later}" + ("   (c1 = 1e-4, c2 = 0.9)" if hp.line_search_fn else ""),
        "  keep (s_k, y_k) = (x_{k+1} - x_k, g_{k+1} - g_k) where y_k . s_k > 1e-10",
        f"  one step: at most {hp.max_iter} iterations and {hp.max_eval} closure evaluations; it stops where",
        f"  max |g| <= {hp.tolerance_grad:g}, g . d > -{hp.tolerance_change:g}, max |t d| <= {hp.tolerance_change:g}"
        f" or |f_k+1 - f_k| < {hp.tolerance_change:g}",
    ]
    return "\n".join(lines)


LBFGS = ClosureSpec(
    name="lbfgs",
    title="LBFGS",
    summary="a quasi-Newton direction from the last steps and gradient changes (two-loop recursion); "
    "closure-driven, optionally with a strong-Wolfe line search",
    hyperparams=LBFGSHyperparams,
    describe_rule=describe,
    module=sys.modules[__name__],
    presets={"torch": {}, "paper": {"line_search_fn": "strong_wolfe"}},
    notes={
        "optax": "optax.lbfgs keeps 10 pairs and runs its own zoom line search by default; descend does not run "
        "that variant: torch's rule runs with torch's defaults",
        "keras": "Keras has no L-BFGS: torch's rule runs with torch's defaults",
        "paper": "Liu & Nocedal's line search is More and Thuente's; here it is torch's strong-Wolfe search with the "
        "paper's c1 = 1e-4 and c2 = 0.9; the paper leaves the number of pairs to the user (its code recommends 3 to "
        "7) and torch's 100 is kept",
        "article": not_in_article("L-BFGS"),
    },
    torch_name="LBFGS",
    step=step,
    state_keys=STATE_KEYS,
    state_doc=STATE_DOC,
    check_state=check_state,
    one_iteration={"max_iter": 1},
)
