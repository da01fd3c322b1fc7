"""Deterministic problems for the L-BFGS tests: Rosenbrock, a least-squares fit and a small MLP.

Each problem gives its parameters (torch tensors, float64 values cast to the dtype asked for) and a loss written with
torch operations. ``torch_closure`` is the closure torch's LBFGS documents (zero the gradients, compute the loss,
backward, return it); ``numpy_closure`` runs the very same torch computation on copies of NumPy arrays and returns
``(loss, grads)`` as NumPy arrays, so that both fronts see the same loss and gradient bits at the same point and any
difference between them is the optimizer's own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class Problem:
    name: str
    start: Callable[[], list[torch.Tensor]]  # float64 starting values
    loss: Callable[[list[torch.Tensor]], torch.Tensor]

    def torch_params(self, dtype: torch.dtype) -> list[torch.nn.Parameter]:
        return [torch.nn.Parameter(v.to(dtype)) for v in self.start()]

    def numpy_params(self, dtype: torch.dtype) -> list[np.ndarray]:
        return [v.to(dtype).numpy().copy() for v in self.start()]

    def torch_closure(self, params: list[torch.Tensor], calls: list[int] | None = None) -> Callable[[], Any]:
        def closure() -> torch.Tensor:
            if calls is not None:
                calls.append(1)
            for p in params:
                p.grad = None
            loss = self.loss(params)
            loss.backward()
            return loss

        return closure

    def numpy_closure(self, params: list[np.ndarray]) -> Callable[[], tuple[float, list[np.ndarray]]]:
        def closure() -> tuple[float, list[np.ndarray]]:
            leaves = [torch.tensor(p, requires_grad=True) for p in params]
            loss = self.loss(leaves)
            loss.backward()
            return float(loss.detach()), [t.grad.numpy() for t in leaves]

        return closure


def _data(seed: int, *shapes: tuple[int, ...]) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]


def _rosenbrock(params: list[torch.Tensor]) -> torch.Tensor:
    x = params[0]
    return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


_X, _Y_TRUE = _data(1, (32, 6), (32, 3))


def _least_squares(params: list[torch.Tensor]) -> torch.Tensor:
    w, b = params
    x, y = _X.to(w.dtype), _Y_TRUE.to(w.dtype)
    return ((x @ w.t() + b - y) ** 2).mean()


_XM = _data(2, (64, 4))[0]
_YM = torch.sin(_XM.sum(dim=1, keepdim=True))


def _mlp(params: list[torch.Tensor]) -> torch.Tensor:
    w1, b1, w2, b2 = params
    x, y = _XM.to(w1.dtype), _YM.to(w1.dtype)
    return ((torch.tanh(x @ w1.t() + b1) @ w2.t() + b2 - y) ** 2).mean()


PROBLEMS: dict[str, Problem] = {
    "rosenbrock": Problem("rosenbrock", lambda: [torch.tensor([-1.2, 1.0], dtype=torch.float64)], _rosenbrock),
    "least-squares": Problem("least-squares", lambda: _data(3, (3, 6), (3,)), _least_squares),
    "mlp": Problem("mlp", lambda: [v * 0.5 for v in _data(4, (8, 4), (8,), (1, 8), (1,))], _mlp),
}
