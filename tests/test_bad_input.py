"""A catalogue of bad input for both fronts, checkpoints and the command line.

Each bad input is refused with a ValueError or TypeError (the command line: exit code 2) whose message names the
argument, the value and what is allowed, and afterwards the parameters and the optimizer's state are byte for byte
what they were. Non-contiguous arrays and tensors are not bad input: they train, with the bits of contiguous copies.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import numpy as np
import pytest

import descend
from descend.algorithms import ELEMENTWISE, REGISTRY

torch = pytest.importorskip("torch")

import descend.torch as dt  # noqa: E402

NAN = float("nan")

from tests.bad_input_helpers import (  # noqa: E402
    FRONTS,
    assert_unchanged,
    numpy_grads,
    numpy_opt,
    params_of,
    snapshot,
    torch_grads,
    torch_opt,
)
from tests.shapes import matrices_only, shape_for  # noqa: E402

# -- every hyperparameter of every algorithm: out of range, NaN, of the wrong type -------------------------------------

# Reals with an upper bound of 1 (the betas pair has its own cases); every other real is bounded below by 0 only.
UPPER = {("momentum", "beta"), ("rmsprop", "alpha"), ("adadelta", "rho")}
# torch.optim.SGD takes any dampening, and so does descend.
ANY_SIGN = {("sgd", "dampening"), ("asgd", "t0")}
# Reals bounded otherwise: a bad value and the allowed range the message gives.
BOUNDS = {("adafactor", "beta2_decay"): (0.5, r"\[-inf, 0.0\]"), ("adafactor", "d"): (0.5, r"\[1.0, inf\]")}
# Pairs other than betas: a bad value at each index, with the message naming it and the range allowed.
PAIRS: dict[str, list[tuple[Any, str]]] = {
    "etas": [
        ((1.0, 1.2), r"Invalid etaminus \(etas\[0\]\) value: 1.0; allowed range is \(0.0, 1.0\)"),
        ((0.0, 1.2), r"Invalid etaminus \(etas\[0\]\) value: 0.0; allowed range is \(0.0, 1.0\)"),
        ((0.5, 1.0), r"Invalid etaplus \(etas\[1\]\) value: 1.0; allowed range is \(1.0, inf\]"),
        ((0.5, NAN), r"Invalid etaplus \(etas\[1\]\) value: nan; it must be a finite number in \(1.0, inf\]"),
    ],
    "step_sizes": [
        ((-1e-6, 50.0), r"Invalid minimal step size \(step_sizes\[0\]\) value: -1e-06; allowed range is \[0.0, inf\]"),
        ((0.1, 0.01), r"Invalid maximal step size \(step_sizes\[1\]\) value: 0.01; allowed range is \[0.1, inf\]"),
        ((1e-6, math.inf), r"Invalid maximal step size \(step_sizes\[1\]\) value: inf; it must be a finite number"),
    ],
    # Adafactor's (epsilon1 or None, epsilon2), refused in torch's words first
    "eps": [
        ((-1.0, 1e-3), r"epsilon1 should be >= 0 but is: -1.0 \(Invalid eps\[0\] value: -1.0; allowed range is \[0.0,"),
        ((None, -1.0), r"epsilon2 should be >= 0 but is: -1.0 \(Invalid eps\[1\] value: -1.0; allowed range is \[0.0,"),
        ((None, NAN), r"Invalid eps\[1\] value: nan; it must be a finite number in \[0.0, inf\]"),
        ((1e-30, math.inf), r"Invalid eps\[1\] value: inf; it must be a finite number in \[0.0, inf\]"),
    ],
}


# Muon's non-negative reals are refused with torch.optim.Muon's wording.
TORCH_WORDED = {
    ("muon", "lr"): "Learning rate",
    ("muon", "weight_decay"): "weight decay",
    ("muon", "momentum"): "momentum",
}
# Muon's Newton-Schulz settings and rate adjustment: torch's messages where torch has them.
MUON_CASES: dict[str, list[tuple[Any, type, str]]] = {
    "ns_coefficients": [
        (
            (3.0, -4.0),
            ValueError,
            r"Coefficients must be a tuple of exactly 3 values; got ns_coefficients=\(3.0, -4.0\)",
        ),
        ("abc", ValueError, r"Coefficients must be a tuple of exactly 3 values; got ns_coefficients='abc'"),
        ((3.0, NAN, 2.0), ValueError, r"Invalid ns_coefficients\[1\] value: nan; it must be a finite number"),
        ((3.0, "b", 2.0), TypeError, r"ns_coefficients\[1\] must be a real number, got 'b' of type str"),
    ],
    "ns_steps": [
        (100, ValueError, r"Number of steps must be less than 100 for computational efficiency; got ns_steps=100"),
        (-1, ValueError, r"ns_steps must be a whole number >= 0, got -1"),
        (2.5, ValueError, r"ns_steps must be a whole number >= 0, got 2.5"),
        (True, ValueError, r"ns_steps must be a whole number >= 0, got True"),
    ],
    "adjust_lr_fn": [
        (
            "arbitrary",
            ValueError,
            r"Adjust learning rate function arbitrary is not supported; allowed values are None, ",
        ),
        (3, ValueError, r"Adjust learning rate function 3 is not supported; allowed values are None, 'original'"),
    ],
}


def _torch_worded(name: str, arg: str) -> list[tuple[str, str, Any, type, str]]:
    label = TORCH_WORDED[name, arg]
    return [
        (name, arg, NAN, ValueError, rf"{label} should be a finite number >= 0 but is: nan \({arg}\)"),
        (name, arg, math.inf, ValueError, rf"{label} should be a finite number >= 0 but is: inf \({arg}\)"),
        (name, arg, -1.0, ValueError, rf"{label} should be >= 0 but is: -1.0 \({arg}\)"),
        (name, arg, "0.1", TypeError, rf"{arg} must be a real number, got '0.1' of type str"),
    ]


def _hyperparameter_cases() -> list[tuple[str, str, Any, type, str]]:
    cases = []
    for name, spec in ELEMENTWISE.items():  # LBFGS (integer counts, None defaults) has its own: tests/test_lbfgs.py
        for f in dataclasses.fields(spec.hyperparams):
            arg, default = f.name, f.default
            if (name, arg) in TORCH_WORDED:
                cases += _torch_worded(name, arg)
            elif name == "muon" and arg in MUON_CASES:
                cases += [(name, arg, value, error, match) for value, error, match in MUON_CASES[arg]]
            elif isinstance(default, bool):
                cases.append((name, arg, "yes", TypeError, rf"{arg} must be True or False, got 'yes'"))
                cases.append((name, arg, None, TypeError, rf"{arg} must be True or False, got None"))
            elif isinstance(default, float):
                cases.append((name, arg, NAN, ValueError, rf"Invalid {arg} value: nan; it must be a finite number in"))
                cases.append((name, arg, math.inf, ValueError, rf"Invalid {arg} value: inf; it must be a finite"))
                cases.append((name, arg, "0.1", TypeError, rf"{arg} must be a real number, got '0.1' of type str"))
                cases.append((name, arg, [0.1], TypeError, rf"{arg} must be a real number, got \[0.1\] of type list"))
                if (name, arg) in BOUNDS:
                    bad, allowed = BOUNDS[name, arg]
                    cases.append(
                        (name, arg, bad, ValueError, rf"Invalid {arg} value: {bad}; allowed range is {allowed}")
                    )
                elif (name, arg) not in ANY_SIGN:
                    low = rf"Invalid {arg} value: -1.0; allowed range is [\[(]0.0,"
                    cases.append((name, arg, -1.0, ValueError, low))
                if (name, arg) in UPPER:
                    high = rf"Invalid {arg} value: 2.0; allowed range is .*1.0[\])]"
                    cases.append((name, arg, 2.0, ValueError, high))
            elif isinstance(default, int):  # a count (Schedule-Free's warmup_steps)
                cases.append((name, arg, -1, ValueError, rf"Invalid {arg} value: -1; allowed values are whole numbers"))
                cases.append((name, arg, 2.5, TypeError, rf"{arg} must be a non-negative whole number, got 2.5"))
                cases.append((name, arg, "3", TypeError, rf"{arg} must be a non-negative whole number, got '3'"))
                cases.append((name, arg, True, TypeError, rf"{arg} must be a non-negative whole number, got True"))
            elif isinstance(default, str):
                cases.append((name, arg, "zzz", ValueError, rf"Invalid {arg} value: 'zzz'; allowed values are '"))
            elif arg == "betas":
                cases += [
                    (name, arg, (1.0, 0.9), ValueError, r"beta parameter at index 0: 1.0; allowed range is \["),
                    (name, arg, (0.9, NAN), ValueError, r"index 1: nan; it must be a finite number in \[0.0, 1"),
                    (name, arg, (0.9, -0.5), ValueError, r"index 1: -0.5; allowed range is \[0.0, 1"),
                    (name, arg, "ab", TypeError, r"betas must be a pair of numbers \(beta1, beta2\), got 'ab'"),
                    (name, arg, (0.9,), TypeError, r"betas must be a pair of numbers \(beta1, beta2\), got \(0.9,\)"),
                ]
            elif arg in PAIRS:
                cases += [(name, arg, value, ValueError, match) for value, match in PAIRS[arg]]
                cases.append((name, arg, "ab", TypeError, rf"{arg} must be a pair of numbers, got 'ab'"))
                cases.append((name, arg, (0.5,), TypeError, rf"{arg} must be a pair of numbers, got \(0.5,\)"))
            else:  # pragma: no cover - a new kind of hyperparameter needs its own cases here
                raise AssertionError(f"no bad values for {name}.{arg} = {default!r}")
    return cases


HYPERPARAMETERS = _hyperparameter_cases()


def _torch_takes(name: str, arg: str) -> bool:
    return arg in dt.OPTIMIZERS[name].__signature__.parameters


@pytest.mark.parametrize("front", ["numpy", "torch"])
@pytest.mark.parametrize(
    ("name", "arg", "value", "error", "match"),
    HYPERPARAMETERS,
    ids=[f"{n}-{a}-{v!r}" for n, a, v, _, _ in HYPERPARAMETERS],
)
def test_bad_hyperparameter(front: str, name: str, arg: str, value: Any, error: type, match: str) -> None:
    """Refused by the constructor, and when set in a param group mid-run, by the next step with nothing changed."""
    if front == "torch" and not _torch_takes(name, arg):
        pytest.skip(f"descend.torch.{REGISTRY[name].title} has no {arg} argument")
    make, step = FRONTS[front]
    with pytest.raises(error, match=match):
        make(name, steps=0, **{arg: value})
    opt = make(name)
    before = snapshot(opt)
    good = opt.param_groups[0][arg]
    opt.param_groups[0][arg] = value
    with pytest.raises(error, match=match):
        step(opt)
    opt.param_groups[0][arg] = good
    assert_unchanged(opt, before)


OTHER_ARGUMENTS = [
    ({"backend": "gpu"}, ValueError, r"Invalid backend 'gpu'; choose one of auto, reference, fused"),
    ({"backend": None}, ValueError, r"Invalid backend None; choose one of auto, reference, fused"),
    ({"convention": "jax"}, ValueError, r"Unknown convention 'jax'; choose one of torch, optax"),
    ({"convention": 3}, ValueError, r"Unknown convention 3; choose one of torch, optax"),
    ({"amsgrad": True, "amsgrad_max": "corrected", "eps_hat": True}, ValueError, r"amsgrad_max='corrected'.*eps_hat"),
]


@pytest.mark.parametrize("front", ["numpy", "torch"])
@pytest.mark.parametrize(("kwargs", "error", "match"), OTHER_ARGUMENTS)
def test_bad_backend_convention_and_combinations(front: str, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        FRONTS[front][0]("adam", steps=0, **kwargs)


def test_torch_only_arguments() -> None:
    with pytest.raises(TypeError, match=r"foreach must be True, False or None, got 'yes' of type str"):
        torch_opt(foreach="yes")
    with pytest.raises(ValueError, match=r"Tensor lr must be 1-element, got one of shape \(2,\)"):
        torch_opt(lr=torch.tensor([0.1, 0.2]))
    with pytest.raises(RuntimeError, match=r"`fused` does not support `differentiable`"):
        torch_opt(differentiable=True, fused=True)


@pytest.mark.parametrize("front", ["numpy", "torch"])
def test_an_unknown_keyword_lists_the_known_ones(front: str) -> None:
    with pytest.raises(TypeError, match=r"gamma.*are lr, betas, eps"):
        FRONTS[front][0]("adam", steps=0, gamma=0.5)


# -- parameters --------------------------------------------------------------------------------------------------------


def _read_only() -> list[np.ndarray]:
    w = np.zeros(3)
    w.flags.writeable = False
    return [w]


def _same_twice() -> list[np.ndarray]:
    w = np.zeros(3)
    return [w, np.ones(2), w]


def _same_in_two_groups() -> list[dict]:
    w = np.zeros(3)
    return [{"params": [w]}, {"params": [w]}]


NUMPY_PARAMS = [
    ("int", lambda: [np.zeros(3, np.int64)], TypeError, r"\[0\] has dtype int64; descend updates float32 and float64"),
    ("float16", lambda: [np.zeros(3, np.float16)], TypeError, r"dtype float16; descend updates float32 and float64"),
    ("complex", lambda: [np.zeros(3, np.complex64)], TypeError, r"dtype complex64; descend updates float32 and"),
    ("bool", lambda: [np.zeros(3, bool)], TypeError, r"dtype bool; descend updates float32 and float64"),
    ("list", lambda: [[1.0, 2.0]], TypeError, r"\['params'\]\[0\] must be a NumPy array, got list"),
    ("tensor", lambda: [torch.zeros(3)], TypeError, r"must be a NumPy array, got Tensor"),
    ("ndarray", lambda: np.zeros(3), TypeError, r"single ndarray of shape \(3,\); wrap it in a list"),
    ("none", lambda: None, TypeError, r"params must be a list of NumPy arrays.*got None"),
    ("empty", lambda: [], ValueError, r"optimizer got an empty parameter list"),
    ("empty generator", lambda: iter([]), ValueError, r"empty parameter list"),
    ("empty group", lambda: [{"params": []}], ValueError, r"param_groups\[0\]\['params'\] is empty"),
    ("group without params", lambda: [{"lr": 0.1}], TypeError, r"a param group must be a dict with a 'params' key"),
    ("repeated", _same_twice, ValueError, r"\['params'\]\[2\] appears more than once.*each array may appear once"),
    ("repeated in groups", _same_in_two_groups, ValueError, r"param_groups\[1\]\['params'\]\[0\] appears more than"),
    ("read-only", _read_only, ValueError, r"\['params'\]\[0\] is read-only; the optimizer updates parameters in place"),
    ("broadcast", lambda: [np.broadcast_to(np.zeros(1), (3,))], ValueError, r"is read-only"),
]


@pytest.mark.parametrize(("what", "make", "error", "match"), NUMPY_PARAMS, ids=[c[0] for c in NUMPY_PARAMS])
def test_numpy_bad_params(what: str, make: Any, error: type, match: str) -> None:
    params = make()
    arrays = isinstance(params, list) and all(isinstance(p, np.ndarray) for p in params)
    copies = [p.copy() for p in params] if arrays else []
    with pytest.raises(error, match=match):
        descend.Adam(params)
    assert all(p.tobytes() == q.tobytes() for p, q in zip(params if arrays else [], copies))


def test_numpy_add_param_group_refuses_and_keeps_the_groups() -> None:
    opt = numpy_opt()
    before = snapshot(opt)
    with pytest.raises(ValueError, match=r"param_groups\[1\]\['params'\]\[0\] appears more than once"):
        opt.add_param_group({"params": [opt.params[0]]})
    with pytest.raises(ValueError, match=r"Invalid lr value: -1"):
        opt.add_param_group({"params": [np.zeros(2)], "lr": -1.0})
    assert len(opt.param_groups) == 1
    assert_unchanged(opt, before)


TORCH_PARAMS = [
    ("ndarray", lambda: [np.zeros(3)], TypeError, r"can only optimize Tensors, but one of the params is numpy"),
    ("float", lambda: [1.0], TypeError, r"can only optimize Tensors, but one of the params is float"),
    ("tensor", lambda: torch.zeros(3, requires_grad=True), TypeError, r"iterable of Tensors.*got torch.FloatTensor"),
    ("empty", lambda: [], ValueError, r"optimizer got an empty parameter list"),
    ("non-leaf", lambda: [torch.zeros(3, requires_grad=True) * 2], ValueError, r"can't optimize a non-leaf Tensor"),
    (
        "repeated in groups",
        lambda: (lambda w: [{"params": [w]}, {"params": [w]}])(torch.nn.Parameter(torch.zeros(3))),
        ValueError,
        r"some parameters appear in more than one parameter group",
    ),
]


@pytest.mark.parametrize(("what", "make", "error", "match"), TORCH_PARAMS, ids=[c[0] for c in TORCH_PARAMS])
def test_torch_bad_params(what: str, make: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        dt.Adam(make())


@pytest.mark.parametrize("dtype", [torch.int32, torch.bool])
def test_torch_non_float_params_are_refused_at_the_step(dtype: torch.dtype) -> None:
    """torch.optim takes any leaf tensor in the constructor; the step refuses one it cannot update."""
    opt = torch_opt()
    odd = torch.zeros(3, dtype=dtype)
    odd.grad = torch.ones(3, dtype=dtype)
    opt.add_param_group({"params": [odd]})
    before = snapshot(opt)
    torch_grads(opt)
    odd.grad = torch.ones(3, dtype=dtype)
    with pytest.raises(TypeError, match=rf"complex64 and complex128 parameters; got one of dtype {dtype}$"):
        opt.step()
    odd.grad = None
    for p in params_of(opt):
        p.grad = None
    assert_unchanged(opt, before)


def test_torch_repeated_param_warns_and_steps_as_torch_does() -> None:
    """torch.optim warns about a tensor repeated in one group (an error in a future torch) and updates it twice;
    descend.torch follows it rather than refusing what torch.optim accepts."""
    results = []
    for cls in (torch.optim.Adam, dt.Adam):
        w = torch.nn.Parameter(torch.ones(3))
        with pytest.warns(UserWarning, match="duplicate parameters"):
            opt = cls([w, w], lr=0.1)
        w.grad = torch.ones(3)
        opt.step()
        results.append(w.detach().clone())
    assert torch.equal(results[0], results[1])


# -- gradients ---------------------------------------------------------------------------------------------------------

NUMPY_GRADS = [
    ("too few", lambda o: numpy_grads(o)[:1], ValueError, r"got 1 gradients for 2 parameters; give one per parameter"),
    ("too many", lambda o: numpy_grads(o) * 2, ValueError, r"got 4 gradients for 2 parameters"),
    (
        "shape",
        lambda o: [np.ones((3, 2)), numpy_grads(o)[1]],
        ValueError,
        r"grads\[0\] has shape \(3, 2\) but its parameter has shape \(2, 3\)",
    ),
    (
        "dtype",
        lambda o: [numpy_grads(o)[0], np.ones(4)],
        TypeError,
        r"grads\[1\] has dtype float64 but its parameter has dtype float32",
    ),
    ("int dtype", lambda o: [np.ones((2, 3), int), numpy_grads(o)[1]], TypeError, r"grads\[0\] has dtype int64"),
    ("list", lambda o: [numpy_grads(o)[0], [1.0] * 4], TypeError, r"grads\[1\] must be a NumPy array or None, got"),
    (
        "tensor",
        lambda o: [torch.ones(2, 3, dtype=torch.float64), numpy_grads(o)[1]],
        TypeError,
        r"grads\[0\] must be a NumPy array or None, got Tensor",
    ),
    (
        "scalar for a vector",
        lambda o: [np.float64(1.0), numpy_grads(o)[1]],
        ValueError,
        r"grads\[0\] has shape \(\) but its parameter has shape \(2, 3\)",
    ),
    ("single array", lambda o: np.ones((2, 3)), TypeError, r"grads must be a list with one array per parameter \(2\)"),
    ("none", lambda o: None, TypeError, r"grads must be a list with one array per parameter, got NoneType"),
    ("dict", lambda o: dict(enumerate(numpy_grads(o))), TypeError, r"grads must be a list.*got dict"),
    ("string", lambda o: "grads", TypeError, r"grads must be a list.*got str"),
]


@pytest.mark.parametrize("backend", ["auto", "reference", "fused"])
@pytest.mark.parametrize(("what", "make", "error", "match"), NUMPY_GRADS, ids=[c[0] for c in NUMPY_GRADS])
def test_numpy_bad_grads_change_nothing(what: str, make: Any, error: type, match: str, backend: str) -> None:
    opt = numpy_opt(backend=backend)
    before = snapshot(opt)
    with pytest.raises(error, match=match):
        opt.step(make(opt))
    assert_unchanged(opt, before)


def _set_grad_data(value: torch.Tensor) -> Any:
    def setter(p: torch.Tensor) -> None:
        p.grad = torch.zeros_like(p)
        p.grad.data = value  # torch checks assignments to .grad, not to its .data

    return setter


def _set_grad_any_dtype(dtype: torch.dtype) -> Any:
    def setter(p: torch.Tensor) -> None:
        p.grad_dtype = None  # torch then allows a gradient of another dtype
        p.grad = torch.zeros(p.shape, dtype=dtype)

    return setter


TORCH_GRADS = [
    (
        "shape",
        _set_grad_data(torch.zeros(7, dtype=torch.float32)),
        ValueError,
        r"a gradient of dtype torch.float32 and shape \(7,\) was found for a parameter of dtype torch.float32 and "
        r"shape \(4,\); they must match",
    ),
    (
        "dtype",
        _set_grad_any_dtype(torch.float64),
        ValueError,
        r"a gradient of dtype torch.float64 and shape \(4,\) was found for a parameter of dtype torch.float32",
    ),
    ("half dtype", _set_grad_any_dtype(torch.float16), ValueError, r"gradient of dtype torch.float16.*they must match"),
]


@pytest.mark.parametrize("backend", ["auto", "reference"])
@pytest.mark.parametrize(("what", "setter", "error", "match"), TORCH_GRADS, ids=[c[0] for c in TORCH_GRADS])
def test_torch_bad_grads_change_nothing(what: str, setter: Any, error: type, match: str, backend: str) -> None:
    opt = torch_opt(backend=backend)
    before = snapshot(opt)
    torch_grads(opt)
    setter(params_of(opt)[1])  # the second parameter: the first is checked and would be updated first
    with pytest.raises(error, match=match):
        opt.step()
    assert_unchanged(opt, before)


def test_torch_refuses_a_meta_gradient_for_a_cpu_parameter() -> None:
    """torch itself refuses to attach a gradient on another device (the assignment raises, naming both devices), so
    no step ever sees one; the parameter and state stay as they were."""
    opt = torch_opt()
    before = snapshot(opt)
    w = params_of(opt)[1]
    with pytest.raises(RuntimeError, match=r"device type 'meta' to a tensor with device type 'cpu'"):
        w.grad = torch.zeros(4, device="meta")
    with pytest.raises(RuntimeError, match="incompatible tensor type"):
        w.grad = torch.zeros(4)
        w.grad.data = torch.zeros(4, device="meta")
    w.grad = None
    assert_unchanged(opt, before)


# -- non-contiguous arrays and tensors train, with the bits of contiguous copies ---------------------------------------


def _strided_views(rng: np.random.Generator, dtype: type) -> list[tuple[str, np.ndarray]]:
    return [
        ("every other column", rng.standard_normal((5, 8)).astype(dtype)[:, ::2]),
        ("transposed", rng.standard_normal((4, 6)).astype(dtype).T),
        ("reversed", rng.standard_normal(9).astype(dtype)[::-1]),
        ("fortran", np.asfortranarray(rng.standard_normal((3, 5)).astype(dtype))),
        ("column", rng.standard_normal((7, 3)).astype(dtype)[:, 1]),
    ]


@pytest.mark.parametrize("name", list(ELEMENTWISE))  # LBFGS: tests/test_lbfgs.py
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_non_contiguous_params_and_grads_train_like_contiguous_copies(name: str, dtype: type) -> None:
    rng = np.random.default_rng(1)
    views = [v for _, v in _strided_views(rng, dtype) if v.ndim == 2 or not matrices_only(name)]
    copies = [np.ascontiguousarray(v).copy() for v in views]
    flat = rng.standard_normal(shape_for(name, (11,))).astype(dtype)
    flat_copy = flat.copy()
    strided_opt = descend.OPTIMIZERS[name]([*views, flat], lr=0.05)
    contiguous_opt = descend.OPTIMIZERS[name]([*copies, flat_copy], lr=0.05, backend="reference")
    for step in range(4):
        grads = [rng.standard_normal(v.shape).astype(dtype) for v in [*views, flat]]
        if step == 1:  # read-only broadcasts with stride 0
            odd = [np.broadcast_to(g.flat[0], g.shape) for g in grads]
        else:  # read-only arrays in other memory orders
            odd = [np.asfortranarray(g) if g.ndim > 1 else np.ascontiguousarray(g[::-1])[::-1] for g in grads]
            for g in odd:
                g.flags.writeable = False
        strided_opt.step(odd)
        contiguous_opt.step([np.ascontiguousarray(g) for g in odd])
    for v, c in zip([*views, flat], [*copies, flat_copy]):
        assert v.dtype == c.dtype and np.ascontiguousarray(v).tobytes() == c.tobytes()
    assert not np.array_equal(copies[0], np.ascontiguousarray(_strided_views(np.random.default_rng(1), dtype)[0][1]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_non_contiguous_params_and_grads_train_like_contiguous_copies(dtype: torch.dtype) -> None:
    """Non-contiguous tensors run the reference with torch ops; so do their contiguous copies here, bit for bit."""
    gen = torch.Generator().manual_seed(2)
    views = [
        torch.randn(6, 4, generator=gen, dtype=dtype).t(),
        torch.randn(5, 8, generator=gen, dtype=dtype)[:, ::2],
        torch.randn(3, 4, 5, generator=gen, dtype=dtype).permute(2, 0, 1),
    ]
    strided = [torch.nn.Parameter(v) for v in views]
    assert not any(p.is_contiguous() for p in strided)
    contiguous = [torch.nn.Parameter(v.detach().clone().contiguous()) for v in views]
    for name in ("adam", "sgd", "rmsprop", "nadam"):
        kwargs = {"lr": 0.05, "momentum": 0.9} if name in ("sgd", "rmsprop") else {"lr": 0.05}
        a = dt.OPTIMIZERS[name](strided, backend="auto", **kwargs)
        b = dt.OPTIMIZERS[name](contiguous, backend="reference", **kwargs)
        for _ in range(3):
            for p, q in zip(strided, contiguous):
                g = torch.randn(p.shape, generator=gen, dtype=dtype)
                p.grad = g.t().contiguous().t() if g.dim() == 2 else g  # a gradient in another memory order
                q.grad = g.contiguous()
            a.step()
            b.step()
        for p, q in zip(strided, contiguous):
            assert p.stride() != q.stride() and torch.equal(p.detach(), q.detach()), name


# -- the command line --------------------------------------------------------------------------------------------------

typer_testing = pytest.importorskip("typer.testing")

CLI = [
    (["describe", "adam", "--convention", "jax"], r"Unknown convention 'jax'; choose one of torch, optax, keras"),
    (["describe", "nosuch"], r"Unknown algorithm 'nosuch'; known algorithms are sgd, momentum"),
    (["fit-line", "--optimizer", "nosuch"], r"Unknown algorithm 'nosuch'; known algorithms are sgd"),
    (["fit-line", "--epochs", "-1"], r"Invalid value for '--epochs': Input should be greater than or equal to 0"),
    (["fit-line", "--points", "0"], r"Invalid value for '--points': Input should be greater than or equal to 1"),
    (["fit-line", "--lr", "-1"], r"Invalid lr value: -1.0; allowed range is \[0.0, inf\]"),
    (["fit-line", "--lr", "nan"], r"Invalid lr value: nan; it must be a finite number"),
    (["fit-line", "--lr", "abc"], r"Invalid value for '--lr': Input should be a valid number"),
    (["fit-line", "--convention", "tf"], r"Unknown convention 'tf'; choose one of"),
    (["fit-line", "--plot", "fit.jpg"], r"'fit.jpg' should end in .png"),
    (["train", "--batch-size", "0"], r"Invalid value for '--batch-size': Input should be greater than or equal to 1"),
    (["train", "--convention", "jax"], r"Unknown convention 'jax'"),
    (["train", "--optimizers", "nosuch"], r"Unknown optimizer 'nosuch'; known optimizers are sgd"),
    (["train", "--epochs", "0"], r"Invalid value for '--epochs': Input should be greater than or equal to 1"),
    (["compare", "--steps", "abc"], r"Invalid value for '--steps': Input should be a valid integer"),
    (["compare", "--jobs", "0"], r"Invalid value for '--jobs': Input should be greater than or equal to 1"),
    (["compare", "--lr", "inf"], r"lr must be a positive finite number, got inf"),
    (["compare", "--lr", "nan"], r"lr must be a positive finite number, got nan"),
    (["compare", "--bogus"], r"No such option: --bogus"),
    (["nosuch"], r"No such command 'nosuch'"),
]


@pytest.mark.parametrize(("args", "match"), CLI, ids=[" ".join(a) for a, _ in CLI])
def test_cli_bad_arguments_exit_2_with_a_message(tmp_path: Any, monkeypatch: Any, args: list, match: str) -> None:
    from descend.cli import app

    monkeypatch.chdir(tmp_path)
    result = typer_testing.CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())  # rich wraps and boxes the message
    assert re.search(match, text), text
    assert not [p for p in tmp_path.iterdir() if p.name != ".hypothesis"], "a refused command wrote files"
