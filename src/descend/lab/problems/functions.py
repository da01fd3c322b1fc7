"""Two-dimensional test functions with known minima, and the start points peers use.

Run 0 starts at the function's usual start point; every further run starts at that point moved by a Gaussian jitter
drawn from the run's own seed, so a success rate over runs says how much the result depends on the start.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from descend.lab.problems.base import Problem

__all__ = ["Function2D", "make_functions"]

Fn = Callable[[np.ndarray, np.ndarray], np.ndarray]
Grad = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class Function2D(Problem):
    """A function of ``(x, y)`` with an analytic gradient.

    Attributes:
        fn: ``(x, y) -> f`` on arrays.
        gradient: ``(x, y) -> (df/dx, df/dy)`` on arrays.
        start: the usual start point.
        jitter: the standard deviation of the start points of runs after the first.
        bounds: if given, ``(xmin, xmax, ymin, ymax)`` of a feasible box the iterates are clipped to.
        noise: the standard deviation of Gaussian noise added to each gradient component (0: exact gradients).
    """

    fn: Fn | None = None
    gradient: Grad | None = None
    start: tuple[float, float] = (0.0, 0.0)
    jitter: float = 0.1
    bounds: tuple[float, float, float, float] | None = None
    noise: float = 0.0
    settings: dict[str, float] = field(default_factory=dict)

    def init(self, rngs: Sequence[np.random.Generator]) -> list[np.ndarray]:
        starts = np.empty((len(rngs), 2))
        for i, rng in enumerate(rngs):
            offset = rng.normal(0.0, self.jitter, size=2)
            starts[i] = self.start if i == 0 else np.asarray(self.start) + offset
        out = [starts]
        self.project(out)
        return out

    def loss(self, params: Sequence[np.ndarray]) -> np.ndarray:
        p = params[0]
        with np.errstate(all="ignore"):
            return np.asarray(self.fn(p[:, 0], p[:, 1]), dtype=np.float64)

    def grad(self, params: Sequence[np.ndarray], step: int, rngs: Sequence[np.random.Generator]) -> list[np.ndarray]:
        p = params[0]
        g = np.empty_like(p)
        with np.errstate(all="ignore"):
            g[:, 0], g[:, 1] = self.gradient(p[:, 0], p[:, 1])
        if self.noise > 0:
            g += np.stack([rng.normal(0.0, self.noise, size=2) for rng in rngs])
        return [g]

    def project(self, params: Sequence[np.ndarray]) -> None:
        if self.bounds is not None:
            x0, x1, y0, y1 = self.bounds
            np.clip(params[0][:, 0], x0, x1, out=params[0][:, 0])
            np.clip(params[0][:, 1], y0, y1, out=params[0][:, 1])

    def point(self, params: Sequence[np.ndarray]) -> np.ndarray:
        return params[0]

    def surface(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The function on a grid, for drawing."""
        with np.errstate(all="ignore"):
            return np.broadcast_to(self.fn(x, y), np.broadcast(x, y).shape)


# -- the functions ----------------------------------------------------------------------------------------------------


def _rosenbrock(x, y):
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def _rosenbrock_grad(x, y):
    return -2 * (1 - x) - 400 * x * (y - x**2), 200 * (y - x**2)


def _beale(x, y):
    y2 = y * y
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y2) ** 2 + (2.625 - x + x * y2 * y) ** 2


def _beale_grad(x, y):
    y2 = y * y
    y3 = y2 * y
    a, b, c = 2 * (1.5 - x + x * y), 2 * (2.25 - x + x * y2), 2 * (2.625 - x + x * y3)
    return a * (y - 1) + b * (y2 - 1) + c * (y3 - 1), x * (a + 2 * b * y + 3 * c * y2)


def _booth(x, y):
    return (x + 2 * y - 7) ** 2 + (2 * x + y - 5) ** 2


def _booth_grad(x, y):
    a, b = x + 2 * y - 7, 2 * x + y - 5
    return 2 * a + 4 * b, 4 * a + 2 * b


def _himmelblau(x, y):
    return (x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2


def _himmelblau_grad(x, y):
    a, b = x**2 + y - 11, x + y**2 - 7
    return 4 * x * a + 2 * b, 2 * a + 4 * y * b


def _rastrigin(x, y):
    return 20 + x**2 - 10 * np.cos(2 * np.pi * x) + y**2 - 10 * np.cos(2 * np.pi * y)


def _rastrigin_grad(x, y):
    return 2 * x + 20 * np.pi * np.sin(2 * np.pi * x), 2 * y + 20 * np.pi * np.sin(2 * np.pi * y)


def _ackley(x, y):
    r = np.sqrt(0.5 * (x**2 + y**2))
    return -20 * np.exp(-0.2 * r) - np.exp(0.5 * (np.cos(2 * np.pi * x) + np.cos(2 * np.pi * y))) + np.e + 20


def _ackley_grad(x, y):
    r = np.sqrt(0.5 * (x**2 + y**2))
    safe = np.where(r > 0, r, 1.0)
    radial = np.where(r > 0, 2.0 * np.exp(-0.2 * r) / safe, 0.0)  # d/dx of -20 exp(-0.2 r) is 2 exp(-0.2 r) x / r
    wave = np.exp(0.5 * (np.cos(2 * np.pi * x) + np.cos(2 * np.pi * y))) * np.pi
    return radial * x + wave * np.sin(2 * np.pi * x), radial * y + wave * np.sin(2 * np.pi * y)


def _saddle(x, y):
    return x**2 - y**2


def _saddle_grad(x, y):
    return 2 * x, -2 * y


def _quadratic(eigen: tuple[float, float], angle: float, centre: tuple[float, float]) -> tuple[Fn, Grad, np.ndarray]:
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    a = rot @ np.diag(eigen) @ rot.T
    cx, cy = centre

    def fn(x, y):
        u, v = x - cx, y - cy
        return 0.5 * (a[0, 0] * u * u + 2 * a[0, 1] * u * v + a[1, 1] * v * v)

    def grad(x, y):
        u, v = x - cx, y - cy
        return a[0, 0] * u + a[0, 1] * v, a[0, 1] * u + a[1, 1] * v

    return fn, grad, a


def quadratic(
    condition: float = 100.0, curvature: float = 1.0, angle_deg: float = 30.0, noise: float = 0.0, name: str = ""
) -> Function2D:
    """A quadratic ``0.5 * (p - c)^T A (p - c)`` whose Hessian ``A`` has eigenvalues ``curvature / condition`` and
    ``curvature``, its axes turned by ``angle_deg`` (so a per-coordinate step size cannot undo the conditioning for
    free).

    With ``noise > 0`` every gradient gets independent Gaussian noise of that standard deviation per coordinate.
    The minimum is at (1, 1) rather than the origin, so that weight decay (which pulls towards 0) gets no free help.
    Gradient descent's best constant rate for the isotropic case (``condition = 1``) is ``1 / curvature``: it lands
    on the minimum in one step.
    """
    if not condition >= 1.0:
        raise ValueError(f"condition must be a number >= 1, got {condition!r}")
    if not curvature > 0.0:
        raise ValueError(f"curvature must be a positive number, got {curvature!r}")
    centre = (1.0, 1.0)
    fn, grad, _ = _quadratic((curvature / condition, curvature), np.deg2rad(angle_deg), centre)
    noisy = noise > 0
    return Function2D(
        name=name or ("noisy-quadratic" if noisy else "quadratic"),
        title=(
            f"Noisy quadratic (gradient noise sd {noise:g})"
            if noisy
            else f"Ill-conditioned quadratic (κ = {condition:g})"
        ),
        family="stochastic" if noisy else "function",
        description=(
            f"0.5·(p−c)ᵀA(p−c), c = (1, 1), with eigenvalues {curvature / condition:g} and {curvature:g}, "
            f"axes turned {angle_deg:g}°"
            + (f"; every gradient carries Gaussian noise of sd {noise:g}." if noisy else ".")
        ),
        f_min=0.0,
        tol=5e-2 if noisy else 1e-6,
        optima=np.array([centre]),
        box=(-5.0, 5.0, -5.0, 5.0),
        fn=fn,
        gradient=grad,
        start=(-4.0, 3.0) if not noisy else (3.0, 3.0),
        jitter=0.5,
        noise=noise,
        references="The ill-conditioned and noisy quadratics of textbooks (Goh, 'Why momentum really works', 2017)",
        settings={"condition": condition, "curvature": curvature, "angle_deg": angle_deg, "noise": noise},
    )


def make_functions() -> list[Function2D]:
    """The 2-D test functions, in the order they are listed."""
    sfu = "Surjanovic & Bingham, Virtual Library of Simulation Experiments (sfu.ca/~ssurjano)"
    return [
        Function2D(
            "rosenbrock",
            "Rosenbrock (1−x)² + 100(y−x²)²",
            "function",
            "A long curved valley: easy to reach, slow to follow. Minimum 0 at (1, 1); start (−2, 2). 1000 steps: "
            "at 500 no tuned optimizer gets within the tolerance, at 1000 the adaptive ones that follow the valley "
            "do and the others do not.",
            default_steps=1000,
            f_min=0.0,
            tol=1e-4,
            optima=np.array([[1.0, 1.0]]),
            box=(-2.5, 2.5, -1.0, 4.0),
            fn=_rosenbrock,
            gradient=_rosenbrock_grad,
            start=(-2.0, 2.0),
            jitter=0.2,
            references=f"{sfu}; start point and box as in pytorch_optimizer's visualisation",
        ),
        Function2D(
            "beale",
            "Beale",
            "function",
            "Flat plateaus and sharp ridges. Minimum 0 at (3, 0.5); start (1, 1.5).",
            default_steps=400,
            f_min=0.0,
            tol=1e-4,
            optima=np.array([[3.0, 0.5]]),
            box=(-2.5, 4.5, -2.5, 2.5),
            fn=_beale,
            gradient=_beale_grad,
            start=(1.0, 1.5),
            jitter=0.2,
            references=sfu,
        ),
        Function2D(
            "booth",
            "Booth (x+2y−7)² + (2x+y−5)²",
            "function",
            "A plain convex quadratic bowl. Minimum 0 at (1, 3); start (−6, −6).",
            default_steps=300,
            f_min=0.0,
            tol=1e-6,
            optima=np.array([[1.0, 3.0]]),
            box=(-10.0, 10.0, -10.0, 10.0),
            fn=_booth,
            gradient=_booth_grad,
            start=(-6.0, -6.0),
            jitter=0.5,
            references=sfu,
        ),
        Function2D(
            "himmelblau",
            "Himmelblau (x²+y−11)² + (x+y²−7)²",
            "function",
            "Four equal minima (value 0); which one a run reaches depends on its path. Start (0, 0).",
            default_steps=300,
            f_min=0.0,
            tol=1e-6,
            optima=np.array([[3.0, 2.0], [-2.805118, 3.131312], [-3.779310, -3.283186], [3.584428, -1.848126]]),
            box=(-5.0, 5.0, -5.0, 5.0),
            fn=_himmelblau,
            gradient=_himmelblau_grad,
            start=(0.0, 0.0),
            jitter=0.5,
            references=sfu,
        ),
        Function2D(
            "rastrigin",
            "Rastrigin",
            "function",
            "A bowl covered in local minima. Global minimum 0 at (0, 0); start (−2, 3.5). Success is ending within 2 "
            "of the minimum: in its basin or one of the four next to it (f ≈ 0.99), a dozen ridges from the start. "
            "Gradient steps stop in the first basin they fall into (f ≈ 12.9 near the start), so a tighter tolerance "
            "is met by no optimizer whatever the budget and tells them apart not at all.",
            default_steps=300,
            f_min=0.0,
            tol=2.0,
            optima=np.zeros((1, 2)),
            box=(-4.5, 4.5, -4.5, 4.5),
            fn=_rastrigin,
            gradient=_rastrigin_grad,
            start=(-2.0, 3.5),
            jitter=0.3,
            references=f"{sfu}; start point as in pytorch_optimizer's visualisation",
        ),
        Function2D(
            "ackley",
            "Ackley",
            "function",
            "A nearly flat outer region with a deep hole. Global minimum 0 at (0, 0); start (−2.5, 3).",
            default_steps=300,
            f_min=0.0,
            tol=1e-3,
            optima=np.zeros((1, 2)),
            box=(-4.5, 4.5, -4.5, 4.5),
            fn=_ackley,
            gradient=_ackley_grad,
            start=(-2.5, 3.0),
            jitter=0.3,
            references=sfu,
        ),
        Function2D(
            "saddle",
            "Saddle x² − y² on [−2, 2]²",
            "function",
            "A saddle point at (0, 0); the start (1, 0.001) sits almost on the ridge, where the escaping direction's "
            "gradient is tiny. Iterates are clipped to the square, whose minimum is −4 at (0, ±2).",
            default_steps=200,
            f_min=-4.0,
            tol=1e-3,
            optima=np.array([[0.0, 2.0], [0.0, -2.0]]),
            box=(-2.0, 2.0, -2.0, 2.0),
            fn=_saddle,
            gradient=_saddle_grad,
            start=(1.0, 1e-3),
            jitter=0.01,
            bounds=(-2.0, 2.0, -2.0, 2.0),
            references="The saddle of Radford's and Ruder's optimizer animations (ruder.io)",
        ),
        quadratic(condition=100.0),
        quadratic(condition=10.0, noise=1.0),
    ]


def from_expression(
    text: str, start: tuple[float, float] = (-1.5, 1.5), box: tuple[float, float, float, float] | None = None
) -> Function2D:
    """A problem made of a user's own function of ``x`` and ``y`` (see :mod:`descend.lab.expr` for what is allowed).

    Its minimum is not known, so results report the final loss only. The drawing box defaults to the square of
    half-width 3 around the start, widened to hold the origin.

    Raises:
        descend.lab.expr.ExpressionError: the text is refused; the message says why.
    """
    from descend.lab.expr import parse

    expression = parse(text)
    sx, sy = (float(v) for v in start)
    if not (np.isfinite(sx) and np.isfinite(sy)):
        raise ValueError(f"the start point must be two finite numbers, got {start!r}")
    at_start = float(expression.value(sx, sy))
    if not np.isfinite(at_start):
        what = "not defined (outside the function's domain)" if np.isnan(at_start) else "infinite"
        raise ValueError(
            f"f({sx:g}, {sy:g}) = {expression.text} is {what} at the start point; choose another with --start"
        )
    if box is None:
        box = (min(sx - 3, -3.0), max(sx + 3, 3.0), min(sy - 3, -3.0), max(sy + 3, 3.0))
    return Function2D(
        name="expr",
        title=f"f(x, y) = {expression.text}",
        family="function",
        description=f"The user's function {expression.text}, differentiated symbolically; start ({sx:g}, {sy:g}).",
        default_steps=300,
        box=tuple(float(b) for b in box),
        fn=expression.value,
        gradient=expression.gradient,
        start=(sx, sy),
        jitter=0.1,
        references="given on the command line",
        settings={"expr": expression.text, "start": [sx, sy]},
    )
