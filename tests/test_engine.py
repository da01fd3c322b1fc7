"""The step engine's one rule for kernel or reference, the same on both fronts, and what it refuses."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import descend
from descend import kernels
from descend.algorithms.adam import ADAM
from descend.optim import Optimizer as NumpyOptimizer

torch = pytest.importorskip("torch")

import descend.torch as dt  # noqa: E402
from descend.torch._optimizer import Optimizer as TorchOptimizer  # noqa: E402

# Adam's rule under a name no kernel is built for: what a new algorithm is before its kernel body exists.
NO_KERNEL = dataclasses.replace(ADAM, name="adam_without_kernel", title="AdamWithoutKernel")


class NumpyNoKernel(NumpyOptimizer):
    spec = NO_KERNEL


class TorchNoKernel(TorchOptimizer):
    spec = NO_KERNEL


def test_an_algorithm_without_a_kernel_runs_the_reference_on_both_fronts() -> None:
    assert not kernels.supports("adam_without_kernel", "float32")
    w, v = np.linspace(-1, 1, 5), np.linspace(-1, 1, 5)
    ours, reference = NumpyNoKernel([w], lr=0.1), descend.Adam([v], lr=0.1, backend="reference")
    t = torch.linspace(-1, 1, 5, dtype=torch.float64).requires_grad_()
    tours = TorchNoKernel([t], lr=0.1)
    for k in range(4):
        g = np.cos(np.arange(5.0) + k)
        ours.step([g])
        reference.step([g])
        t.grad = torch.from_numpy(g)
        tours.step()
    assert w.tobytes() == v.tobytes() == t.detach().numpy().tobytes()
    with pytest.raises(ValueError, match="no kernel runs adam_without_kernel"):
        NumpyNoKernel([np.ones(3)], backend="fused").step([np.ones(3)])


@pytest.mark.parametrize("backend", ["auto", "reference"])
@pytest.mark.parametrize("name", ["adamw", "sgd", "nadam"])
def test_a_gradient_that_is_the_param_itself_gives_the_references_bits(name: str, backend: str) -> None:
    """opt.step([w]): the gradient is the memory being written. Every backend reads it as it was before the step."""
    kwargs = {"lr": 0.1, "weight_decay": 0.1} if name != "sgd" else {"lr": 0.1, "momentum": 0.9}
    w, expected = np.linspace(-1, 1, 9), np.linspace(-1, 1, 9)
    ours = descend.OPTIMIZERS[name]([w], backend=backend, **kwargs)
    reference = descend.OPTIMIZERS[name]([expected], backend="reference", **kwargs)
    for _ in range(3):
        ours.step([w])
        reference.step([expected.copy()])
    assert w.tobytes() == expected.tobytes()


def test_a_gradient_overlapping_the_param_gives_the_references_bits() -> None:
    """The gradient is a shifted view of the param's own memory."""
    base, expected_base = np.linspace(-1, 1, 1001), np.linspace(-1, 1, 1001)
    ours = descend.Adam([base[:1000]], lr=0.1, weight_decay=0.1, decoupled_weight_decay=True)
    reference = descend.Adam(
        [expected_base[:1000]], lr=0.1, weight_decay=0.1, decoupled_weight_decay=True, backend="reference"
    )
    for _ in range(3):
        ours.step([base[1:]])
        reference.step([expected_base[1:].copy()])
    assert base.tobytes() == expected_base.tobytes()


def test_params_that_share_memory_are_refused_before_anything_changes() -> None:
    base = np.linspace(-1, 1, 10)
    with pytest.raises(ValueError, match="parameters 0 and 1 share memory"):
        descend.SGD([base[:6], base[4:]], lr=0.1)
    opt = descend.SGD([base[:5]], lr=0.1)
    with pytest.raises(ValueError, match="parameters 0 and 1 share memory"):
        opt.add_param_group({"params": [base[::2]]})
    assert len(opt.param_groups) == 1
    interleaved = descend.SGD([base[::2], base[1::2]], lr=0.1)  # the same bytes' range, no element in common
    interleaved.step([np.ones(5), np.ones(5)])
    t = torch.zeros(10)
    topt = dt.SGD([t[:6].requires_grad_(), t[4:].requires_grad_()], lr=0.1)
    for p in topt.param_groups[0]["params"]:
        p.grad = torch.ones(6)
    with pytest.raises(ValueError, match="parameters 0 and 1 share memory"):
        topt.step()
    assert torch.equal(t, torch.zeros(10))
    u = torch.zeros(10)
    apart = dt.SGD([u[::2].requires_grad_(), u[1::2].requires_grad_()], lr=0.1)
    for p in apart.param_groups[0]["params"]:
        p.grad = torch.ones(5)
    apart.step()
    assert torch.equal(u, torch.full((10,), -0.1))


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_a_matrix_param_is_refused_with_the_fix() -> None:
    with pytest.raises(TypeError, match=r"\['params'\]\[0\] is an np.matrix.*np.asarray"):
        descend.Adam([np.matrix([[1.0, 2.0]])])


def test_a_param_without_state_yet_and_one_with_state_share_a_step() -> None:
    """A parameter added to a group later starts at step 1 beside parameters at step 3, each with its own rule."""
    a, b = np.ones(4), np.ones(4)
    opt = descend.Adam([a], lr=0.1)
    for _ in range(3):
        opt.step([np.ones(4)])
    opt.add_param_group({"params": [b]})
    opt.step([np.ones(4), np.ones(4)])
    assert opt.state[0]["step"] == 4 and opt.state[1]["step"] == 1
    fresh = np.ones(4)
    descend.Adam([fresh], lr=0.1).step([np.ones(4)])
    assert b.tobytes() == fresh.tobytes()


def test_fused_takes_a_strided_gradient_through_a_contiguous_copy() -> None:
    """torch.optim.Adam accepts a transposed gradient; so does fused=True here, with the reference's bits (torch's
    own fused=True reads such a gradient in memory order and ends far from its default path)."""
    results = {}
    for name, make in [
        ("fused", lambda p: dt.Adam([p], lr=0.1, fused=True)),
        ("reference", lambda p: dt.Adam([p], lr=0.1, backend="reference")),
        ("torch", lambda p: torch.optim.Adam([p], lr=0.1)),
    ]:
        gen = torch.Generator().manual_seed(0)
        w = torch.zeros(4, 6, requires_grad=True)
        opt = make(w)
        for _ in range(3):
            w.grad = torch.randn(6, 4, generator=gen).t()
            assert not w.grad.is_contiguous()
            opt.step()
        results[name] = w.detach().clone()
    assert torch.equal(results["fused"], results["reference"])
    assert torch.allclose(results["fused"], results["torch"], atol=1e-6)
    a, b = np.zeros((4, 6), np.float32), np.zeros((4, 6), np.float32)
    g = np.arange(24, dtype=np.float32).reshape(6, 4).T
    descend.Adam([a], lr=0.1, backend="fused").step([g])
    descend.Adam([b], lr=0.1, backend="reference").step([np.ascontiguousarray(g)])
    assert a.tobytes() == b.tobytes()


def test_an_all_zeros_gradient_without_memory_steps_as_torch_does() -> None:
    w, v = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    ours, theirs = dt.Adam([w], lr=0.1, fused=True), torch.optim.Adam([v], lr=0.1)
    for _ in range(2):
        w.grad, v.grad = torch._efficientzerotensor(3), torch.zeros(3)
        ours.step()
        theirs.step()
    assert torch.equal(w, v) and ours.state[w]["step"].item() == 2


@pytest.mark.parametrize("which", ["param", "grad"])
def test_misaligned_arrays_give_the_references_bits(which: str) -> None:
    """A float64 array one byte off its alignment: the kernel never loads it (that would be undefined behaviour); a
    misaligned param runs the reference, a misaligned gradient is read from an aligned copy."""
    raw = np.zeros(8 * 101 + 1, np.uint8)
    odd = raw[1:].view(np.float64)
    assert not odd.flags.aligned
    odd[...] = np.linspace(-1, 1, 101)
    w = odd if which == "param" else np.linspace(-1, 1, 101)
    expected = np.linspace(-1, 1, 101)
    ours, reference = descend.Adam([w], lr=0.1), descend.Adam([expected], lr=0.1, backend="reference")
    for k in range(3):
        g = np.cos(np.arange(101.0) + k)
        if which == "grad":
            odd[...] = g
            g_ours = odd
        else:
            g_ours = g
        ours.step([g_ours])
        reference.step([g])
    assert w.tobytes() == expected.tobytes()
