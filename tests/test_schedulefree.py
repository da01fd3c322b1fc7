"""Schedule-Free AdamW: its numbers against the reference package, its train and eval modes, and resuming in either.

The registry-driven tests hold its kernel to its reference rule, bit for bit; here the rule is held to the
``schedulefree`` package's ``AdamWScheduleFree`` (the paper's reference code), the modes to what they promise (a step
in eval mode is refused and changes nothing, ``attach`` follows a model), and checkpoints to resuming bit for bit.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest

import descend
from tests.tolerances import SCHEDULEFREE_FLOAT32, SCHEDULEFREE_FLOAT64, assert_close

torch = pytest.importorskip("torch")
schedulefree = pytest.importorskip("schedulefree")

import descend.torch as dt  # noqa: E402

SETTINGS: list[dict[str, Any]] = [
    {},
    {"lr": 0.05, "betas": (0.95, 0.99), "weight_decay": 0.01, "warmup_steps": 5},
    {"lr": 0.01, "betas": (0.5, 0.999), "eps": 1e-6, "warmup_steps": 10, "r": 1.0, "weight_lr_power": 0.0},
    {"lr": 0.02, "betas": (0.9, 0.9), "weight_decay": 0.1, "r": 0.5, "weight_lr_power": 1.0},
]
SHAPES = [(17,), (5, 4)]
STEPS = 30
LR_CHANGE = 12  # the learning rate halves at this step: lr_max and the weights keep their running values


def _start(dtype: Any) -> list:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(shape, generator=g, dtype=torch.float64).to(dtype) for shape in SHAPES]


def _noise(dtype: Any) -> list[list]:
    g = torch.Generator().manual_seed(1)
    return [[torch.randn(shape, generator=g, dtype=torch.float64).to(dtype) for shape in SHAPES] for _ in range(STEPS)]


def _grad(p: Any, noise: Any) -> Any:
    return 0.5 * p + noise  # a quadratic's gradient plus noise: the path feeds back into the gradients


def _run_torch(cls: type, settings: dict, dtype: Any, steps: int = STEPS) -> tuple[list, Any]:
    params = [torch.nn.Parameter(p.clone()) for p in _start(dtype)]
    opt = cls(params, **settings)
    opt.train()
    for t, noise in enumerate(_noise(dtype)[:steps], start=1):
        if t == LR_CHANGE:
            opt.param_groups[0]["lr"] *= 0.5
        for p, n in zip(params, noise):
            p.grad = _grad(p.detach(), n)
        opt.step()
    return params, opt


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("settings", SETTINGS, ids=[str(i) for i in range(len(SETTINGS))])
def test_torch_front_matches_the_schedulefree_package(settings: dict, dtype: Any) -> None:
    tolerance = SCHEDULEFREE_FLOAT64 if dtype is torch.float64 else SCHEDULEFREE_FLOAT32
    ours, opt = _run_torch(dt.AdamWScheduleFree, settings, dtype)
    theirs, ref = _run_torch(schedulefree.AdamWScheduleFree, settings, dtype)
    for k, (a, b) in enumerate(zip(ours, theirs)):
        assert a.dtype == dtype
        assert_close(a, b, tolerance, f"y of param {k}")
        for key in ("z", "exp_avg_sq"):
            assert_close(opt.state[a][key], ref.state[b][key], tolerance, f"{key} of param {k}")
        assert opt.state[a]["step"].item() == STEPS
        assert opt.state[a]["weight_sum"].item() == ref.param_groups[0]["weight_sum"]  # both in float64
        assert opt.state[a]["lr_max"].item() == ref.param_groups[0]["lr_max"]
    opt.eval()
    ref.eval()
    for k, (a, b) in enumerate(zip(ours, theirs)):
        assert_close(a, b, tolerance, f"x of param {k}")
    opt.train()
    ref.train()
    for k, (a, b) in enumerate(zip(ours, theirs)):
        assert_close(a, b, tolerance, f"y of param {k} after eval() and train()")


@pytest.mark.parametrize("settings", SETTINGS, ids=[str(i) for i in range(len(SETTINGS))])
def test_numpy_front_matches_the_schedulefree_package(settings: dict) -> None:
    params = [p.numpy().copy() for p in _start(torch.float64)]
    opt = descend.AdamWScheduleFree(params, **settings)
    for t, noise in enumerate(_noise(torch.float64), start=1):
        if t == LR_CHANGE:
            opt.param_groups[0]["lr"] *= 0.5
        opt.step([_grad(p, n.numpy()) for p, n in zip(params, noise)])
    theirs, ref = _run_torch(schedulefree.AdamWScheduleFree, settings, torch.float64)
    for k, (a, b) in enumerate(zip(params, theirs)):
        assert_close(a, b, SCHEDULEFREE_FLOAT64, f"y of param {k}")
        assert_close(opt.state[k]["z"], ref.state[b]["z"], SCHEDULEFREE_FLOAT64, f"z of param {k}")
    opt.eval()
    ref.eval()
    for k, (a, b) in enumerate(zip(params, theirs)):
        assert_close(a, b, SCHEDULEFREE_FLOAT64, f"x of param {k}")


# -- modes --------------------------------------------------------------------------------------------------------


def _trained_torch(steps: int = 5, **settings: Any) -> tuple[torch.nn.Module, Any]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
    opt = dt.AdamWScheduleFree(model.parameters(), lr=0.05, **settings)
    x = torch.randn(8, 4)
    for _ in range(steps):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    return model, opt


def _snapshot(model: torch.nn.Module, opt: Any) -> list:
    return [p.detach().clone() for p in model.parameters()] + [
        v.clone() for st in opt.state.values() for v in st.values()
    ]


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(x.dtype == y.dtype and torch.equal(x, y) for x, y in zip(a, b))


def test_eval_moves_the_parameters_to_the_average_and_train_moves_them_back() -> None:
    model, opt = _trained_torch()
    y = [p.detach().clone() for p in model.parameters()]
    z = [opt.state[p]["z"].clone() for p in model.parameters()]
    assert opt.train_mode
    opt.eval()
    assert not opt.train_mode and all(g["train_mode"] is False for g in opt.param_groups)
    for p, yi, zi in zip(model.parameters(), y, z):
        assert_close(p, (yi - 0.1 * zi) / 0.9, SCHEDULEFREE_FLOAT32)  # x from y = 0.1 z + 0.9 x
        assert not torch.equal(p.detach(), yi)
    opt.eval()  # already there: nothing moves
    x = [p.detach().clone() for p in model.parameters()]
    opt.eval()
    assert _same(x, [p.detach() for p in model.parameters()])
    opt.train()
    for p, yi in zip(model.parameters(), y):
        assert_close(p, yi, SCHEDULEFREE_FLOAT32)


@pytest.mark.parametrize("front", ["numpy", "torch"])
def test_a_step_in_eval_mode_is_refused_and_changes_nothing(front: str) -> None:
    if front == "torch":
        model, opt = _trained_torch()
        opt.eval()
        before = _snapshot(model, opt)
        called = []

        def closure() -> Any:
            called.append(1)
            return model(torch.ones(1, 4)).sum()

        with pytest.raises(RuntimeError, match=r"step\(\) was called in eval mode .*call optimizer.train\(\)"):
            opt.step(closure)
        assert not called and _same(before, _snapshot(model, opt))
        opt.train()
        opt.step(closure)
        assert called
    else:
        w = np.linspace(-1.0, 1.0, 6)
        opt = descend.AdamWScheduleFree([w], lr=0.1)
        opt.step([w.copy()])
        opt.eval()
        before = (w.copy(), {k: np.copy(v) for k, v in opt.state[0].items()})
        with pytest.raises(RuntimeError, match=r"step\(\) was called in eval mode .*call optimizer.train\(\)"):
            opt.step([w.copy()])
        assert w.tobytes() == before[0].tobytes()
        assert all(np.asarray(opt.state[0][k]).tobytes() == v.tobytes() for k, v in before[1].items())


def test_attach_follows_the_model_mode_at_every_forward_call() -> None:
    model, opt = _trained_torch()
    handle = opt.attach(model)
    x = torch.randn(2, 4)
    y = [p.detach().clone() for p in model.parameters()]
    model.eval()
    assert opt.train_mode  # nothing moves until the model is called
    with torch.no_grad():
        out_eval = model(x)
    assert not opt.train_mode
    xs = [p.detach().clone() for p in model.parameters()]
    for xi, yi, p in zip(xs, y, model.parameters()):
        assert_close(xi, (yi - 0.1 * opt.state[p]["z"]) / 0.9, SCHEDULEFREE_FLOAT32)
    reference = torch.func.functional_call(model, dict(zip([n for n, _ in model.named_parameters()], xs)), (x,))
    assert torch.equal(out_eval, reference)
    model.train()
    loss = model(x).square().mean()
    assert opt.train_mode
    loss.backward()
    opt.step()  # in train mode again: it steps
    handle.remove()
    model.eval()
    model(x)
    assert opt.train_mode  # detached: the model's mode no longer moves it


def test_attach_takes_the_model_mode_at_once_and_holds_the_optimizer_weakly() -> None:
    model, opt = _trained_torch()
    model.eval()
    opt.attach(model)
    assert not opt.train_mode
    with pytest.raises(RuntimeError, match="eval mode"):
        opt.step()
    del opt
    model.train()
    model(torch.ones(1, 4))  # the hook of a freed optimizer does nothing
    with pytest.raises(TypeError, match=r"attach\(\) takes a torch.nn.Module, got list"):
        _trained_torch()[1].attach([])


@pytest.mark.parametrize("front", ["numpy", "torch"])
def test_a_new_group_takes_the_optimizers_mode(front: str) -> None:
    if front == "torch":
        opt = _trained_torch()[1]
        extra = torch.nn.Parameter(torch.ones(3))
    else:
        opt = descend.AdamWScheduleFree([np.ones(3)])
        extra = np.ones(2)
    opt.eval()
    opt.add_param_group({"params": [extra]})
    assert opt.param_groups[-1]["train_mode"] is False
    opt.train()
    assert all(g["train_mode"] is True for g in opt.param_groups)


def test_swaps_on_both_fronts_give_the_same_bits() -> None:
    rng = np.random.default_rng(3)
    start = rng.standard_normal(40).astype(np.float32)
    grads = [rng.standard_normal(40).astype(np.float32) for _ in range(6)]
    w = start.copy()
    t = torch.nn.Parameter(torch.from_numpy(start.copy()))
    a = descend.AdamWScheduleFree([w], lr=0.1, betas=(0.8, 0.99))
    b = dt.AdamWScheduleFree([t], lr=0.1, betas=(0.8, 0.99))
    for g in grads:
        a.step([g])
        t.grad = torch.from_numpy(g.copy())
        b.step()
        for opt in (a, b):
            opt.eval()
        assert w.tobytes() == t.detach().numpy().tobytes()
        for opt in (a, b):
            opt.train()
        assert w.tobytes() == t.detach().numpy().tobytes()


# -- resuming -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_torch_state_dict_resumes_bit_for_bit_in_either_mode(mode: str) -> None:
    def more(model: torch.nn.Module, opt: Any, steps: int) -> None:
        opt.train()
        x = torch.randn(8, 4, generator=torch.Generator().manual_seed(9))
        for _ in range(steps):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
        opt.eval()

    model, opt = _trained_torch(weight_decay=0.01, warmup_steps=3)
    getattr(opt, mode)()
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    more(model, opt, 4)
    buffer.seek(0)
    saved = torch.load(buffer)
    assert all(g["train_mode"] is (mode == "train") for g in saved["opt"]["param_groups"])
    resumed, ropt = _trained_torch(steps=0, weight_decay=0.01, warmup_steps=3)
    resumed.load_state_dict(saved["model"])
    ropt.load_state_dict(saved["opt"])
    assert ropt.train_mode is (mode == "train")
    assert all(st["weight_sum"].dtype == torch.float64 for st in ropt.state.values())
    more(resumed, ropt, 4)
    assert _same(_snapshot(model, opt), _snapshot(resumed, ropt))


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_numpy_checkpoint_resumes_bit_for_bit_in_either_mode(mode: str, tmp_path: Any) -> None:
    rng = np.random.default_rng(5)
    grads = [[rng.standard_normal(4), rng.standard_normal(3)] for _ in range(8)]

    def make() -> tuple[list, Any]:
        params = [np.linspace(-1, 1, 4), np.linspace(0, 2, 3)]
        return params, descend.AdamWScheduleFree(params, lr=0.05, warmup_steps=2, weight_decay=0.01)

    def steps(params: list, opt: Any, gs: list) -> None:
        opt.train()
        for g in gs:
            opt.step(g)
        opt.eval()

    params, opt = make()
    steps(params, opt, grads[:4])
    getattr(opt, mode)()
    descend.save(tmp_path / "ckpt.npz", opt)
    steps(params, opt, grads[4:])
    fresh, ropt = make()
    descend.load(tmp_path / "ckpt.npz", ropt)
    assert ropt.train_mode is (mode == "train")
    steps(fresh, ropt, grads[4:])
    assert all(a.tobytes() == b.tobytes() for a, b in zip(params, fresh))
    assert ropt.state_dict()["state"][0]["weight_sum"] == opt.state_dict()["state"][0]["weight_sum"]
