"""Models on real data that ships inside scikit-learn (no downloads): logistic and softmax regression and a small
multilayer perceptron, written in NumPy with analytic gradients.

Each data set is split once into 75% train and 25% test (stratified, fixed seed), and the features are standardised
with the training set's mean and deviation. The loss is the mean cross-entropy on the training set; each update uses
a minibatch drawn from the run's own generator. Every run has its own weights (a leading run axis), so several seeds
train side by side in one batched computation.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from descend.lab.problems.base import Problem

__all__ = ["DATASETS", "DataProblem", "load_dataset", "make_data_problems"]

DATASETS: dict[str, str] = {
    "breast-cancer": "load_breast_cancer",
    "digits": "load_digits",
    "wine": "load_wine",
    "iris": "load_iris",
}


@cache
def load_dataset(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)`` for one of :data:`DATASETS`, standardised on the training split."""
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; known datasets are {', '.join(DATASETS)}")
    try:
        from sklearn import datasets
        from sklearn.model_selection import train_test_split
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise RuntimeError(f"the data problems need scikit-learn ({exc}); pip install 'descend[lab]'") from exc
    x, y = getattr(datasets, DATASETS[name])(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        np.asarray(x, dtype=np.float64), np.asarray(y), test_size=0.25, random_state=0, stratify=y
    )
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std[std == 0] = 1.0
    return (x_train - mean) / std, y_train.astype(np.int64), (x_test - mean) / std, y_test.astype(np.int64)


def minibatches(
    x_all: np.ndarray, y_all: np.ndarray, batch_size: int | None, rngs: Sequence[np.random.Generator]
) -> tuple[np.ndarray, np.ndarray]:
    """One batch per run, stacked on a leading axis: the whole dataset where ``batch_size`` is None or covers it,
    else ``batch_size`` rows drawn without replacement from each run's generator."""
    n = x_all.shape[0]
    if batch_size is None or batch_size >= n:
        return x_all[None], y_all[None]
    idx = np.stack([rng.choice(n, size=batch_size, replace=False) for rng in rngs])
    return x_all[idx], y_all[idx]


def _softplus(z: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, z)


@dataclass
class DataProblem(Problem):
    """A classifier on a bundled data set.

    Attributes:
        dataset: a key of :data:`DATASETS`.
        model: ``"logistic"`` (binary, sigmoid output), ``"softmax"`` or ``"mlp"`` (one tanh hidden layer).
        hidden: the hidden layer's width for ``"mlp"``.
        batch_size: samples per update; None uses the whole training set (exact gradients).
    """

    dataset: str = "digits"
    model: str = "softmax"
    hidden: int = 32
    batch_size: int | None = 32

    def session(self) -> AbstractContextManager[Any]:
        """One BLAS thread while the runner steps: the matrices are small, and BLAS threads spinning beside other
        processes made these runs two to three times slower (the limit is lifted afterwards)."""
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - scikit-learn brings threadpoolctl along
            return nullcontext()
        return threadpool_limits(limits=1, user_api="blas")

    def data(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The standardised ``(x_train, y_train, x_test, y_test)``."""
        return load_dataset(self.dataset)

    @property
    def n_outputs(self) -> int:
        y = self.data()[1]
        return 1 if self.model == "logistic" else int(y.max()) + 1

    def init(self, rngs: Sequence[np.random.Generator]) -> list[np.ndarray]:
        d, c = self.data()[0].shape[1], self.n_outputs
        if self.model == "mlp":
            shapes = [(d, self.hidden), (self.hidden,), (self.hidden, c), (c,)]
        else:
            shapes = [(d, c), (c,)]
        params = []
        for shape in shapes:
            fan_in = shape[0] if len(shape) == 2 else 1
            scale = 1.0 / np.sqrt(fan_in) if len(shape) == 2 else 0.0
            params.append(np.stack([rng.normal(0.0, scale, size=shape) for rng in rngs]))
        return params

    # -- the model --------------------------------------------------------------------------------------------------

    def _forward(self, params: Sequence[np.ndarray], x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits ``(runs, n, c)`` and the hidden activations (None without a hidden layer)."""
        if self.model == "mlp":
            w1, b1, w2, b2 = params
            hidden = np.tanh(np.matmul(x, w1) + b1[:, None, :])
            return np.matmul(hidden, w2) + b2[:, None, :], hidden
        w, b = params
        return np.matmul(x, w) + b[:, None, :], None

    def _loss_and_dlogits(self, logits: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean cross-entropy per run and its gradient with respect to the logits."""
        n = logits.shape[1]
        if self.model == "logistic":
            z = logits[..., 0]
            target = y.astype(np.float64)
            loss = np.mean(_softplus(z) - target * z, axis=-1)
            return loss, ((1.0 / (1.0 + np.exp(-z)) - target) / n)[..., None]
        shifted = logits - logits.max(axis=-1, keepdims=True)
        log_norm = np.log(np.sum(np.exp(shifted), axis=-1))
        picked = np.take_along_axis(shifted, np.broadcast_to(y[..., None], shifted.shape[:-1] + (1,)), axis=-1)[..., 0]
        loss = np.mean(log_norm - picked, axis=-1)
        probs = np.exp(shifted - log_norm[..., None])
        onehot = np.zeros_like(probs)
        np.put_along_axis(onehot, np.broadcast_to(y[..., None], probs.shape[:-1] + (1,)), 1.0, axis=-1)
        return loss, (probs - onehot) / n

    def loss(self, params: Sequence[np.ndarray]) -> np.ndarray:
        x, y = self.data()[:2]
        with np.errstate(all="ignore"):
            logits, _ = self._forward(params, x[None])
            return self._loss_and_dlogits(logits, y[None])[0]

    def grad(self, params: Sequence[np.ndarray], step: int, rngs: Sequence[np.random.Generator]) -> list[np.ndarray]:
        x, y = minibatches(*self.data()[:2], self.batch_size, rngs)
        with np.errstate(all="ignore"):
            logits, hidden = self._forward(params, x)
            _, dz = self._loss_and_dlogits(logits, y)
            xt = np.swapaxes(np.broadcast_to(x, (len(params[0]),) + x.shape[1:]), 1, 2)
            if self.model == "mlp":
                w2 = params[2]
                dhidden = np.matmul(dz, np.swapaxes(w2, 1, 2)) * (1.0 - hidden**2)
                return [
                    np.matmul(xt, dhidden),
                    dhidden.sum(axis=1),
                    np.matmul(np.swapaxes(hidden, 1, 2), dz),
                    dz.sum(axis=1),
                ]
            return [np.matmul(xt, dz), dz.sum(axis=1)]

    def metrics(self, params: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        _, _, x_test, y_test = self.data()
        with np.errstate(all="ignore"):
            logits, _ = self._forward(params, x_test[None])
        if self.model == "logistic":
            predicted = (logits[..., 0] > 0).astype(np.int64)
        else:
            predicted = np.argmax(logits, axis=-1)
        return {"test_accuracy": np.mean(predicted == y_test[None], axis=1)}


_TITLES = {"logistic": "Logistic regression", "softmax": "Softmax regression", "mlp": "MLP (one tanh layer of 32)"}
_SETS = {
    "breast-cancer": "breast cancer (569 × 30, 2 classes)",
    "digits": "digits (1797 × 64, 10 classes)",
    "wine": "wine (178 × 13, 3 classes)",
    "iris": "iris (150 × 4, 3 classes)",
}


def _make(model: str, dataset: str, steps: int, record_every: int) -> DataProblem:
    short = {"logistic": "logistic", "softmax": "softmax", "mlp": "mlp"}[model]
    return DataProblem(
        name=f"{short}-{dataset}",
        title=f"{_TITLES[model]} on {dataset}",
        family="data",
        description=f"{_TITLES[model]} on scikit-learn's {_SETS[dataset]}, 75/25 stratified split, minibatches of "
        "32; the loss is the training cross-entropy.",
        default_steps=steps,
        f_min=0.0,
        record_every=record_every,
        references="scikit-learn's bundled data sets (sklearn.datasets)",
        metric_names=("test_accuracy",),
        dataset=dataset,
        model=model,
    )


def make_data_problems() -> list[DataProblem]:
    """The data problems, in the order they are listed."""
    return [
        _make("logistic", "breast-cancer", 300, 5),
        _make("softmax", "digits", 300, 5),
        _make("softmax", "wine", 300, 5),
        _make("softmax", "iris", 300, 5),
        _make("mlp", "digits", 400, 10),
    ]
