"""torch.compile of a step, as torch's docs suggest (``torch.compile(lambda: opt.step())``): the engine's step runs
as it is, with the eager step's bits and no warning, instead of being traced."""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")

import descend.torch as dt  # noqa: E402


def _params() -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(0)
    return [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in [(30, 7), (7,), ()]]


def _grads(params: list[torch.nn.Parameter], k: int) -> None:
    for i, p in enumerate(params):
        p.grad = torch.full_like(p, 0.1 * (i + 1)) * (-1) ** k


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_a_compiled_step_gives_the_eager_bits_without_warnings() -> None:
    torch._dynamo.reset()
    eager, compiled = _params(), _params()
    eager_opt, compiled_opt = dt.Adam(eager, lr=0.01, amsgrad=True), dt.Adam(compiled, lr=0.01, amsgrad=True)
    step = torch.compile(lambda: compiled_opt.step())
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # Dynamo's warning about tracing descend's kernels would fail
        for k in range(4):
            _grads(eager, k)
            _grads(compiled, k)
            eager_opt.step()
            step()
    for a, b in zip(eager, compiled):
        assert torch.equal(a, b)
    for a, b in zip(eager, compiled):
        for key, value in eager_opt.state[a].items():
            assert torch.equal(value, compiled_opt.state[b][key])
