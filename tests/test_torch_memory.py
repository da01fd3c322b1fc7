"""Large optimizer state of descend.torch lives in memory advised for huge pages (descend.engine.torch_memory): it must
behave as any other CPU tensor."""

from __future__ import annotations

import copy
import io

import pytest

torch = pytest.importorskip("torch")

import descend.torch as dt  # noqa: E402
from descend.engine.torch_memory import HUGE_FROM_BYTES, in_huge_pages  # noqa: E402

LARGE = HUGE_FROM_BYTES // 2 + 17  # elements: over the threshold for 2-byte dtypes and wider


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_a_large_tensor_moves_with_its_values(dtype: torch.dtype) -> None:
    t = torch.linspace(-3, 3, LARGE).to(dtype).reshape(-1, 1)
    moved = in_huge_pages(t)
    assert moved is not t and moved.data_ptr() != t.data_ptr()
    assert moved.dtype == dtype and moved.shape == t.shape and moved.is_contiguous()
    assert torch.equal(moved, t)


@pytest.mark.parametrize(
    "t",
    [
        torch.zeros(1000),  # small
        torch.zeros(LARGE, 2).t(),  # not contiguous
        torch.zeros(LARGE, dtype=torch.int64),  # not a float state
    ],
    ids=["small", "strided", "int"],
)
def test_other_tensors_stay_as_they_are(t: torch.Tensor) -> None:
    assert in_huge_pages(t) is t


def test_large_state_saves_loads_copies_shares_and_trains() -> None:
    w = torch.nn.Parameter(torch.linspace(-1, 1, LARGE))
    opt = dt.Adam([w], lr=1e-2)
    reference_w = torch.nn.Parameter(w.detach().clone())
    reference = dt.Adam([reference_w], lr=1e-2, backend="reference")
    for step in range(3):
        w.grad = torch.sin(w.detach() * (step + 1))
        reference_w.grad = w.grad.clone()
        opt.step()
        reference.step()
    assert torch.equal(w, reference_w)
    exp_avg = opt.state[w]["exp_avg"]
    assert torch.equal(exp_avg, reference.state[reference_w]["exp_avg"])

    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    assert torch.equal(loaded["state"][0]["exp_avg"], exp_avg)
    assert torch.equal(copy.deepcopy(opt).state_dict()["state"][0]["exp_avg_sq"], opt.state[w]["exp_avg_sq"])
    exp_avg.share_memory_()
    assert exp_avg.is_shared()
    opt.step()  # the shared state tensor is a new memory: the next step notices and still trains
    reference.step()
    assert torch.equal(w, reference_w)
