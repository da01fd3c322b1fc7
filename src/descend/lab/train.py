"""Training torch models on the bundled data sets with descend's ``torch.optim`` drop-ins (``descend.torch``).

The models are the NumPy problems' twins: logistic regression (one output, binary cross-entropy), softmax regression
and an MLP with one tanh hidden layer, on the same standardised 75/25 split. Everything is seeded: the weights, and
the order of the minibatches. Wall time is measured fairly: every optimizer makes a few untimed updates first, and
the epochs of the optimizers interleave, so that the order they are named in does not change their times.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from descend.lab.contestants import get_contestant
from descend.lab.problems.data import DATASETS, load_dataset

__all__ = ["MODELS", "TorchUnavailable", "TrainResult", "torch_status", "train"]

MODELS: tuple[str, ...] = ("logistic", "softmax", "mlp")


TORCH_FIX = (
    "Install torch with: pip install torch==2.13.0 (the version descend is tested with; any 2.4 or later "
    "below 3 works), or pip install 'descend[lab,torch]'"
)


class TorchUnavailable(RuntimeError):
    """torch or descend.torch cannot be imported here."""


def torch_status() -> tuple[bool, str]:
    """Whether ``descend.torch`` can be imported, and if not, why."""
    try:
        import descend.torch  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means the same thing to the user
        return False, f"descend.torch cannot be imported ({type(exc).__name__}: {exc})"
    return True, "available"


@dataclass
class TrainResult:
    """One optimizer's training run: losses per epoch, final test accuracy, wall time, hyperparameters."""

    optimizer: str
    hyperparams: dict[str, Any]
    train_loss: list[float] = field(default_factory=list)
    test_accuracy: float = 0.0
    wall_time: float = 0.0


def _model(torch: Any, model: str, d: int, c: int, hidden: int) -> Any:
    nn = torch.nn
    if model == "mlp":
        return nn.Sequential(nn.Linear(d, hidden), nn.Tanh(), nn.Linear(hidden, c))
    return nn.Linear(d, 1 if model == "logistic" else c)


def train(
    dataset: str = "digits",
    model: str = "mlp",
    optimizers: Sequence[str] = ("adam", "sgd"),
    epochs: int = 10,
    batch_size: int = 32,
    lr: float | None = None,
    convention: str = "torch",
    seed: int = 0,
    hidden: int = 32,
    on_epoch: Callable[[str, int], None] | None = None,
) -> list[TrainResult]:
    """Train ``model`` on ``dataset`` once per optimizer, from the same initial weights and batch order.

    Args:
        dataset: a key of :data:`~descend.lab.problems.data.DATASETS`.
        model: one of :data:`MODELS`; ``"logistic"`` needs a two-class data set.
        optimizers: lab optimizer names (``nesterov`` and ``amsgrad`` included).
        epochs, batch_size: the training budget.
        lr: one learning rate for all; None uses each optimizer's default under ``convention``.
        convention: the preset the defaults come from.
        seed: seeds the weights and the batch order.
        hidden: the MLP's hidden width.
        on_epoch: called as ``on_epoch(optimizer, epoch)`` after every epoch.

    Raises:
        TorchUnavailable: torch or descend.torch cannot be imported.
        ValueError: an unknown name or a bad number, named in the message.
    """
    if dataset not in DATASETS:
        raise ValueError(f"Unknown dataset {dataset!r}; known datasets are {', '.join(DATASETS)}")
    if model not in MODELS:
        raise ValueError(f"Unknown model {model!r}; known models are {', '.join(MODELS)}")
    contestants = [get_contestant(n) for n in optimizers]
    for what, value in (("epochs", epochs), ("batch_size", batch_size), ("hidden", hidden)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{what} must be a positive integer, got {value!r}")
    if lr is not None and not lr > 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    ok, why = torch_status()
    if not ok:
        raise TorchUnavailable(f"training torch models needs torch and descend.torch: {why}. {TORCH_FIX}")
    import torch

    from descend.torch._sparse_adam import every_entry

    x_train, y_train, x_test, y_test = load_dataset(dataset)
    classes = int(y_train.max()) + 1
    if model == "logistic" and classes != 2:
        raise ValueError(f"the logistic model needs two classes; {dataset!r} has {classes}; use softmax or mlp")
    xt = torch.tensor(x_train, dtype=torch.float32)
    yt = torch.tensor(y_train)
    xs = torch.tensor(x_test, dtype=torch.float32)
    ys = torch.tensor(y_test)
    if model == "logistic":
        loss_fn = torch.nn.BCEWithLogitsLoss()

        def loss_of(out: Any, y: Any) -> Any:
            return loss_fn(out[:, 0], y.float())

        def predict(out: Any) -> Any:
            return (out[:, 0] > 0).long()
    else:
        loss_fn = torch.nn.CrossEntropyLoss()

        def loss_of(out: Any, y: Any) -> Any:
            return loss_fn(out, y)

        def predict(out: Any) -> Any:
            return out.argmax(dim=1)

    def setup(contestant: Any) -> tuple[Any, Any, TrainResult, Any]:
        torch.manual_seed(seed)
        net = _model(torch, model, xt.shape[1], classes, hidden)
        opt = contestant.torch_optimizer(net, convention, **({"lr": lr} if lr is not None else {}))
        if hasattr(opt, "attach"):  # Schedule-Free follows the model: measured at x after net.eval()
            opt.attach(net)
        hp = {k: v for k, v in opt.param_groups[0].items() if k != "params"}
        return net, opt, TrainResult(contestant.name, hp), torch.Generator().manual_seed(seed)

    def batch(net: Any, opt: Any, idx: Any) -> None:
        def closure() -> Any:  # called once by an elementwise optimizer, as often as it needs by L-BFGS
            opt.zero_grad()
            loss = loss_of(net(xt[idx]), yt[idx])
            loss.backward()
            if not getattr(opt, "dense_gradients", True):  # SparseAdam: every entry present, as on the NumPy front
                for p in net.parameters():
                    p.grad = every_entry(p.grad)
            return loss

        opt.step(closure)

    # Warm-up: a few untimed updates of every optimizer on a throwaway model, so that first-call costs (torch's
    # kernels and caches, descend.torch's plans) are paid before any clock runs and by no one in particular.
    for contestant in contestants:
        net, opt, _, _ = setup(contestant)
        for i in range(min(3, -(-xt.shape[0] // batch_size))):
            batch(net, opt, torch.arange(i * batch_size, min((i + 1) * batch_size, xt.shape[0])))
    runs = [setup(c) for c in contestants]
    # Epochs interleave (one epoch of each optimizer in turn), so that a slow or busy spell of the machine is shared.
    for epoch in range(1, epochs + 1):
        for net, opt, result, order in runs:
            start = time.perf_counter()
            perm = torch.randperm(xt.shape[0], generator=order)
            for i in range(0, xt.shape[0], batch_size):
                batch(net, opt, perm[i : i + batch_size])
            result.wall_time += time.perf_counter() - start
            net.eval()
            with torch.no_grad():
                result.train_loss.append(float(loss_of(net(xt), yt)))
            net.train()
            if on_epoch:
                on_epoch(result.optimizer, epoch)
    results = []
    for net, _, result, _ in runs:
        net.eval()
        with torch.no_grad():
            result.test_accuracy = float((predict(net(xs)) == ys).float().mean())
        results.append(result)
    return results
