"""descend.torch's backends give the same bits: the fused kernel, the reference on torch ops, and "auto"."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import descend.torch as dt  # noqa: E402
from descend import kernels  # noqa: E402
from tests.optim_db import TORCH_CASES  # noqa: E402

pytestmark = pytest.mark.skipif(not kernels.available()[0], reason="the fused kernels are not built")

CASES = [(name, kwargs) for name, cases in TORCH_CASES.items() for _, kwargs in cases] + [
    ("momentum", {"lr": 0.1, "nesterov": True}),
    ("adam", {"lr": 0.01, "eps_root": 1e-8, "amsgrad": True, "amsgrad_max": "corrected"}),
    ("rmsprop", {"eps_root": 1e-7, "eps": 0.0, "centered": True}),
]


def _train(name: str, kwargs: dict, backend: str, dtype: torch.dtype) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(shape, generator=gen, dtype=dtype).requires_grad_() for shape in [(33, 7), (5,), ()]]
    opt = dt.OPTIMIZERS[name](params, backend=backend, **kwargs)
    for _ in range(12):
        for p in params:
            p.grad = (2 * (p.detach() - 1) + torch.randn(p.shape, generator=gen, dtype=dtype)).to(dtype)
        opt.step()
    return [p.detach().clone() for p in params] + [v.clone() for st in opt.state.values() for v in st.values()]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=lambda v: v if isinstance(v, str) else "")
def test_fused_reference_and_auto_are_bit_identical(name: str, kwargs: dict, dtype: torch.dtype) -> None:
    fused = _train(name, kwargs, "fused", dtype)
    reference = _train(name, kwargs, "reference", dtype)
    auto = _train(name, kwargs, "auto", dtype)
    for a, b, c in zip(fused, reference, auto):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_fused_true_runs_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """fused=True hands every tensor to the kernel, on the first step and from the plan, and never to the
    reference rule."""
    import dataclasses

    from descend import kernels

    w = torch.ones(4, requires_grad=True)
    opt = dt.Adam([w], lr=0.1, fused=True)
    ran: list = []
    original = kernels.run
    monkeypatch.setattr(kernels, "run", lambda jobs, *args: (ran.extend(jobs), original(jobs, *args)))

    def no_reference(*args: object) -> None:
        raise AssertionError("the reference rule ran")

    engine = opt._engine
    monkeypatch.setattr(engine, "spec", dataclasses.replace(engine.spec, reference_update=no_reference))
    for _ in range(3):
        w.grad = torch.ones(4)
        opt.step()
    assert len(ran) == 3 and all(job[4] == [w.data_ptr()] for job in ran)
    assert opt._plans and torch.all(w < 1)


def test_forced_fused_refuses_a_tensor_it_cannot_take_before_changing_anything() -> None:
    a = torch.ones(4, requires_grad=True)
    b = torch.ones(4, 6)[:, ::2].clone().t().requires_grad_()  # non-contiguous
    opt = dt.Adam([a, b], lr=0.1, backend="fused")
    a.grad, b.grad = torch.ones_like(a), torch.ones_like(b)
    with pytest.raises(ValueError, match=r"backend='fused' cannot update parameter 1 of Adam \(shape \(3, 4\)"):
        opt.step()
    assert torch.all(a == 1) and torch.all(b == 1)


def _pair(backend: str) -> tuple[list[torch.Tensor], object]:
    gen = torch.Generator().manual_seed(1)
    params = [torch.randn(50, generator=gen).requires_grad_() for _ in range(3)]
    return params, dt.Adam(params, lr=0.05, backend=backend)


def test_steady_state_follows_params_whose_data_is_replaced_and_lagging_step_counts() -> None:
    runs = {}
    for backend in ("auto", "reference"):
        params, opt = _pair(backend)
        for step in range(8):
            for i, p in enumerate(params):
                # the third parameter skips every other step, so the group holds two step counts
                p.grad = None if (i == 2 and step % 2) else torch.full_like(p, 0.1 * (step + 1) * (i + 1))
            if step == 4:
                params[0].data = params[0].data.clone()  # new memory behind the same parameter
                opt.state[params[1]]["exp_avg"] = opt.state[params[1]]["exp_avg"].clone()  # a state slot replaced
            opt.step()
        runs[backend] = [p.detach().clone() for p in params] + [opt.state[p]["step"].clone() for p in params]
    for a, b in zip(runs["auto"], runs["reference"]):
        assert torch.equal(a, b)
    assert runs["auto"][-1].item() == 4 and runs["auto"][-2].item() == 8
