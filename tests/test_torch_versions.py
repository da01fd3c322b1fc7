"""descend.torch's steps advance the autograd version of every tensor they write, as torch's in-place ops do.

A backward pass through a graph that saved a parameter (or a state tensor) before a step must then raise torch's
"modified by an inplace operation" error instead of silently using the new values, whichever path wrote the tensor:
the fused kernel (general path, steady-state plan, low-bit formats) or the reference on torch ops.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import descend.torch as dt  # noqa: E402
from descend import kernels  # noqa: E402

pytestmark = pytest.mark.skipif(not kernels.available()[0], reason="the fused kernels are not built")

# Every class that steps dense gradients without a closure; Muon takes matrices only, so its params are 2-D.
NAMES = [name for name in dt.OPTIMIZERS if name not in ("lbfgs", "sparse_adam")]
SHAPES = [(3, 4), (5, 2)]
MODIFIED = "modified by an inplace operation"


def _params() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(shape, generator=gen).requires_grad_() for shape in SHAPES]


def _warm(opt: object, params: list[torch.Tensor], steps: int) -> None:
    for _ in range(steps):
        sum((p * p).sum() for p in params).backward()
        opt.step()  # type: ignore[attr-defined]


@pytest.mark.parametrize("steps", [0, 4], ids=["first step", "steady state"])
@pytest.mark.parametrize("backend", ["auto", "fused", "reference"])
@pytest.mark.parametrize("name", NAMES)
def test_backward_through_a_graph_saved_before_the_step_raises(name: str, backend: str, steps: int) -> None:
    if backend == "fused" and not kernels.supports(name, "float32"):
        pytest.skip(f"no kernel runs {name}")
    params = _params()
    opt = dt.OPTIMIZERS[name](params, backend=backend)
    _warm(opt, params, steps)
    loss = sum((p * p).sum() for p in params)  # saves every parameter
    for p in params:
        p.grad = torch.ones_like(p)
    before = [p._version for p in params]
    opt.step()
    assert all(p._version > v for p, v in zip(params, before)), "each stepped parameter's version advances"
    with pytest.raises(RuntimeError, match=MODIFIED):
        loss.backward()


@pytest.mark.parametrize("name", ["adam", "momentum", "adagrad", "asgd", "adamw_schedulefree"])
def test_the_reference_advances_the_state_it_writes(name: str) -> None:
    """The reference writes state with torch's in-place ops, which advance it; the kernel path advances the
    parameters only (as torch's fused step advances none), which keeps the steady state's cost per tensor down."""
    params = _params()
    opt = dt.OPTIMIZERS[name](params, backend="reference")
    _warm(opt, params, 4)
    states = [t for p in params for t in opt.state[p].values() if isinstance(t, torch.Tensor)]
    before = [t._version for t in states]
    _warm(opt, params, 1)
    assert any(t._version > v for t, v in zip(states, before))


@pytest.mark.parametrize("state_dtype", ["bfloat16", "blockwise8"])
@pytest.mark.parametrize("steps", [0, 4], ids=["first step", "steady state"])
def test_low_bit_state_advances_the_params(state_dtype: str, steps: int) -> None:
    params = _params()
    opt = dt.Adam(params, state_dtype=state_dtype)
    _warm(opt, params, steps)
    loss = sum((p * p).sum() for p in params)
    for p in params:
        p.grad = torch.ones_like(p)
    before = [p._version for p in params]
    opt.step()
    assert all(p._version > v for p, v in zip(params, before))
    with pytest.raises(RuntimeError, match=MODIFIED):
        loss.backward()


def test_a_parameter_without_a_gradient_keeps_its_version() -> None:
    params = _params()
    opt = dt.Adam(params)
    _warm(opt, params, 4)
    params[1].grad = None
    params[0].grad = torch.ones_like(params[0])
    before = params[1]._version
    loss = (params[1] * params[1]).sum()
    opt.step()
    assert params[1]._version == before
    loss.backward()  # nothing wrote params[1]: its graph is still valid


def test_a_refused_step_advances_nothing() -> None:
    params = _params()
    opt = dt.Adam(params, nan_policy="raise")
    _warm(opt, params, 4)
    params[0].grad = torch.ones_like(params[0])
    params[1].grad = torch.full_like(params[1], float("nan"))  # refused before anything is written
    before = [p._version for p in params]
    with pytest.raises(ValueError):
        opt.step()
    assert [p._version for p in params] == before


@pytest.mark.parametrize("through", ["torch's C function", "torch's Python function"])
def test_subclasses_and_inference_tensors(through: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tensor subclass the C path does not know goes to torch's own increment_version with the rest of the list;
    a tensor made under inference mode (no version) is passed over on either path."""
    from descend.engine import torch_arrays

    if through == "torch's Python function":
        monkeypatch.setattr(torch_arrays, "_BUMP", None)
    elif torch_arrays._BUMP is None:
        pytest.skip("this torch does not export bump_version")

    class Marked(torch.Tensor):
        pass

    with torch.inference_mode():
        frozen = torch.zeros(2)
    plain, param, marked, last = (
        torch.zeros(2),
        torch.nn.Parameter(torch.zeros(2)),
        torch.zeros(2).as_subclass(Marked),
        torch.zeros(2),
    )
    tensors = [plain, frozen, param, marked, last]
    before = [t._version for t in tensors if t is not frozen]
    torch_arrays.TorchKind().mark_written(tensors)
    assert [t._version for t in tensors if t is not frozen] == [v + 1 for v in before]


def test_the_c_function_refuses_a_bad_address() -> None:
    with pytest.raises(ValueError, match="null function"):
        kernels.bump_versions([torch.zeros(1)], 0, 16, (torch.Tensor,))
    with pytest.raises(ValueError, match="offset out of range"):
        kernels.bump_versions([torch.zeros(1)], 1, 2, (torch.Tensor,))


def _snapshot(opt: object, params: list[torch.Tensor]) -> list[torch.Tensor]:
    state = [v for p in params for v in opt.state[p].values() if isinstance(v, torch.Tensor)]  # type: ignore[attr-defined]
    return [t.detach().clone() for t in (*params, *state)]


@pytest.mark.parametrize("state_dtype", [None, "bfloat16", "blockwise8"])
@pytest.mark.parametrize("backend", ["auto", "reference"])
@pytest.mark.parametrize("key", ["exp_avg", "step"])
def test_an_inference_tensor_in_the_state_is_refused_with_nothing_written(
    key: str, backend: str, state_dtype: str | None
) -> None:
    """torch refuses to update an inference tensor in place outside inference mode; the step refuses it too, before
    it has written anything (the reference used to fail half way, the kernel wrote it regardless)."""
    params = _params()
    kwargs = {} if state_dtype is None else {"state_dtype": state_dtype}
    opt = dt.Adam(params, backend=backend, **kwargs)
    _warm(opt, params, 4)  # past the step that records the steady state
    with torch.inference_mode():
        opt.state[params[1]][key] = opt.state[params[1]][key].clone()
    for p in params:
        p.grad = torch.ones_like(p)
    before = _snapshot(opt, params)
    with pytest.raises(RuntimeError, match="Inplace update to inference tensor outside InferenceMode"):
        opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, _snapshot(opt, params)))
    with torch.inference_mode():
        opt.step()  # inside inference mode, torch allows it, and so does the step
    assert not torch.equal(before[0], params[0].detach())


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_a_step_under_inference_mode_leaves_state_a_later_step_refuses(backend: str) -> None:
    params = _params()
    opt = dt.Adam(params, backend=backend)
    for p in params:
        p.grad = torch.ones_like(p)
    with torch.inference_mode():
        opt.step()  # creates the state as inference tensors, as torch.optim's would be
    before = _snapshot(opt, params)
    with pytest.raises(RuntimeError, match="inference tensor"):
        opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, _snapshot(opt, params)))
