"""The data problems' models written in torch, trained through ``descend.torch`` (the ``torch.optim`` drop-ins).

Same data, split, initial weights and minibatches as the NumPy problems of the same name without the ``torch-``
prefix (the weights are drawn by the same generators, then copied into float64 tensors), so the two fronts can be
compared run for run. The gradients come from autograd. If torch or ``descend.torch`` cannot be imported, these
problems are still listed, and using one raises a :class:`RuntimeError` that says why.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from descend.lab.problems.data import DataProblem, minibatches

__all__ = ["TorchDataProblem", "make_torch_problems", "torch_missing"]


def torch_missing() -> str | None:
    """Why ``descend.torch`` cannot be used here, or None when it can."""
    try:
        import torch  # noqa: F401

        import descend.torch  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means the same thing to the user
        return f"{type(exc).__name__}: {exc}"
    return None


def _torch() -> Any:
    why = torch_missing()
    if why is not None:
        raise RuntimeError(f"the torch problems need torch and descend.torch, which cannot be imported here ({why})")
    import torch

    return torch


@dataclass
class TorchDataProblem(DataProblem):
    """A :class:`DataProblem` whose parameters are float64 torch tensors and whose gradients come from autograd."""

    framework: str = "torch"

    @contextmanager
    def session(self) -> Iterator[None]:
        """One intra-op thread while the runner steps: the tensors are tiny, and idle threads spinning beside other
        processes slowed these runs down more than tenfold. The previous setting is restored afterwards."""
        torch = _torch()
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with super().session():
                yield
        finally:
            torch.set_num_threads(previous)

    def init(self, rngs: Sequence[np.random.Generator]) -> list[Any]:
        torch = _torch()
        return [torch.from_numpy(p) for p in super().init(rngs)]

    def _graph(self, params: Sequence[Any], x: Any, y: Any) -> tuple[Any, Any]:
        """Per-run mean cross-entropy of the model on ``x`` (runs, n, d) and the logits."""
        torch = _torch()
        functional = torch.nn.functional
        if self.model == "mlp":
            w1, b1, w2, b2 = params
            hidden = torch.tanh(torch.matmul(x, w1) + b1[:, None, :])
            logits = torch.matmul(hidden, w2) + b2[:, None, :]
        else:
            w, b = params
            logits = torch.matmul(x, w) + b[:, None, :]
        y = y.expand(logits.shape[0], -1)
        if self.model == "logistic":
            losses = functional.binary_cross_entropy_with_logits(logits[..., 0], y.to(logits.dtype), reduction="none")
        else:
            losses = functional.cross_entropy(logits.transpose(1, 2), y, reduction="none")
        return losses.mean(dim=-1), logits

    def loss(self, params: Sequence[Any]) -> np.ndarray:
        torch = _torch()
        x, y = self.data()[:2]
        with torch.no_grad():
            losses, _ = self._graph(params, torch.from_numpy(x)[None], torch.from_numpy(y)[None])
        return losses.numpy().copy()

    def grad(self, params: Sequence[Any], step: int, rngs: Sequence[np.random.Generator]) -> list[Any]:
        torch = _torch()
        x, y = minibatches(*self.data()[:2], self.batch_size, rngs)
        leaves = [p.detach().clone().requires_grad_(True) for p in params]
        losses, _ = self._graph(leaves, torch.from_numpy(x), torch.from_numpy(y))
        grads = torch.autograd.grad(losses.sum(), leaves)  # runs are independent: the sum's gradient is each run's
        return [g.detach() for g in grads]

    def metrics(self, params: Sequence[Any]) -> dict[str, np.ndarray]:
        return super().metrics([p.detach().numpy() for p in params])


def make_torch_problems(numpy_twins: Sequence[DataProblem]) -> list[TorchDataProblem]:
    """A torch twin for each of the given NumPy data problems, named ``torch-<name>``."""
    out = []
    for p in numpy_twins:
        out.append(
            TorchDataProblem(
                name=f"torch-{p.name}",
                title=f"{p.title} (torch, descend.torch)",
                family="data",
                description=f"{p.description} The model runs in torch and the optimizers are descend.torch's.",
                default_steps=p.default_steps,
                f_min=p.f_min,
                record_every=p.record_every,
                references=p.references,
                metric_names=p.metric_names,
                dataset=p.dataset,
                model=p.model,
                hidden=p.hidden,
                batch_size=p.batch_size,
                seed_name=p.name,
            )
        )
    return out
