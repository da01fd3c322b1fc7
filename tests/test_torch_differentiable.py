"""``differentiable=True``: the step is recorded by autograd, and gradients through it match torch.optim's."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import descend.torch as dt  # noqa: E402
from tests.tolerances import assert_close, torch_tolerance  # noqa: E402

TOL = torch_tolerance(torch.float64)

# (class name, hyperparameters, whether a momentum buffer is given before the first step): torch.optim's SGD starts
# its buffer from a detached copy of the first gradient, so its gradients skip that step's dependence on the gradient;
# with a buffer given (as torch's own differentiable tests give their state) both follow the same graph.
CASES = [
    ("Adam", {"lr": 0.1}, False),
    # one step: torch.optim's AMSGrad writes into a maximum its earlier steps' graph saved, so its backward through
    # two steps fails; descend's steps update copies of the state (see test_amsgrad_through_several_steps)
    ("Adam", {"lr": 0.05, "betas": (0.8, 0.9), "amsgrad": True, "_steps": 1}, False),
    ("AdamW", {"lr": 0.1, "weight_decay": 0.1}, False),
    ("SGD", {"lr": 0.1, "momentum": 0.9}, True),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1}, True),
    ("SGD", {"lr": 0.1}, False),
    ("RMSprop", {"lr": 0.01}, False),
    ("RMSprop", {"lr": 0.01, "momentum": 0.5, "weight_decay": 0.1}, False),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.01}, False),
    ("Adadelta", {"lr": 1.0}, False),
    ("NAdam", {"lr": 0.1}, False),
    ("RAdam", {"lr": 0.1}, False),
]


def unrolled(module: object, name: str, kwargs: dict, buffer: bool) -> tuple:
    """``steps`` differentiable steps of least squares from ``w0``; the final loss, differentiated with respect to
    ``w0`` and to the targets ``y`` (which the gradients carry through ``create_graph=True``). The data ``x`` does not
    require grad: ``x @ p`` would save ``p`` for it, which the step then writes into (so torch.optim too refuses)."""
    gen = torch.Generator().manual_seed(0)
    w0 = torch.randn(5, generator=gen, dtype=torch.float64, requires_grad=True)
    x = torch.randn(8, 5, generator=gen, dtype=torch.float64)
    y = torch.randn(8, generator=gen, dtype=torch.float64, requires_grad=True)
    p = w0.clone()  # a non-leaf: the step writes into it and autograd records the writes
    kwargs = dict(kwargs)
    steps = kwargs.pop("_steps", 3)
    opt = getattr(module, name)([p], differentiable=True, **kwargs)
    if buffer:
        opt.state[p]["momentum_buffer"] = torch.linspace(-1.0, 1.0, 5, dtype=torch.float64)
    for _ in range(steps):
        loss = ((x @ p - y) ** 2).mean()
        (p.grad,) = torch.autograd.grad(loss, p, create_graph=True)
        opt.step()
    final = ((x @ p - y) ** 2).mean()
    return (p.detach(), *torch.autograd.grad(final, (w0, y)))


@pytest.fixture
def float64_default():
    """torch keeps the step count in a tensor of the default dtype and computes its differentiable bias corrections
    from it; a float64 default makes them float64, as descend's host scalars are."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.mark.usefixtures("float64_default")
@pytest.mark.parametrize(("name", "kwargs", "buffer"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_gradients_through_the_steps_match_torch(name: str, kwargs: dict, buffer: bool) -> None:
    ours = unrolled(dt, name, kwargs, buffer)
    theirs = unrolled(torch.optim, name, kwargs, buffer)
    for what, a, b in zip(("params", "d loss / d w0", "d loss / d y"), ours, theirs):
        assert_close(a, b, TOL, what)
    assert ours[1].abs().max() > 0 and ours[2].abs().max() > 0


def test_the_step_is_not_recorded_without_the_flag() -> None:
    w0 = torch.randn(4, dtype=torch.float64, requires_grad=True)
    p = w0.detach().clone()
    opt = dt.Adam([p], lr=0.1)
    p.grad = torch.ones(4, dtype=torch.float64) * w0
    opt.step()
    assert p.grad_fn is None and not p.requires_grad


def test_gradients_through_the_first_sgd_momentum_step_are_kept() -> None:
    """Without a buffer given, descend's first momentum step keeps the gradient's graph (the buffer is the
    gradient), so d p1 / d w0 = I - lr * H for least squares, as the rule says; torch.optim detaches it."""
    x = torch.randn(6, 3, dtype=torch.float64)
    y = torch.randn(6, dtype=torch.float64)
    w0 = torch.randn(3, dtype=torch.float64, requires_grad=True)
    p = w0.clone()
    opt = dt.SGD([p], lr=0.1, momentum=0.9, differentiable=True)
    (p.grad,) = torch.autograd.grad(((x @ p - y) ** 2).sum(), p, create_graph=True)
    opt.step()
    jacobian = torch.stack([torch.autograd.grad(p[i], w0, retain_graph=True)[0] for i in range(3)])
    assert_close(jacobian, torch.eye(3, dtype=torch.float64) - 0.1 * 2 * x.T @ x, TOL)


def test_a_hyperparameter_that_requires_grad_is_refused_before_anything_changes() -> None:
    p = torch.randn(3, dtype=torch.float64)
    before = p.clone()
    lr = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    opt = dt.Adam([p], lr=lr, differentiable=True)
    p.grad = torch.ones(3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"lr=tensor\(0.1.*requires grad.*host"):
        opt.step()
    assert torch.equal(p, before) and not opt.state


def test_mixed_groups_and_state_dict_round_trip() -> None:
    """A group without the flag steps outside autograd; the state after differentiable steps loads into torch."""
    a = torch.randn(3, dtype=torch.float64, requires_grad=True).clone()
    b = torch.randn(2, dtype=torch.float64)
    opt = dt.Adam([{"params": [a]}, {"params": [b], "differentiable": False}], lr=0.1, differentiable=True)
    a.grad, b.grad = torch.ones(3, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    opt.step()
    assert a.grad_fn is not None and b.grad_fn is None
    zeros = [torch.zeros(3, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)]
    theirs = torch.optim.Adam([{"params": [zeros[0]]}, {"params": [zeros[1]]}])
    theirs.load_state_dict(opt.state_dict())
    assert theirs.state_dict()["state"][0]["step"].item() == 1.0


def test_amsgrad_through_several_steps() -> None:
    """Three differentiable AMSGrad steps: the gradient with respect to w0 matches central finite differences of the
    same (non-differentiable) steps."""
    name, kwargs = "Adam", {"lr": 0.05, "betas": (0.8, 0.9), "amsgrad": True}
    _, grad_w0, _ = unrolled(dt, name, {**kwargs, "_steps": 3}, False)
    gen = torch.Generator().manual_seed(0)
    w0 = torch.randn(5, generator=gen, dtype=torch.float64)
    x = torch.randn(8, 5, generator=gen, dtype=torch.float64)
    y = torch.randn(8, generator=gen, dtype=torch.float64)

    def final_loss(w: torch.Tensor) -> float:
        p = w.clone()
        opt = dt.Adam([p], **kwargs)
        for _ in range(3):
            p.grad = 2 * x.T @ (x @ p - y) / len(y)
            opt.step()
        return float(((x @ p - y) ** 2).mean())

    h = 1e-6
    numeric = torch.tensor([(final_loss(w0 + h * e) - final_loss(w0 - h * e)) / (2 * h) for e in torch.eye(5)])
    # central differences at h = 1e-6 in float64 are good to about 1e-9, well inside the float32 tolerance
    assert_close(grad_w0, numeric, torch_tolerance(torch.float32), "d loss / d w0 against finite differences")
