"""descend's NumPy optimizers against torch.optim under the "torch" convention: params and every state slot."""

from __future__ import annotations

import numpy as np
import pytest

import descend
from tests.optim_db import torch_cases
from tests.tolerances import assert_close, torch_tolerance

torch = pytest.importorskip("torch")

STEPS = 25
SHAPES = [(5, 3), (4,), ()]


def _grads(rng: np.random.Generator, params: list[np.ndarray], step: int) -> list[np.ndarray]:
    # A quadratic pull towards 1 plus noise, so the path depends on the params (and on weight decay, maximize...).
    return [np.asarray(2.0 * (p - 1.0) + rng.standard_normal(p.shape), dtype=p.dtype) for p in params]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("name", "desc", "kwargs"), torch_cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_matches_torch_optim(name: str, desc: str, kwargs: dict, dtype: type) -> None:
    spec = descend.REGISTRY[name]
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(shape).astype(dtype) for shape in SHAPES]
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    ours = descend.OPTIMIZERS[name](params, **kwargs)
    theirs = getattr(torch.optim, spec.torch_name)(tparams, **kwargs)
    tol = torch_tolerance(np.dtype(dtype), name)
    for step in range(STEPS):
        grads = _grads(rng, params, step)
        ours.step(grads)
        for tp, g in zip(tparams, grads):
            tp.grad = torch.from_numpy(g.copy())
        theirs.step()
        for i, (p, tp) in enumerate(zip(params, tparams)):
            assert_close(p, tp, tol, f"{name} {desc}: param {i} after step {step + 1}")
    for i, tp in enumerate(tparams):
        theirs_state = theirs.state[tp]
        mine = ours.state.get(i, {})
        assert set(mine) == set(theirs_state), f"{name} {desc}: state keys differ"
        for key, value in theirs_state.items():
            assert_close(mine[key], value, tol, f"{name} {desc}: state {key!r} of param {i}")
