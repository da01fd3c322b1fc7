"""Complex parameters, as torch.optim updates them: each complex number as the pair of reals it holds."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import descend.torch as dt  # noqa: E402
from tests.tolerances import assert_close, torch_tolerance  # noqa: E402

SETTINGS = {
    "sgd": {"lr": 0.01, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1},
    "rmsprop": {"lr": 0.01, "centered": True, "momentum": 0.5},
    "adagrad": {"lr": 0.1, "weight_decay": 0.1},
    "adadelta": {"weight_decay": 0.1},
    "adam": {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1},
    "adamw": {"lr": 0.01},
    "adamax": {"lr": 0.01},
    "nadam": {"lr": 0.01, "decoupled_weight_decay": True, "weight_decay": 0.1},
    "radam": {"lr": 0.01},
}
REAL = {torch.complex64: torch.float32, torch.complex128: torch.float64}


def _train(make: object, dtype: torch.dtype) -> tuple[torch.Tensor, object]:
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(5, 3, dtype=dtype, generator=gen).requires_grad_()
    opt = make(w)
    for _ in range(12):
        w.grad = torch.randn(5, 3, dtype=dtype, generator=gen)
        opt.step()
    return w, opt


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
@pytest.mark.parametrize("name", list(SETTINGS))
def test_complex_params_follow_torch(name: str, dtype: torch.dtype) -> None:
    kwargs = SETTINGS[name]
    ours, opt = _train(lambda w: dt.OPTIMIZERS[name]([w], **kwargs), dtype)
    theirs, ref = _train(lambda w: getattr(torch.optim, opt.spec.torch_name)([w], **kwargs), dtype)
    tol = torch_tolerance(REAL[dtype], name)
    assert_close(torch.view_as_real(ours), torch.view_as_real(theirs), tol, f"{name} param")
    for key, value in ref.state[theirs].items():
        mine = opt.state[ours][key]
        assert mine.dtype == value.dtype, f"{name}: state {key!r} keeps torch's dtype"
        real = torch.view_as_real(mine) if mine.is_complex() else mine
        assert_close(real, torch.view_as_real(value) if value.is_complex() else value, tol, f"{name} {key}")


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_complex_params_run_the_kernel_with_the_references_bits(dtype: torch.dtype) -> None:
    fused, _ = _train(lambda w: dt.Adam([w], lr=0.01, fused=True), dtype)
    reference, _ = _train(lambda w: dt.Adam([w], lr=0.01, backend="reference"), dtype)
    assert torch.equal(fused, reference)
