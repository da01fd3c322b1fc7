"""descend.torch.SparseAdam against torch.optim.SparseAdam: an embedding trained with sparse gradients, the entries a
gradient does not hold left alone, torch's refusals, atomic steps and state_dicts both ways; and the NumPy front's
dense form of the same rule."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import descend  # noqa: E402
import descend.torch as dt  # noqa: E402
from descend.engine import Engine  # noqa: E402
from tests.tolerances import assert_close, torch_tolerance  # noqa: E402

CASES = [
    ("defaults", {}),
    ("high lr", {"lr": 0.05}),
    ("betas", {"lr": 0.01, "betas": (0.5, 0.9), "eps": 1e-6}),
    ("maximize", {"lr": 0.01, "maximize": True}),
]
STEPS = 30


@pytest.fixture(autouse=True)
def _quiet_sparse_checks():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse invariant checks")
        yield


def train(cls: type, kwargs: dict, dtype: torch.dtype, steps: int = STEPS, rows: int = 40) -> tuple:
    """An embedding (sparse gradients, repeated indices) and a 3-D table whose gradient keeps two sparse dimensions
    and one dense, under one optimizer."""
    torch.manual_seed(0)
    emb = torch.nn.Embedding(rows, 4, sparse=True).to(dtype)
    cube = torch.nn.Parameter(torch.randn(6, 5, 3, dtype=torch.float64).to(dtype))
    opt = cls([emb.weight, cube], **kwargs)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        idx = torch.randint(0, rows // 2, (6, 3), generator=gen)  # half the rows are never looked up
        opt.zero_grad()
        (emb(idx) ** 2).sum().backward()
        assert emb.weight.grad.is_sparse and not emb.weight.grad.is_coalesced()
        where = torch.randint(0, 5, (2, 4), generator=gen)
        values = torch.randn(4, 3, generator=gen, dtype=torch.float64).to(dtype)
        cube.grad = torch.sparse_coo_tensor(where, values, cube.shape)
        opt.step()
    return emb.weight.detach().clone(), cube.detach().clone(), opt


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize(("desc", "kwargs"), CASES, ids=[c[0] for c in CASES])
def test_training_matches_torch(desc: str, kwargs: dict, dtype: torch.dtype) -> None:
    ours, theirs = train(dt.SparseAdam, kwargs, dtype), train(torch.optim.SparseAdam, kwargs, dtype)
    tol = torch_tolerance(dtype)
    assert_close(ours[0], theirs[0], tol, "embedding")
    assert_close(ours[1], theirs[1], tol, "3-D table")
    for mine, torchs in zip(ours[2].state.values(), theirs[2].state.values()):
        assert list(mine) == list(torchs)
        assert mine["step"] == torchs["step"] == STEPS and type(mine["step"]) is int
        for key in ("exp_avg", "exp_avg_sq"):
            assert mine[key].dtype == torchs[key].dtype
            assert_close(mine[key], torchs[key], tol, key)


def test_backends_give_the_same_bits() -> None:
    fused = train(dt.SparseAdam, {"lr": 0.05, "backend": "fused"}, torch.float32)
    reference = train(dt.SparseAdam, {"lr": 0.05, "backend": "reference"}, torch.float32)
    assert torch.equal(fused[0], reference[0]) and torch.equal(fused[1], reference[1])
    for a, b in zip(fused[2].state.values(), reference[2].state.values()):
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])


def test_entries_a_gradient_never_held_are_untouched() -> None:
    torch.manual_seed(0)
    before = torch.nn.Embedding(40, 4, sparse=True).weight.detach().clone()
    weight, _, opt = train(dt.SparseAdam, {"lr": 0.05}, torch.float32)
    state = opt.state[opt.param_groups[0]["params"][0]]
    assert torch.equal(weight[20:], before[20:])  # rows 20..39 are never looked up
    assert not weight[:20].eq(before[:20]).all(dim=1).any()
    assert not state["exp_avg"][20:].any() and not state["exp_avg_sq"][20:].any()


def test_numpy_front_is_the_same_rule_with_every_entry_present() -> None:
    """The NumPy front's dense gradient counts every entry: the same bits as the torch front given a sparse gradient
    that lists every entry, and torch.optim.SparseAdam's values within its tolerance."""
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((6, 4)).astype(np.float32)
    grads = [rng.standard_normal((6, 4)).astype(np.float32) for _ in range(12)]
    every = torch.stack(torch.meshgrid(torch.arange(6), torch.arange(4), indexing="ij")).reshape(2, -1)
    w = w0.copy()
    numpy_opt = descend.SparseAdam([w], lr=0.05, betas=(0.8, 0.99))
    results = []
    for cls in (dt.SparseAdam, torch.optim.SparseAdam):
        p = torch.nn.Parameter(torch.from_numpy(w0.copy()))
        opt = cls([p], lr=0.05, betas=(0.8, 0.99))
        for g in grads:
            p.grad = torch.sparse_coo_tensor(every, torch.from_numpy(g).reshape(-1), (6, 4))
            opt.step()
        results.append(p.detach().numpy())
    for g in grads:
        numpy_opt.step([g])
    np.testing.assert_array_equal(w, results[0])
    assert_close(w, results[1], torch_tolerance("float32"))


def test_dense_gradient_is_refused_as_torch_and_nothing_changes() -> None:
    a = torch.nn.Parameter(torch.ones(4, 2))
    b = torch.nn.Parameter(torch.ones(3))
    opt = dt.SparseAdam([a, b], lr=0.1)
    a.grad = torch.sparse_coo_tensor(torch.tensor([[1, 3]]), torch.ones(2, 2), (4, 2))
    b.grad = torch.ones(3)
    with pytest.raises(RuntimeError, match="SparseAdam does not support dense gradients, please consider Adam instead"):
        opt.step()
    with pytest.raises(RuntimeError, match="SparseAdam does not support dense gradients"):
        torch.optim.SparseAdam([a, b], lr=0.1).step()
    assert torch.equal(a.detach(), torch.ones(4, 2)) and not opt.state


def test_a_failing_second_round_puts_the_first_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tensor listed twice in a group is updated twice, as torch does; should the second update fail, the first
    one's rows, its state and its count are put back."""
    p = torch.nn.Parameter(torch.randn(5, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch warns about a duplicate parameter
        opt = dt.SparseAdam([p, p], lr=0.1)
    p.grad = torch.sparse_coo_tensor(torch.tensor([[0, 2]]), torch.ones(2, 3), (5, 3))
    opt.step()
    before = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in opt.state[p].items()}
    weight = p.detach().clone()
    calls = []
    real = Engine.step

    def fail_second(self, groups):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("injected fault in the second round")
        return real(self, groups)

    monkeypatch.setattr(Engine, "step", fail_second)
    with pytest.raises(RuntimeError, match="injected fault"):
        opt.step()
    assert torch.equal(p.detach(), weight)
    assert opt.state[p]["step"] == before["step"] == 2
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.equal(opt.state[p][key], before[key])


def test_listed_twice_matches_torch() -> None:
    results = []
    for cls in (dt.SparseAdam, torch.optim.SparseAdam):
        p = torch.nn.Parameter(torch.arange(15.0).reshape(5, 3) / 7)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch warns about a duplicate parameter
            opt = cls([p, p], lr=0.1)
        for step in range(4):
            p.grad = torch.sparse_coo_tensor(torch.tensor([[0, step % 5]]), torch.ones(2, 3) * (step + 1), (5, 3))
            opt.step()
        results.append((p.detach().clone(), opt.state[p]["step"]))
    assert results[0][1] == results[1][1] == 8
    assert_close(results[0][0], results[1][0], torch_tolerance("float32"))


def test_skip_policy_changes_nothing_and_counts_no_step() -> None:
    p = torch.nn.Parameter(torch.ones(4, 2))
    opt = dt.SparseAdam([p], nan_policy="skip")
    p.grad = torch.sparse_coo_tensor(torch.tensor([[1]]), torch.tensor([[float("nan"), 1.0]]), (4, 2))
    opt.step()
    assert opt.skipped_steps == 1 and not opt.state and torch.equal(p.detach(), torch.ones(4, 2))


def test_a_gradient_without_entries_counts_a_step_as_torch() -> None:
    steps = []
    for cls in (dt.SparseAdam, torch.optim.SparseAdam):
        p = torch.nn.Parameter(torch.ones(4, 2))
        opt = cls([p])
        p.grad = torch.sparse_coo_tensor(torch.zeros((1, 0), dtype=torch.long), torch.zeros(0, 2), (4, 2))
        opt.step()
        assert torch.equal(p.detach(), torch.ones(4, 2))
        steps.append(opt.state[p]["step"])
    assert steps == [1, 1]


def test_state_dicts_load_both_ways_and_resume() -> None:
    _, _, torch_opt = train(torch.optim.SparseAdam, {"lr": 0.05}, torch.float32, steps=5)
    weight, cube, ours = train(dt.SparseAdam, {"lr": 0.05}, torch.float32, steps=5)
    saved = torch_opt.state_dict()
    fresh = dt.SparseAdam(ours.param_groups[0]["params"], lr=0.05)
    fresh.load_state_dict(saved)
    for mine, theirs in zip(fresh.state.values(), saved["state"].values()):
        assert mine["step"] == theirs["step"] == 5
        assert torch.equal(mine["exp_avg_sq"], theirs["exp_avg_sq"])
    back = torch.optim.SparseAdam(ours.param_groups[0]["params"], lr=0.05)
    back.load_state_dict(ours.state_dict())
    assert [s["step"] for s in back.state.values()] == [5, 5]
    # resuming from our own state_dict: the same bits as going on
    again = dt.SparseAdam(ours.param_groups[0]["params"], lr=0.05)
    again.load_state_dict(copy.deepcopy(ours.state_dict()))
    for opt in (ours, again):
        p = opt.param_groups[0]["params"][0]
        p.grad = torch.sparse_coo_tensor(torch.tensor([[3, 4]]), torch.ones(2, 4), p.shape)
    saved_weight = ours.param_groups[0]["params"][0].detach().clone()
    ours.step()
    stepped = ours.param_groups[0]["params"][0].detach().clone()
    with torch.no_grad():
        ours.param_groups[0]["params"][0].copy_(saved_weight)
    again.step()
    assert torch.equal(again.param_groups[0]["params"][0].detach(), stepped)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (
            lambda: dt.SparseAdam([torch.zeros(3)], lr=0.0),
            ValueError,
            r"Invalid lr value: 0.0; allowed range is \(0.0,",
        ),
        (lambda: dt.SparseAdam([torch.zeros(3)], eps=0.0), ValueError, "Invalid eps value: 0.0"),
        (lambda: dt.SparseAdam([torch.zeros(3)], betas=(1.0, 0.9)), ValueError, "beta parameter at index 0: 1.0"),
        (lambda: dt.SparseAdam([torch.zeros(3).to_sparse()]), ValueError, "requires dense parameter tensors"),
        (lambda: dt.SparseAdam([torch.zeros(2, dtype=torch.complex64)]), ValueError, "does not support complex"),
        (lambda: dt.SparseAdam([torch.zeros(3)], state_dtype="blockwise8"), ValueError, "scattered entries"),
    ],
    ids=["lr", "eps", "beta1", "sparse param", "complex param", "low-bit state"],
)
def test_bad_arguments_are_refused(make, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        make()


def test_float32_state_for_bfloat16_parameters() -> None:
    p = torch.nn.Parameter(torch.ones(4, 2, dtype=torch.bfloat16))
    opt = dt.SparseAdam([p], lr=0.1, state_dtype=torch.float32)
    p.grad = torch.sparse_coo_tensor(torch.tensor([[1]]), torch.ones(1, 2, dtype=torch.bfloat16), (4, 2))
    opt.step()
    assert opt.state[p]["exp_avg"].dtype == torch.float32
    assert p.dtype == torch.bfloat16 and (p.detach()[1] < 1).all() and (p.detach()[0] == 1).all()


def test_under_torch_compile_the_step_runs_eagerly_with_the_same_bits() -> None:
    def make():
        torch.manual_seed(0)
        emb = torch.nn.Embedding(10, 3, sparse=True)
        return emb, dt.SparseAdam(emb.parameters(), lr=0.1)

    (eager, eager_opt), (compiled, compiled_opt) = make(), make()
    step = torch.compile(lambda: compiled_opt.step(), backend="eager")
    for k in range(4):
        idx = torch.tensor([k, k + 1, 3])
        for emb in (eager, compiled):
            emb.zero_grad()
            emb(idx).sum().backward()
        eager_opt.step()
        step()
    assert torch.equal(eager.weight, compiled.weight)
    with pytest.raises(torch._dynamo.exc.Unsupported):  # a graph break: the step is not traced
        torch.compile(lambda: compiled_opt.step(), backend="eager", fullgraph=True)()


def test_the_lab_trains_it_on_its_dense_problems() -> None:
    """``descend train`` gives SparseAdam's class gradients that list every entry: it trains as Adam does, the two
    rules differing only in where epsilon goes and how the second moment is written."""
    from descend.lab.train import train

    adam, sparse = train("iris", "softmax", ["adam", "sparse_adam"], epochs=3, lr=0.05)
    assert sparse.train_loss[-1] < 0.7 * sparse.train_loss[0]
    assert sparse.train_loss[-1] == pytest.approx(adam.train_loss[-1], rel=1e-3)
