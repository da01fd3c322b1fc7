"""descend.torch with backend="auto" runs the compiled kernel on contiguous CPU tensors: after several steps its
params and state are those of reference_update run with NumPy, bit for bit.

(Its backend="reference" runs reference_update with torch ops, and torch's vectorised float32 sqrt is not always
correctly rounded, so that path may differ from NumPy's by an ulp; the kernel follows NumPy's IEEE sqrt.)
"""

from __future__ import annotations

import numpy as np
import pytest

from descend import kernels
from descend.algorithms import registry
from descend.kernels._layout import KERNELS
from tests.shapes import torch_grad
from tests.test_kernels_strategies import reference_steps, same_bits

torch = pytest.importorskip("torch")
dt = pytest.importorskip("descend.torch")
pytestmark = pytest.mark.skipif(not kernels.available()[0], reason=kernels.available()[1])

KWARGS = {
    "sgd": {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
    "rmsprop": {"centered": True, "momentum": 0.5, "weight_decay": 0.01},
    "adam": {"amsgrad": True, "weight_decay": 0.1},
    "adamw": {"amsgrad": True},
    "nadam": {"decoupled_weight_decay": True, "weight_decay": 0.1},
    "radam": {"weight_decay": 0.1},
}
# Left out: algorithms with host scalars (NAdam's mu_product, ASGD's eta and mu), which descend.torch keeps as torch
# does in float32 tensors, not in float64 as the NumPy reference.
# Left out too: algorithms without a kernel (Muon).
NAMES = [
    n
    for n, spec in registry.ELEMENTWISE.items()
    if n in getattr(dt, "OPTIMIZERS", {}) and not spec.host_slots(spec.make()) and n in KERNELS
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", NAMES)
def test_auto_equals_the_numpy_reference(name: str, dtype: torch.dtype) -> None:
    """Algorithms with host scalars are left out (see NAMES)."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(300, 7), (5,), (), (0,), (70_000,)]
    params = [torch.nn.Parameter(torch.randn(s, generator=gen, dtype=dtype)) for s in shapes]
    expected = [p.detach().numpy().copy() for p in params]
    kwargs = KWARGS.get(name, {})
    opt = dt.OPTIMIZERS[name](params, backend="auto", **kwargs)
    grads = [[torch.randn(s, generator=gen, dtype=dtype) for s in shapes] for _ in range(4)]
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = torch_grad(type(opt), g)
        opt.step()
    hp = registry.get(name).make(**kwargs)
    for i, p in enumerate(params):
        state = reference_steps(name, hp, expected[i], [g[i].numpy() for g in grads])
        assert same_bits(p.detach().numpy(), expected[i]), f"{name} {dtype}: param {i}"
        for slot, value in state.items():
            if isinstance(value, np.ndarray):
                assert same_bits(opt.state[p][slot].numpy(), value), f"{name} {dtype}: state {slot!r} of param {i}"


def test_non_contiguous_tensors_run_the_reference() -> None:
    p = torch.nn.Parameter(torch.randn(6, 4, dtype=torch.float64).t())
    q = torch.nn.Parameter(p.detach().clone().contiguous())
    opt_p, opt_q = dt.Adam([p], backend="auto"), dt.Adam([q], backend="reference")
    for _ in range(3):
        p.grad = torch.ones(4, 6, dtype=torch.float64)
        q.grad = torch.ones(4, 6, dtype=torch.float64)
        opt_p.step()
        opt_q.step()
    assert torch.equal(p.detach(), q.detach())
