r"""The strong-Wolfe line search L-BFGS runs with ``line_search_fn="strong_wolfe"``: torch's rule, written once for
both fronts.

Along a descent direction :math:`d` from :math:`x` (with :math:`\phi(t) = f(x + t d)`, so :math:`\phi'(0) = g^\top d
< 0`), it looks for a step :math:`t` with

.. math::

    \phi(t) \le \phi(0) + c_1 t\, \phi'(0) \quad\text{and}\quad |\phi'(t)| \le c_2\, |\phi'(0)|,

:math:`c_1 = 10^{-4}`, :math:`c_2 = 0.9`, in two phases (Nocedal & Wright, Algorithms 3.5 and 3.6): first it grows
the step until an interval is known to hold such a point (the sufficient decrease fails, the value stops falling, or
the slope turns non-negative), each new trial a cubic fit of the last two points bounded to
:math:`[t + 0.01 (t - t_{prev}),\ 10 t]`; then it shrinks that interval by cubic interpolation between its ends
(``zoom``), moving a trial that falls within a tenth of the interval's width from an end to that distance when the
previous trial was also that close, until the conditions hold, the interval's width times :math:`\max |d|` falls under
:math:`10^{-9}`, or the evaluations run out. It returns the lowest point found, with its loss and gradient.

The scalars keep the types torch's code gives them (a loss is a Python float, a slope a 0-d array or tensor of the
parameters' dtype), so every comparison is made in the same precision as torch's.
"""

from __future__ import annotations

from typing import Any

__all__ = ["cubic_minimum", "strong_wolfe"]

C1 = 1e-4  # sufficient decrease
C2 = 0.9  # curvature
WIDTH_TOLERANCE = 1e-9  # torch's line search always uses its own default, whatever the group's tolerance_change


def cubic_minimum(
    flat: Any, x1: Any, f1: Any, g1: Any, x2: Any, f2: Any, g2: Any, bounds: tuple[Any, Any] | None = None
) -> Any:
    """The minimiser of the cubic through ``(x1, f1)`` and ``(x2, f2)`` with slopes ``g1`` and ``g2``, clipped to
    ``bounds`` (by default the interval between the two points); the middle of the bounds where the cubic has no
    minimum."""
    low, high = bounds if bounds is not None else ((x1, x2) if x1 <= x2 else (x2, x1))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    disc = d1**2 - g1 * g2
    if not disc >= 0:
        return (low + high) / 2.0
    d2 = flat.sqrt(disc)
    if x1 <= x2:
        at = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    else:
        at = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    return min(max(at, low), high)


def strong_wolfe(flat: Any, x: Any, t: Any, d: Any, f: float, g: Any, gtd: Any, max_ls: int) -> tuple[Any, ...]:
    """Search along ``d`` from the parameters ``x`` (a snapshot, see :class:`descend.algorithms.lbfgs.Flat`).

    Args:
        flat: the front's closure and vector operations.
        x: the parameters' values at ``t = 0``; every trial starts from them and puts them back.
        t: the first trial step.
        d: the direction.
        f, g, gtd: the loss, flat gradient and slope ``g . d`` at ``x``.
        max_ls: the most evaluations of the closure.

    Returns:
        ``(loss, flat gradient, step, evaluations)`` at the chosen step.
    """
    d_norm = flat.abs_max(d)
    g = flat.clone(g)
    f_new, g_new = flat.evaluate_at(x, t, d)
    evals = 1
    gtd_new = g_new.dot(d)

    # Phase 1: find an interval that holds a point satisfying the conditions (or the point itself).
    t_prev, f_prev, g_prev, gtd_prev = 0, f, g, gtd
    done = False
    it = 0
    bracket: list[Any] = []
    bracket_f: list[Any] = []
    bracket_g: list[Any] = []
    bracket_gtd: list[Any] = []
    while it < max_ls:
        if f_new > (f + C1 * t * gtd) or (it > 1 and f_new >= f_prev):
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, flat.clone(g_new)], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -C2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, flat.clone(g_new)], [gtd_prev, gtd_new]
            break
        # extrapolate: a cubic step, at least a hundredth of the last step further and at most ten times as far
        lower, upper = t + 0.01 * (t - t_prev), t * 10
        previous = t
        t = cubic_minimum(flat, t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(lower, upper))
        t_prev, f_prev, g_prev, gtd_prev = previous, f_new, flat.clone(g_new), gtd_new
        f_new, g_new = flat.evaluate_at(x, t, d)
        evals += 1
        gtd_new = g_new.dot(d)
        it += 1
    if it == max_ls:  # the evaluations ran out while growing the step: between the start and the last trial
        bracket, bracket_f, bracket_g = [0, t], [f, f_new], [g, g_new]

    # Phase 2 (zoom): shrink the interval until a point in it satisfies the conditions.
    stuck = False
    low, high = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and it < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < WIDTH_TOLERANCE:
            break
        t = cubic_minimum(flat, bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1])
        # a trial within a tenth of the width from an end is kept once; twice in a row, or outside, it is moved
        margin = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < margin:
            if stuck or t >= max(bracket) or t <= min(bracket):
                t = max(bracket) - margin if abs(t - max(bracket)) < abs(t - min(bracket)) else min(bracket) + margin
                stuck = False
            else:
                stuck = True
        else:
            stuck = False
        f_new, g_new = flat.evaluate_at(x, t, d)
        evals += 1
        gtd_new = g_new.dot(d)
        it += 1
        if f_new > (f + C1 * t * gtd) or f_new >= bracket_f[low]:
            # not low enough: the trial replaces the high end
            bracket[high], bracket_f[high] = t, f_new
            bracket_g[high], bracket_gtd[high] = flat.clone(g_new), gtd_new
            low, high = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -C2 * gtd:
                done = True
            elif gtd_new * (bracket[high] - bracket[low]) >= 0:
                # the minimum lies on the other side of the trial: the old low end becomes the high end
                bracket[high], bracket_f[high] = bracket[low], bracket_f[low]
                bracket_g[high], bracket_gtd[high] = bracket_g[low], bracket_gtd[low]
            bracket[low], bracket_f[low] = t, f_new
            bracket_g[low], bracket_gtd[low] = flat.clone(g_new), gtd_new
    return bracket_f[low], bracket_g[low], bracket[low], evals
