"""A real model: an MLP on scikit-learn's bundled digits trained by descend.torch.Adam follows torch.optim.Adam."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
datasets = pytest.importorskip("sklearn.datasets")

import descend.torch as dt  # noqa: E402
from tests.tolerances import TORCH_FLOAT32, assert_close  # noqa: E402

EPOCHS = 4
BATCH = 128


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))


def train(optimizer_class: type) -> tuple[list[float], torch.nn.Module]:
    x, y = datasets.load_digits(return_X_y=True)
    x, y = torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)
    model = make_model()
    opt = optimizer_class(model.parameters(), lr=1e-2, weight_decay=1e-4)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))
    losses = []
    for _ in range(EPOCHS):
        for start in range(0, len(x), BATCH):
            idx = order[start : start + BATCH]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return losses, model


def test_mlp_on_digits_follows_torch_adam() -> None:
    ours, our_model = train(dt.Adam)
    theirs, their_model = train(torch.optim.Adam)
    assert len(ours) == EPOCHS * 15
    assert ours[-1] < 0.3 * ours[0], "the model did not learn"
    assert_close(ours, theirs, TORCH_FLOAT32, "loss curve")
    for p, q in zip(our_model.parameters(), their_model.parameters()):
        assert_close(p, q, TORCH_FLOAT32)
