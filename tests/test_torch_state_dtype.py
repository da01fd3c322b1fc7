"""``state_dtype=torch.float32``: bfloat16 and float16 parameters keep their optimizer state in float32."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import descend.torch as dt  # noqa: E402
from descend.algorithms._spec import cast_scalars  # noqa: E402


def _params(dtype: torch.dtype) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    return [torch.randn(s, generator=gen).to(dtype).requires_grad_() for s in [(6, 3), (11,)]]


def _grads(params: list[torch.Tensor], step: int) -> None:
    for i, p in enumerate(params):
        wave = torch.sin(torch.arange(p.numel(), dtype=torch.float32) * (step + 1) + i) * 1e-3
        p.grad = wave.reshape(p.shape).to(p.dtype)


@pytest.mark.parametrize("backend", ["auto", "reference"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(("name", "kwargs"), [("adam", {"lr": 1e-2}), ("adagrad", {"initial_accumulator_value": 0.1})])
def test_half_params_with_float32_state_follow_the_float32_reference(
    name: str, kwargs: dict, dtype: torch.dtype, backend: str
) -> None:
    """Each step upcasts the parameter and gradient to float32, runs the NumPy reference with float32 state, and
    rounds the parameter to the storage dtype: the optimizer must give exactly that."""
    params = _params(dtype)
    opt = dt.OPTIMIZERS[name](params, state_dtype=torch.float32, backend=backend, **kwargs)
    spec = opt.spec
    hp = spec.hyperparams.from_group(opt.param_groups[0])
    mine = [p.detach().clone() for p in params]
    states = [spec.init_state(np, np.zeros(p.shape, np.float32), hp) for p in params]
    for step in range(1, 7):
        _grads(params, step)
        opt.step()
        scalars = cast_scalars(spec.scalars(hp, step, {}, step == 1), np.float32)
        for k, p in enumerate(params):
            p32 = mine[k].float().numpy().copy()
            spec.reference_update(np, p32, p.grad.float().numpy(), states[k], scalars)
            mine[k] = torch.from_numpy(p32).to(dtype)
    for p, expected, state in zip(params, mine, states):
        assert torch.equal(p.detach().view(torch.int16), expected.view(torch.int16))
        for key, value in state.items():
            ours = opt.state[p][key]
            assert ours.dtype == torch.float32
            assert np.array_equal(ours.numpy(), value), key


def test_float32_and_float64_params_keep_their_own_state_dtype() -> None:
    params = [torch.ones(3, requires_grad=True), torch.ones(3, dtype=torch.float64, requires_grad=True)]
    opt = dt.Adam(params, state_dtype=torch.float32)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    assert [opt.state[p]["exp_avg"].dtype for p in params] == [torch.float32, torch.float64]


def test_loading_keeps_the_float32_state_unrounded() -> None:
    params = _params(torch.bfloat16)
    opt = dt.Adam(params, lr=1e-2, state_dtype=torch.float32)
    for step in range(3):
        _grads(params, step)
        opt.step()
    saved = copy.deepcopy(opt.state_dict())
    assert saved["state"][0]["exp_avg"].dtype == torch.float32

    again = dt.Adam(params, lr=1e-2, state_dtype=torch.float32)
    again.load_state_dict(saved)
    for i, p in enumerate(params):
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(again.state[p][key], opt.state[p][key])
            if key != "step":  # torch.optim keeps the saved step tensor itself
                assert again.state[p][key] is not saved["state"][i][key]

    plain = dt.Adam(params, lr=1e-2)  # as torch: the state is cast to the parameter's dtype
    plain.load_state_dict(saved)
    assert plain.state[params[0]]["exp_avg"].dtype == torch.bfloat16


def test_the_setting_survives_a_copy_of_the_optimizer() -> None:
    opt = dt.Adam(_params(torch.bfloat16), state_dtype=torch.float32)
    assert copy.deepcopy(opt).state_dtype is torch.float32


@pytest.mark.parametrize("value", [torch.float64, torch.float16, "float32", 32])
def test_other_values_are_refused_naming_what_is_allowed(value: object) -> None:
    with pytest.raises(ValueError, match=r"Adam: state_dtype must be None .* or torch.float32 .*, got "):
        dt.Adam(_params(torch.bfloat16), state_dtype=value)
