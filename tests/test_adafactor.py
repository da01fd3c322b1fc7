"""Adafactor: torch parity over shapes, settings and dtypes, the fused kernel's bits whatever the thread count, and
state that is not shaped like its parameter (row and column averages) through steps, state_dicts and refusals."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import descend
from descend import kernels
from descend.algorithms._pairwise import pair_sum, row_sum, total

torch = pytest.importorskip("torch")

import descend.torch as dt  # noqa: E402
from descend.engine import torch_xp as _xp  # noqa: E402
from tests.bad_input_helpers import assert_unchanged, snapshot  # noqa: E402
from tests.tolerances import TORCH_ADAFACTOR_TENSOR_LR_FLOAT64, assert_close, torch_tolerance  # noqa: E402

needs_kernels = pytest.mark.skipif(not kernels.available()[0], reason="the fused kernels are not built")

STEPS = 30
SHAPES = [(6,), (5, 3), (2, 3, 4), (2, 1, 3, 5), (), (1, 7), (9, 1)]
SETTINGS = {
    "defaults": {},
    "weight decay": {"lr": 0.05, "weight_decay": 0.1},
    "maximize": {"maximize": True, "beta2_decay": -1.0},
    "eps1 set": {"eps": (1e-3, 1e-2), "d": 1.5, "beta2_decay": -0.5},
    "lr tensor": {"lr": 0.02},  # given as a 0-d tensor, fresh for each optimizer
}


def _params(dtype: torch.dtype, shapes: list[tuple[int, ...]], seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen, dtype=torch.float64).to(dtype).requires_grad_() for s in shapes]


def _set_grads(params: list[torch.Tensor], step: int) -> None:
    gen = torch.Generator().manual_seed(100 + step)
    for p in params:
        noise = torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype)
        p.grad = (p.detach() * 0.5 + noise).to(p.dtype)


def _kwargs(setting: str) -> dict:
    kwargs = dict(SETTINGS[setting])
    if setting == "lr tensor":
        kwargs["lr"] = torch.tensor(kwargs["lr"])
    return kwargs


def _lockstep(ours: torch.optim.Optimizer, theirs: torch.optim.Optimizer, a: list, b: list, steps: int) -> None:
    for t in range(steps):
        _set_grads(a, t)
        _set_grads(b, t)
        ours.step()
        theirs.step()


def _assert_like_torch(
    ours: torch.optim.Optimizer, theirs: torch.optim.Optimizer, a: list, b: list, tol: dict | None = None
) -> None:
    tol = tol or torch_tolerance(a[0].dtype)
    for i, (p, q) in enumerate(zip(a, b)):
        assert_close(p, q, tol, f"param {i} of shape {tuple(p.shape)}")
        mine, ref = ours.state[p], theirs.state[q]
        assert list(mine) == list(ref), f"state keys of param {i}"
        for key, value in ref.items():
            assert mine[key].dtype == value.dtype and mine[key].shape == value.shape, key
            if key == "step":
                assert mine[key].item() == value.item()
            else:
                assert_close(mine[key], value, tol, f"state {key!r} of param {i}")


@pytest.mark.parametrize("backend", ["auto", "reference"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_matches_torch_on_every_shape(setting: str, dtype: torch.dtype, backend: str) -> None:
    """Vectors, a scalar, matrices and batches of them (3-D and 4-D), degenerate rows and columns: the parameters and
    every state slot after 30 steps, against torch.optim.Adafactor's for-loop and foreach paths alike."""
    for foreach in (False, True):
        a, b = _params(dtype, SHAPES), _params(dtype, SHAPES)
        ours = dt.Adafactor(a, backend=backend, **_kwargs(setting))
        theirs = torch.optim.Adafactor(b, foreach=foreach, **_kwargs(setting))
        start = [p.detach().clone() for p in a]
        _lockstep(ours, theirs, a, b, STEPS)
        assert all(not torch.equal(p, s) for p, s in zip(a, start)), "a parameter did not move"
        tensor_lr = setting == "lr tensor" and dtype == torch.float64
        _assert_like_torch(ours, theirs, a, b, TORCH_ADAFACTOR_TENSOR_LR_FLOAT64 if tensor_lr else None)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_numpy_front_matches_torch(dtype: type) -> None:
    rng = np.random.default_rng(0)
    params = [np.asarray(rng.standard_normal(s), dtype=dtype) for s in SHAPES]
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    ours = descend.Adafactor(params, weight_decay=0.1, eps=(1e-4, 1e-3))
    theirs = torch.optim.Adafactor(tparams, weight_decay=0.1, eps=(1e-4, 1e-3))
    for _ in range(STEPS):
        grads = [np.asarray(p - 1.0 + rng.standard_normal(p.shape), dtype=dtype) for p in params]
        ours.step(grads)
        for tp, g in zip(tparams, grads):
            tp.grad = torch.from_numpy(g.copy())
        theirs.step()
    tol = torch_tolerance(np.dtype(dtype))
    for i, tp in enumerate(tparams):
        assert_close(params[i], tp, tol, f"param {i}")
        for key, value in theirs.state[tp].items():
            assert_close(ours.state[i][key], value, tol, f"state {key!r} of param {i}")


# -- the fused kernel --------------------------------------------------------------------------------------------------

BIG_SHAPES = [(70_000,), (3, 70_000), (300, 257), (4, 2, 130, 33), (1_000, 200), (5_000, 3)]


@needs_kernels
@pytest.mark.parametrize("shape", BIG_SHAPES, ids=str)
def test_the_kernel_gives_the_references_bits_whatever_the_threads(shape: tuple[int, ...]) -> None:
    """Long vectors and rows (split into column tiles), many rows (row tiles), batches: the fused step equals the
    reference rule bit for bit with 1, 2 or 3 threads, so the tiling of the sums changes nothing."""
    rng = np.random.default_rng(1)
    start = np.asarray(rng.standard_normal(shape), dtype=np.float32)
    grads = [np.asarray(rng.standard_normal(shape), dtype=np.float32) for _ in range(3)]
    kwargs = {"weight_decay": 0.01, "eps": (None, 1e-3)}
    expected = start.copy()
    reference = descend.Adafactor([expected], backend="reference", **kwargs)
    for g in grads:
        reference.step([g])
    before = kernels.get_num_threads()
    try:
        for threads in (1, 2, 3):
            kernels.set_num_threads(threads)
            param = start.copy()
            fused = descend.Adafactor([param], backend="fused", **kwargs)
            for g in grads:
                fused.step([g])
            assert param.tobytes() == expected.tobytes(), f"{threads} threads"
            for key, value in reference.state[0].items():
                assert np.asarray(fused.state[0][key]).tobytes() == np.asarray(value).tobytes(), (threads, key)
    finally:
        kernels.set_num_threads(before)


@needs_kernels
@pytest.mark.parametrize("state_dtype", [None, torch.float32], ids=["own-state", "float32-state"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_kernel_is_the_reference(dtype: torch.dtype, state_dtype: torch.dtype | None) -> None:
    """16-bit storage: the kernel computes in float32 and rounds on store, as the reference on float32 copies does,
    also for the factored averages (whose float32 values the kernel keeps between its passes)."""
    shapes = [(40, 70), (3, 5, 7), (50,), ()]
    results = []
    for backend in ("fused", "reference"):
        params = _params(dtype, shapes)
        opt = dt.Adafactor(params, backend=backend, state_dtype=state_dtype, weight_decay=0.1)
        for t in range(6):
            _set_grads(params, t)
            opt.step()
        results.append(
            [p.detach().clone() for p in params] + [v.clone() for s in opt.state.values() for v in s.values()]
        )
    for a, b in zip(*results):
        assert a.dtype == b.dtype and torch.equal(a, b)


@needs_kernels
def test_the_kernel_checks_each_slot_against_the_shape() -> None:
    spec = descend.REGISTRY["adafactor"]
    s = spec.step_scalars(spec.make(), 1, {}, True, shape=(5, 3), dtype="float32")
    p, g = np.zeros((5, 3), np.float32), np.ones((5, 3), np.float32)
    row, col = np.zeros(5, np.float32), np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="needs shapes"):
        kernels.step("adafactor", s, [p], [g], {"row_var": [row], "col_var": [col]}, dtype="float32")
    with pytest.raises(ValueError, match=r"tensor 0 of shape \(5, 3\) needs state slot 1"):
        kernels.step("adafactor", s, [p], [g], {"row_var": [row]}, dtype="float32", shapes=[(5, 3)])
    with pytest.raises(ValueError, match=r"has no state slot 2"):
        kernels.step(
            "adafactor",
            s,
            [p],
            [g],
            {"row_var": [row], "col_var": [col], "variance": [p.copy()]},
            dtype="float32",
            shapes=[(5, 3)],
        )
    with pytest.raises(ValueError, match=r"states\[1\]\[0\] has 5 elements, its parameter's shape gives it 3"):
        kernels.step(
            "adafactor", s, [p], [g], {"row_var": [row], "col_var": [row.copy()]}, dtype="float32", shapes=[(5, 3)]
        )
    with pytest.raises(ValueError, match=r"shapes\[0\] is not the shape of a tensor of 15 elements"):
        kernels.step("adafactor", s, [p], [g], {"row_var": [row], "col_var": [col]}, dtype="float32", shapes=[(4, 3)])
    assert not p.any() and not row.any() and not col.any()
    kernels.step("adafactor", s, [p], [g], {"row_var": [row], "col_var": [col]}, dtype="float32", shapes=[(5, 3)])
    assert row.all() and col.all() and p.all()


# -- the fixed order of the sums ---------------------------------------------------------------------------------------


def test_the_sums_order_is_the_documented_one() -> None:
    """Adjacent pairs over rows, halves over a row's lanes: with 2**24 (where float32 adds 1 to an even neighbour)
    the two orders give 1 and 2 for the same four numbers."""
    x = np.array([2.0**24, 1.0, -(2.0**24), 1.0], dtype=np.float32)
    assert pair_sum(np, x.reshape(4, 1))[0, 0] == 1.0  # (2^24 + 1) + (-2^24 + 1) = 2^24 - (2^24 - 1)
    assert row_sum(np, x.reshape(1, 4))[0, 0] == 2.0  # lanes 0 + 2 and 1 + 3: 0 + 2


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 17, 33), (2, 1000, 5), (1, 3, 4099)], ids=str)
def test_the_sums_are_the_same_in_numpy_and_torch_and_accurate(shape: tuple[int, ...]) -> None:
    """The reference rule's sums are elementwise operations: NumPy and torch give the same bits, within a few units
    of float32's last place of the exact sum (the tree's error grows as log2 of the count)."""
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32) ** 2
    t = torch.from_numpy(x.copy())
    for fn in (pair_sum, row_sum, total):
        ours, theirs = fn(np, x), fn(_xp, t).numpy()
        assert ours.tobytes() == theirs.tobytes(), fn.__name__
    exact = x.astype(np.float64).sum()
    assert abs(float(total(np, x)[0, 0, 0]) - exact) <= 4 * np.finfo(np.float32).eps * exact


# -- state not shaped like its parameter -------------------------------------------------------------------------------


def test_state_dicts_go_both_ways_with_torch() -> None:
    """A state_dict saved by torch's class loads into descend's and the other way round; both go on as torch does."""
    for first, second in ((torch.optim.Adafactor, dt.Adafactor), (dt.Adafactor, torch.optim.Adafactor)):
        a, b = _params(torch.float32, SHAPES), _params(torch.float32, SHAPES)
        x, y = first(a, weight_decay=0.1), first(b, weight_decay=0.1)
        _lockstep(x, y, a, b, 3)
        ours, theirs = second(a, weight_decay=0.1), torch.optim.Adafactor(b, weight_decay=0.1)
        ours.load_state_dict(x.state_dict())
        theirs.load_state_dict(y.state_dict())
        _lockstep(ours, theirs, a, b, 5)
        _assert_like_torch(ours, theirs, a, b)


def test_a_state_of_another_shape_is_refused_and_nothing_changes() -> None:
    a = _params(torch.float32, [(5, 3), (4,)])
    opt = dt.Adafactor(a)
    _set_grads(a, 0)
    opt.step()
    sd = copy.deepcopy(opt.state_dict())  # (torch's state_dict holds the optimizer's own state dicts)
    sd["state"][0]["row_var"] = torch.zeros(3, 1)
    before = {k: v.clone() for k, v in opt.state[a[0]].items()}
    with pytest.raises(ValueError, match=r"state 'row_var' for param 0 has shape \(3, 1\).*needs shape \(5, 1\)"):
        opt.load_state_dict(sd)
    sd["state"][0]["row_var"] = torch.zeros(5, 1)
    sd["state"][1]["row_var"] = sd["state"][1].pop("variance")
    with pytest.raises(ValueError, match=r"state for param 1 has keys \['row_var', 'step'\]"):
        opt.load_state_dict(sd)
    assert all(torch.equal(v, before[k]) for k, v in opt.state[a[0]].items())
    opt.state[a[0]]["col_var"] = torch.zeros(5, 3)  # put there between steps: refused by the step, nothing written
    with pytest.raises(
        ValueError, match=r"the state 'col_var' of parameter 0 .* must be a float tensor of shape \(1, 3\)"
    ):
        opt.step()
    assert torch.equal(opt.state[a[0]]["row_var"], before["row_var"])


def test_the_numpy_front_checks_shapes_in_state_dicts() -> None:
    params = [np.ones((5, 3)), np.ones(4)]
    opt = descend.Adafactor(params)
    opt.step([np.ones((5, 3)), np.ones(4)])
    sd = opt.state_dict()
    sd["state"][0]["col_var"] = np.zeros((5, 3))
    with pytest.raises(
        ValueError, match=r"state 'col_var' for param 0 has shape \(5, 3\), .* the state needs shape \(1, 3\)"
    ):
        opt.load_state_dict(sd)


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_an_empty_parameter_keeps_its_state(backend: str) -> None:
    """torch divides by zero on an empty parameter; here its averages stay as they are and its step count moves."""
    a = _params(torch.float32, [(0, 5), (3, 0), (0,), (4, 2)])
    opt = dt.Adafactor(a, backend=backend)
    for t in range(2):
        _set_grads(a, t)
        opt.step()
    shapes = [{"row_var": (0, 1), "col_var": (1, 5)}, {"row_var": (3, 1), "col_var": (1, 0)}, {"variance": (0,)}]
    for p, expected in zip(a[:3], shapes):
        state = opt.state[p]
        assert state["step"].item() == 2
        assert {k: tuple(v.shape) for k, v in state.items() if k != "step"} == expected
        assert all(not v.any() for k, v in state.items() if k != "step")
    assert opt.state[a[3]]["row_var"].all()


def test_each_parameter_takes_its_own_dtypes_epsilon() -> None:
    """eps[0] = None is the machine epsilon of each parameter's dtype (torch takes the first parameter's for the whole
    group): a float64 parameter beside a float32 one steps as it does alone, as torch's does alone. Its gradients
    are small enough (1e-8) that float32's epsilon would floor the estimate, and float64's does not."""
    mixed = [*_params(torch.float32, [(5, 3)]), *_params(torch.float64, [(5, 3)], seed=1)]
    alone = _params(torch.float64, [(5, 3)], seed=1)
    theirs = _params(torch.float64, [(5, 3)], seed=1)
    opts = [dt.Adafactor(mixed), dt.Adafactor(alone), torch.optim.Adafactor(theirs)]
    for t in range(STEPS):
        _set_grads(mixed, t)
        mixed[1].grad *= 1e-8
        alone[0].grad, theirs[0].grad = mixed[1].grad.clone(), mixed[1].grad.clone()
        for opt in opts:
            opt.step()
    assert torch.equal(mixed[1], alone[0])
    assert_close(alone[0], theirs[0], torch_tolerance(torch.float64))


def test_it_has_no_multi_tensor_form_and_no_steady_state_plan() -> None:
    """Its rule reads whole tensors, so backend="foreach" is refused with nothing changed, a tensor off the CPU takes
    the reference in torch operations, and the torch front records no steady-state plan (whose one layout and one set
    of scalars cannot hold slots and scalars per shape): every step goes through the engine and matches torch."""
    p = torch.nn.Parameter(torch.randn(4, 3))
    p.grad = torch.ones(4, 3)
    opt = dt.Adafactor([p], backend="foreach")
    before = snapshot(opt)
    with pytest.raises(ValueError, match=r"cannot update parameter 0 of Adafactor: .* no multi-tensor form"):
        opt.step()
    assert_unchanged(opt, before)
    meta = torch.nn.Parameter(torch.empty(4, 3, device="meta"))
    meta.grad = torch.empty(4, 3, device="meta")
    on_meta = dt.Adafactor([meta])
    on_meta.step()
    assert on_meta.state[meta]["row_var"].device.type == "meta" and on_meta.state[meta]["row_var"].shape == (4, 1)
    ours, theirs = _params(torch.float32, SHAPES), _params(torch.float32, SHAPES)
    mine, ref = dt.Adafactor(ours), torch.optim.Adafactor(theirs, foreach=False)
    for step in range(5):
        _set_grads(ours, step)
        _set_grads(theirs, step)
        mine.step()
        ref.step()
    assert not mine._plans
    for a, b in zip(ours, theirs):
        assert_close(a, b, torch_tolerance(torch.float32), "param")
        for key in ref.state[b]:
            if key != "step":
                assert_close(mine.state[a][key], ref.state[b][key], torch_tolerance(torch.float32), key)


def test_complex_parameters_are_refused_in_torchs_words() -> None:
    w = torch.zeros(3, 2, dtype=torch.complex64, requires_grad=True)
    w.grad = torch.ones_like(w)
    opt = dt.Adafactor([w])
    with pytest.raises(RuntimeError, match="Adafactor does not support complex parameters"):
        opt.step()
    assert not opt.state


def test_a_sharded_dtensor_is_refused_and_a_whole_one_steps() -> None:
    """The rule reduces over the whole tensor: a DTensor of which this process holds a piece is refused before
    anything changes; one whose local tensor is all of it (replicated) steps like a plain tensor."""
    dist = pytest.importorskip("torch.distributed")
    if not dist.is_available() or not dist.is_gloo_available() or dist.is_initialized():
        pytest.skip("needs torch.distributed with gloo and no process group yet")
    import socket

    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Replicate, Shard

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        mesh = init_device_mesh("cpu", (1,))

        def piece(values: torch.Tensor) -> DTensor:  # half of a (4, 3) tensor, as a rank of two would hold it
            return DTensor.from_local(
                values, mesh, [Shard(0)], run_check=False, shape=torch.Size((4, 3)), stride=(3, 1)
            )

        w = torch.nn.Parameter(piece(torch.ones(2, 3)))
        w.grad = piece(torch.ones(2, 3))
        opt = dt.Adafactor([w])
        with pytest.raises(ValueError, match=r"parameter 0 is a DTensor placed as \(Shard\(dim=0\),\).*only a piece"):
            opt.step()
        assert not opt.state and torch.equal(w.to_local(), torch.ones(2, 3))
        start = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
        r = torch.nn.Parameter(DTensor.from_local(start.clone(), mesh, [Replicate()], run_check=False))
        plain = torch.nn.Parameter(start.clone())
        r.grad = DTensor.from_local(torch.ones(4, 3), mesh, [Replicate()], run_check=False)
        plain.grad = torch.ones(4, 3)
        dt.Adafactor([r]).step()
        dt.Adafactor([plain]).step()
        assert torch.equal(r.to_local(), plain.detach())
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("problem", ["rosenbrock", "softmax-iris", "torch-softmax-iris"])
def test_the_lab_runs_each_seed_as_its_own_run(problem: str) -> None:
    """The lab steps several seeds and settings in one optimizer; for a rule that reduces over its tensors each seed
    gets its own tensor, so the first seed's run is the same beside another seed, beside a third, or alone (factored
    across seeds, its means and RMS would mix in its neighbour's)."""
    from descend.lab import problems
    from descend.lab.contestants import CONTESTANTS
    from descend.lab.runner import RunResult, run_many

    prob = problems.get(problem)
    settings = [{"lr": 0.01}, {"lr": 0.1}]
    together = run_many(prob, CONTESTANTS["adafactor"], settings, 12, [0, 1])
    beside_another = run_many(prob, CONTESTANTS["adafactor"], settings, 12, [0, 2])
    for setting, result, other in zip(settings, together, beside_another):
        (alone,) = run_many(prob, CONTESTANTS["adafactor"], [setting], 12, [0])
        assert np.array_equal(result.loss[:, 0], alone.loss[:, 0]), setting
        assert np.array_equal(other.loss[:, 0], alone.loss[:, 0]), setting
        assert not np.array_equal(result.loss[:, 1], other.loss[:, 1])
    again = RunResult.from_json(together[0].to_json())
    assert again.hyperparams["eps"] == (None, 1e-3)
