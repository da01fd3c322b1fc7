"""descend.torch through torch's own optimizer test database (``common_optimizers.optim_db``).

For every descend.torch class with a torch.optim counterpart: each hyperparameter set torch's tests run (with the
``differentiable`` and ``fused`` variants torch adds on the CPU) is accepted and gives, after 20 steps, the parameters
and every state slot torch.optim gives; each bad input torch's tests list is refused with torch's exception type and a
message matching torch's regex. Inputs torch lists for CUDA only (``capturable=True``) are listed and skipped with the
reason.
"""

from __future__ import annotations

import re
import warnings
from contextlib import contextmanager

import pytest

torch = pytest.importorskip("torch")

import descend.torch as dt  # noqa: E402
from tests.optim_db import cuda_only_inputs, db_error_inputs, db_inputs, skip_reason  # noqa: E402
from tests.shapes import shape_for, torch_grad  # noqa: E402
from tests.tolerances import assert_close, torch_tolerance  # noqa: E402

STEPS = 20
INPUTS = db_inputs("cpu")
ERROR_INPUTS = db_error_inputs("cpu")
CUDA_ONLY = cuda_only_inputs()


def twin(name: str) -> type:
    return getattr(torch.optim, dt.OPTIMIZERS[name].spec.torch_name)


@contextmanager
def default_dtype(dtype: torch.dtype):
    """float64 runs use a float64 default dtype, so torch keeps its step count (and NAdam's mu_product) in float64:
    under a float32 default its differentiable path computes the bias corrections from a float32 step tensor, which
    differs from descend's float64 host scalars by float32 rounding."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64 if dtype == torch.float64 else torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def make_params(dtype: torch.dtype, differentiable: bool, name: str = "adam") -> list[torch.Tensor]:
    """Two tensors (a matrix and a vector, or for Muon two matrices); plain ones (not requiring grad) for a
    differentiable step, which torch.optim runs with gradients enabled and so cannot write into a leaf that requires
    grad; nn.Parameters otherwise."""
    gen = torch.Generator().manual_seed(0)
    values = [
        torch.randn(5, 3, generator=gen, dtype=torch.float64),
        torch.randn(shape_for(name, (4,)), generator=gen, dtype=torch.float64),
    ]
    return [v.to(dtype) if differentiable else torch.nn.Parameter(v.to(dtype)) for v in values]


def set_grads(params: list[torch.Tensor], step: int, cls: type = dt.Adam) -> None:
    """Gradients in the form ``cls`` takes: sparse ones that list every entry for SparseAdam (torch's database marks
    it ``only_supports_sparse_grads``), dense ones otherwise."""
    gen = torch.Generator().manual_seed(1000 + step)
    for p in params:
        noise = torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype)
        p.grad = torch_grad(cls, (p.detach() * 0.5 + noise).to(p.dtype))


def loss_closure(params: list[torch.Tensor]) -> object:
    """For a closure-driven class (LBFGS): a fixed smooth loss of the parameters, its gradients filled in."""
    gen = torch.Generator().manual_seed(7)
    targets = [torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype) for p in params]

    def closure() -> torch.Tensor:
        for p in params:
            p.grad = None
        loss = sum((0.5 * (p - c) ** 2 + 0.1 * p**4).sum() for p, c in zip(params, targets))
        loss.backward()
        return loss

    return closure


def close_state(mine: object, ref: object, tol: dict, what: str) -> None:
    """A state value against torch's: tensors of the same dtype within ``tol``, lists entry by entry, numbers."""
    if isinstance(ref, list):
        assert isinstance(mine, list) and len(mine) == len(ref), what
        for i, (x, y) in enumerate(zip(mine, ref)):
            close_state(x, y, tol, f"{what}[{i}]")
    elif isinstance(ref, torch.Tensor):
        assert isinstance(mine, torch.Tensor) and mine.dtype == ref.dtype, what
        assert_close(mine, ref, tol, what)
    elif ref is None or isinstance(ref, int):
        assert mine == ref, what
    else:
        assert_close(mine, ref, tol, what)


def fresh(kwargs: dict) -> dict:
    """A copy of torch's kwargs, with tensors copied, so neither optimizer sees the other's."""
    return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}


def same_value(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return torch.as_tensor(a).tolist() == torch.as_tensor(b).tolist()
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return a == b


def input_id(entry: tuple) -> str:
    name, desc, _ = entry
    return f"{name}-{desc}".replace(" ", "_")


def test_the_database_is_complete() -> None:
    """Every shared class has inputs and error inputs, so an OptimizerInfo that vanishes from torch shows here."""
    shared = {name for name, cls in dt.OPTIMIZERS.items() if cls.spec.torch_name}
    assert {name for name, _, _ in INPUTS} == shared
    assert {name for name, _ in ERROR_INPUTS} == shared
    assert len(ERROR_INPUTS) >= 75 and len(INPUTS) >= 140


@pytest.mark.parametrize("entry", INPUTS, ids=input_id)
def test_accepts_torchs_inputs(entry: tuple) -> None:
    name, _, kwargs = entry
    differentiable = bool(kwargs.get("differentiable"))
    ours = dt.OPTIMIZERS[name](make_params(torch.float32, differentiable, name), **fresh(kwargs))
    theirs = twin(name)(make_params(torch.float32, differentiable, name), **fresh(kwargs))
    for key, value in theirs.param_groups[0].items():
        if key != "params":
            assert same_value(ours.param_groups[0][key], value), f"{key}: {ours.param_groups[0][key]!r} != {value!r}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("entry", INPUTS, ids=input_id)
def test_matches_torch_on_its_inputs(entry: tuple, dtype: torch.dtype) -> None:
    name, _, kwargs = entry
    differentiable = bool(kwargs.get("differentiable"))
    with default_dtype(dtype):
        a, b = make_params(dtype, differentiable, name), make_params(dtype, differentiable, name)
        ours, theirs = dt.OPTIMIZERS[name](a, **fresh(kwargs)), twin(name)(b, **fresh(kwargs))
        start = [p.detach().clone() for p in a]
        closures = (loss_closure(a), loss_closure(b)) if not ours.spec.elementwise else None
        for t in range(STEPS):
            if closures:  # a closure-driven class evaluates the loss where it chooses
                ours.step(closures[0])
                theirs.step(closures[1])
                continue
            set_grads(a, t, dt.OPTIMIZERS[name])
            set_grads(b, t, dt.OPTIMIZERS[name])
            ours.step()
            theirs.step()
    assert any(not torch.equal(p, s) for p, s in zip(a, start)), "the parameters did not move"
    tol = torch_tolerance(dtype, name)
    if name == "sparse_adam" and isinstance(kwargs.get("lr"), torch.Tensor) and dtype == torch.float64:
        # torch's SparseAdam multiplies a tensor lr by the bias corrections in the tensor's dtype (float32 here);
        # descend computes the step size in float64 (docs/guides/torch.md lists this difference)
        tol = torch_tolerance(torch.float32)
    for i, (p, q) in enumerate(zip(a, b)):
        assert_close(p, q, tol, f"param {i}")
        mine, ref = ours.state[p], theirs.state[q]
        assert list(mine) == list(ref), f"state keys of param {i}: {list(mine)} != {list(ref)}"
        if closures:
            for key, value in ref.items():
                close_state(mine[key], value, tol, f"state {key!r} of param {i}")
            continue
        for key, value in ref.items():
            if not isinstance(value, torch.Tensor):  # SparseAdam's step is an int, as torch's
                assert type(mine[key]) is type(value) and mine[key] == value, f"state {key!r} of param {i}"
            elif key == "step" and kwargs.get("fused") and dtype == torch.float64:
                # torch's fused path keeps the step in float32 whatever the default dtype; descend keeps it in the
                # default's scalar dtype on every path (docs/guides/torch.md lists this difference)
                assert mine[key].dtype == torch.float64 and value.dtype == torch.float32
            else:
                assert mine[key].dtype == value.dtype, f"state {key!r} of param {i}"
            if not isinstance(value, torch.Tensor):
                continue
            if key == "step":
                assert mine[key].item() == value.item()
            else:
                assert_close(mine[key], value, tol, f"state {key!r} of param {i}")


def error_id(entry: tuple) -> str:
    name, e = entry
    return f"{name}-{e.optimizer_error_input.desc}".replace(" ", "_")


@pytest.mark.parametrize("entry", ERROR_INPUTS, ids=error_id)
def test_refuses_torchs_error_inputs(entry: tuple) -> None:
    from torch.testing._internal.common_optimizers import OptimizerErrorEnum

    name, e = entry
    oi = e.optimizer_error_input
    cls = dt.OPTIMIZERS[name]
    if issubclass(e.error_type, Warning):
        with pytest.warns(e.error_type, match=e.error_regex):
            opt = cls(oi.params, **oi.kwargs)
            if e.error_on == OptimizerErrorEnum.STEP_ERROR:
                opt.step()
        return
    with pytest.raises(e.error_type) as info:
        opt = cls(oi.params, **oi.kwargs)
        if e.error_on == OptimizerErrorEnum.STEP_ERROR:
            opt.step()
    assert type(info.value) is e.error_type or issubclass(type(info.value), e.error_type)
    assert re.search(e.error_regex, str(info.value)), f"{str(info.value)!r} does not match torch's {e.error_regex!r}"


@pytest.mark.parametrize("entry", CUDA_ONLY, ids=input_id)
def test_cuda_only_inputs_are_skipped_with_a_reason(entry: tuple) -> None:
    """torch lists these for CUDA and XPU only; each must have a reason here, so a new kind of input shows."""
    reason = skip_reason(entry[2])
    assert reason is not None, f"torch's CUDA-only input {entry[1]!r} has no skip reason in tests/optim_db.py"
    pytest.skip(reason)


@pytest.mark.parametrize("name", sorted({name for name, _, kwargs in CUDA_ONLY}))
def test_capturable_is_refused_clearly(name: str) -> None:
    with pytest.raises(ValueError, match=r"capturable=True.*CUDA graph"):
        dt.OPTIMIZERS[name](make_params(torch.float32, False), capturable=True)


@pytest.mark.parametrize("name", [n for n, cls in dt.OPTIMIZERS.items() if "fused" in cls._options])
@pytest.mark.parametrize(
    ("kwargs", "regex"),
    [
        ({"foreach": True, "fused": True}, "`fused` and `foreach` cannot be `True` together"),
        ({"fused": True, "differentiable": True}, "`fused` does not support `differentiable`"),
    ],
)
def test_fused_contradictions_as_torch(name: str, kwargs: dict, regex: str) -> None:
    """torch's database lists these for CUDA tensors; torch raises the same for CPU ones, and so does descend."""
    with pytest.raises(RuntimeError, match=regex):
        twin(name)(make_params(torch.float32, False), **kwargs)
    with pytest.raises(RuntimeError, match=regex) as info:
        dt.OPTIMIZERS[name](make_params(torch.float32, False), **kwargs)
    assert "fused" in str(info.value) and ("foreach" in str(info.value) or "differentiable" in str(info.value))


def test_warnings_are_torchs() -> None:
    """A param listed twice in a group warns as torch warns (one of the database's error inputs is this warning)."""
    w = torch.nn.Parameter(torch.ones(2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dt.Adam([w, w])
    assert any("duplicate parameters" in str(c.message) for c in caught)
