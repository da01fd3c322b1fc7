"""Sparse gradients for SGD and Adagrad, as torch.optim takes them: an ``nn.Embedding(sparse=True)`` training loop."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import descend.torch as dt  # noqa: E402
from tests.tolerances import assert_close, torch_tolerance  # noqa: E402

CASES = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "maximize": True}),
    ("Adagrad", {"lr": 0.1}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.1, "maximize": True}),
]


def train(module: object, name: str, kwargs: dict, dtype: torch.dtype, steps: int = 15) -> tuple:
    torch.manual_seed(0)
    emb = torch.nn.Embedding(20, 4, sparse=True).to(dtype)
    head = torch.nn.Linear(4, 1).to(dtype)
    opt = getattr(module, name)([emb.weight], **kwargs)
    dense = getattr(module, name)(head.parameters(), **kwargs)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        idx = torch.randint(0, 20, (6, 3), generator=gen)  # repeated indices: the gradient is uncoalesced
        target = torch.randn(6, 1, generator=gen, dtype=torch.float64).to(dtype)
        opt.zero_grad()
        dense.zero_grad()
        loss = ((head(emb(idx).mean(1)) - target) ** 2).mean()
        loss.backward()
        assert emb.weight.grad.is_sparse
        opt.step()
        dense.step()
    return emb.weight.detach(), head.weight.detach(), opt.state[emb.weight]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_sparse_training_matches_torch(name: str, kwargs: dict, dtype: torch.dtype) -> None:
    ours = train(dt, name, kwargs, dtype)
    theirs = train(torch.optim, name, kwargs, dtype)
    tol = torch_tolerance(dtype)
    assert_close(ours[0], theirs[0], tol, "embedding")
    assert_close(ours[1], theirs[1], tol, "dense head")
    assert list(ours[2]) == list(theirs[2])
    for key, value in theirs[2].items():
        mine = ours[2][key]
        assert mine.is_sparse == value.is_sparse and mine.dtype == value.dtype, key
        assert_close(mine.to_dense() if mine.is_sparse else mine, value.to_dense() if value.is_sparse else value, tol)


# SGD and Adagrad take sparse gradients, and so does LBFGS (made dense, as torch does: tests/test_torch_lbfgs.py).
# SparseAdam takes sparse gradients only: tests/test_torch_sparse_adam.py.
@pytest.mark.parametrize(
    "name", [n for n, cls in dt.OPTIMIZERS.items() if n not in ("sgd", "adagrad", "lbfgs", "sparse_adam")]
)
def test_other_classes_refuse_sparse_gradients_as_torch(name: str) -> None:
    emb = torch.nn.Embedding(5, 2, sparse=True)
    opt = dt.OPTIMIZERS[name]([emb.weight])
    before = emb.weight.detach().clone()
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match=f"{dt.OPTIMIZERS[name].__name__} does not support sparse gradients"):
        opt.step()
    assert torch.equal(emb.weight, before)


@pytest.mark.parametrize(("name", "regex"), [("Adagrad", "weight_decay option is not compatible"), ("SGD", "sparse")])
def test_sparse_with_weight_decay_is_refused_as_torch(name: str, regex: str) -> None:
    """torch's Adagrad refuses it with this message; torch's SGD fails adding the dense decay to the sparse gradient.
    descend refuses both before anything changes, with Adagrad's message."""
    for module in (torch.optim, dt):
        emb = torch.nn.Embedding(5, 2, sparse=True)
        extra = [torch.nn.Parameter(torch.ones(2))]  # a dense parameter first: it must not move either
        opt = getattr(module, name)([{"params": extra}, {"params": [emb.weight]}], weight_decay=0.1)
        emb(torch.tensor([1, 2])).sum().backward()
        extra[0].grad = torch.ones(2)
        before = emb.weight.detach().clone()
        with pytest.raises(RuntimeError, match=regex) as info:
            opt.step()
        if module is dt:
            assert torch.equal(emb.weight, before) and torch.equal(extra[0], torch.ones(2))
            assert "weight_decay option is not compatible with sparse gradients" in str(info.value)


@pytest.mark.parametrize("name", ["SGD", "Adagrad"])
def test_fused_refuses_sparse_gradients(name: str) -> None:
    emb = torch.nn.Embedding(5, 2, sparse=True)
    opt = getattr(dt, name)([emb.weight], fused=True)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="does not support sparse gradients"):
        opt.step()
