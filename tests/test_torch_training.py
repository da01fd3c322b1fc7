"""descend.torch inside torch's training machinery: schedulers, GradScaler, hooks, closures, param groups, dtypes."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch.optim import lr_scheduler  # noqa: E402

import descend.torch as dt  # noqa: E402
from tests.test_torch_parity import assert_same_state, make_params, set_grads  # noqa: E402
from tests.tolerances import assert_close, torch_tolerance  # noqa: E402


def clones(params: list[torch.Tensor]) -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(p.detach().clone()) for p in params]


def pair(name: str, dtype: torch.dtype = torch.float64, **kwargs):
    """The descend optimizer and its torch.optim twin on equal copies of the same parameters."""
    a = make_params(dtype)
    b = clones(a)
    cls = dt.OPTIMIZERS[name]
    return cls(a, **kwargs), getattr(torch.optim, cls.spec.torch_name)(b, **kwargs), a, b


SCHEDULES = {
    "onecycle-adam": (
        "adam",
        {},
        lambda o: lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=20, cycle_momentum=True),
    ),
    "onecycle-sgd": (
        "sgd",
        {"lr": 0.01, "momentum": 0.9},
        lambda o: lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=20, cycle_momentum=True),
    ),
    "onecycle-nadam": (
        "nadam",
        {},
        lambda o: lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=20, cycle_momentum=True),
    ),
    "sequential": (
        "rmsprop",
        {"lr": 0.01},
        lambda o: lr_scheduler.SequentialLR(
            o,
            [lr_scheduler.LinearLR(o, start_factor=0.1, total_iters=5), lr_scheduler.CosineAnnealingLR(o, T_max=15)],
            milestones=[5],
        ),
    ),
    "step": ("adamw", {"lr": 0.05}, lambda o: lr_scheduler.StepLR(o, step_size=4, gamma=0.5)),
}


@pytest.mark.parametrize("key", list(SCHEDULES))
def test_schedulers_drive_descend_as_they_drive_torch(key: str) -> None:
    name, kwargs, make = SCHEDULES[key]
    ours, theirs, a, b = pair(name, **kwargs)
    s_ours, s_theirs = make(ours), make(theirs)
    lrs = set()
    for t in range(19):
        set_grads(a, t)
        set_grads(b, t)
        ours.step()
        theirs.step()
        s_ours.step()
        s_theirs.step()
        for g, h in zip(ours.param_groups, theirs.param_groups):
            assert g["lr"] == h["lr"]
            assert g.get("betas") == h.get("betas") and g.get("momentum") == h.get("momentum")
        lrs.add(ours.param_groups[0]["lr"])
    assert len(lrs) > 3, "the schedule did not change the learning rate"
    assert_same_state(ours, theirs, a, b)


def test_onecycle_cycles_adams_beta1() -> None:
    ours = dt.Adam(make_params(torch.float32))
    sched = lr_scheduler.OneCycleLR(ours, max_lr=0.1, total_steps=10, cycle_momentum=True)
    beta1 = []
    for _ in range(5):
        ours.step()
        sched.step()
        beta1.append(ours.param_groups[0]["betas"][0])
    assert beta1[0] != beta1[-1] and all(0.85 <= b <= 0.95 for b in beta1)


def test_reduce_lr_on_plateau() -> None:
    ours, theirs, a, b = pair("adam", lr=0.05)
    s_ours = lr_scheduler.ReduceLROnPlateau(ours, patience=1, factor=0.5)
    s_theirs = lr_scheduler.ReduceLROnPlateau(theirs, patience=1, factor=0.5)
    for t in range(8):
        set_grads(a, t)
        set_grads(b, t)
        ours.step()
        theirs.step()
        s_ours.step(1.0)  # a loss that never improves
        s_theirs.step(1.0)
        assert ours.param_groups[0]["lr"] == theirs.param_groups[0]["lr"]
    assert ours.param_groups[0]["lr"] < 0.05 / 4
    assert_same_state(ours, theirs, a, b)


def test_grad_scaler_skips_the_inf_step_as_torch_does() -> None:
    ours, theirs, a, b = pair("adam", dtype=torch.float32, lr=0.05)
    scalers = [torch.amp.GradScaler("cpu", init_scale=2.0**8) for _ in range(2)]
    start = [p.detach().clone() for p in a]
    for t in range(6):
        for opt, params, scaler in ((ours, a, scalers[0]), (theirs, b, scalers[1])):
            opt.zero_grad()
            loss = sum((p**2).sum() for p in params)
            scaler.scale(loss).backward()
            if t == 0:
                params[0].grad[0, 0] = float("inf")
            scaler.step(opt)
            scaler.update()
        if t == 0:
            assert all(torch.equal(p, s) for p, s in zip(a, start)), "the inf step changed the parameters"
            assert len(ours.state) == 0, "the inf step created state"
            assert scalers[0].get_scale() == 2.0**7
    assert ours.state[a[0]]["step"].item() == 5
    assert_same_state(ours, theirs, a, b)


def test_step_hooks_and_closure() -> None:
    a = make_params(torch.float32)
    opt = dt.SGD(a, lr=0.1)
    calls = []
    opt.register_step_pre_hook(lambda o, args, kwargs: calls.append(("pre", o)))
    opt.register_step_post_hook(lambda o, args, kwargs: calls.append(("post", o)))

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = sum((p**2).sum() for p in a)
        loss.backward()
        return loss

    before = [p.detach().clone() for p in a]
    with torch.no_grad():  # the closure still gets gradients, as with torch.optim
        loss = opt.step(closure)
    assert calls == [("pre", opt), ("post", opt)]
    assert torch.isclose(loss, sum((p**2).sum() for p in before))
    for p, q in zip(a, before):
        assert_close(p, q - 0.1 * 2 * q, torch_tolerance(torch.float32))


def test_add_param_group_and_per_group_options() -> None:
    ours, theirs, a, b = pair("adam", lr=0.01)
    extra_a = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    extra_b = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    ours.add_param_group({"params": [extra_a], "lr": 0.1, "amsgrad": True})
    theirs.add_param_group({"params": [extra_b], "lr": 0.1, "amsgrad": True})
    assert ours.param_groups[1]["betas"] == (0.9, 0.999), "the new group takes the optimizer's defaults"
    with pytest.raises(ValueError, match="lr"):
        ours.add_param_group({"params": [torch.nn.Parameter(torch.ones(2))], "lr": -1.0})
    assert len(ours.param_groups) == 2, "the refused group was added"
    for t in range(10):
        for params, extra in ((a, extra_a), (b, extra_b)):
            set_grads(params + [extra], t)
        ours.step()
        theirs.step()
    assert list(ours.state[extra_a]) == ["step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"]
    assert_same_state(ours, theirs, a + [extra_a], b + [extra_b])


def test_params_without_grad_are_skipped() -> None:
    a = make_params(torch.float32)
    frozen = torch.nn.Parameter(torch.ones(3), requires_grad=False)
    opt = dt.Adam([*a, frozen], lr=0.1)
    a[0].grad = torch.ones_like(a[0])
    before = a[1].detach().clone()
    opt.step()
    assert a[1] not in opt.state and frozen not in opt.state
    assert torch.equal(a[1], before) and torch.equal(frozen, torch.ones(3))
    opt.zero_grad()
    assert a[0].grad is None
    opt.step()  # nothing has a gradient: nothing moves
    assert opt.state[a[0]]["step"].item() == 1


def test_tensor_lr_and_betas() -> None:
    """float32 parameters: with float32 tensor betas torch computes the bias corrections in float32, descend in
    float64 from the same values, which float64 parameters would show."""
    a = make_params(torch.float32)
    b = clones(a)
    ours = dt.Adam(a, lr=torch.tensor(0.02), betas=(torch.tensor(0.8), torch.tensor(0.95)))
    theirs = torch.optim.Adam(b, lr=torch.tensor(0.02), betas=(torch.tensor(0.8), torch.tensor(0.95)))
    s_ours, s_theirs = lr_scheduler.ExponentialLR(ours, 0.9), lr_scheduler.ExponentialLR(theirs, 0.9)
    for t in range(10):
        set_grads(a, t)
        set_grads(b, t)
        ours.step()
        theirs.step()
        s_ours.step()
        s_theirs.step()
    assert isinstance(ours.param_groups[0]["lr"], torch.Tensor)
    assert ours.param_groups[0]["lr"].item() == pytest.approx(0.02 * 0.9**10)
    assert_same_state(ours, theirs, a, b)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bfloat16", "float16"])
@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop", "nadam"])
def test_low_precision_training(name: str, dtype: torch.dtype) -> None:
    kwargs = {"lr": 0.01, "momentum": 0.9} if name == "sgd" else {"lr": 0.01}
    ours, theirs, a, b = pair(name, dtype=dtype, **kwargs)
    start = [p.detach().clone() for p in a]
    for t in range(10):
        set_grads(a, t)
        set_grads(b, t)
        ours.step()
        theirs.step()
    tol = torch_tolerance(dtype)
    for p, q, s in zip(a, b, start):
        assert p.dtype == dtype and not torch.equal(p, s)
        assert_close(p, q, tol)
        for key, value in ours.state[p].items():
            if key not in ("step", "mu_product"):
                assert value.dtype == dtype, f"state {key} is {value.dtype}, not the param's {dtype}"
                assert_close(value, theirs.state[q][key], tol, key)


def test_bad_group_values_and_gradients_change_nothing() -> None:
    a = make_params(torch.float32)
    opt = dt.Adam([{"params": a[:1]}, {"params": a[1:]}], lr=0.1)
    for p in a:
        p.grad = torch.ones_like(p)
    opt.param_groups[1]["lr"] = -1.0
    before = [p.detach().clone() for p in a]
    with pytest.raises(ValueError, match="lr"):
        opt.step()
    assert all(torch.equal(p, q) for p, q in zip(a, before)) and len(opt.state) == 0
    opt.param_groups[1]["lr"] = 0.1
    a[1].grad = torch.ones(4).to_sparse()
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step()
    assert all(torch.equal(p, q) for p, q in zip(a, before)) and len(opt.state) == 0


def test_unsupported_tensors_are_refused_clearly() -> None:
    w = torch.nn.Parameter(torch.ones(3, dtype=torch.int64), requires_grad=False)
    w.grad = torch.ones_like(w)
    with pytest.raises(TypeError, match="int64"):
        dt.Adam([w]).step()
    emb = torch.nn.Embedding(5, 2, sparse=True)
    emb(torch.tensor([1])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        dt.Adam(emb.parameters()).step()


def test_runs_on_another_device_with_torch_ops() -> None:
    """A parameter off the CPU (here the meta device, which runs the ops without data) steps without a crash."""
    w = torch.nn.Parameter(torch.empty(3, device="meta"))
    w.grad = torch.empty(3, device="meta")
    opt = dt.Adam([w], amsgrad=True)
    opt.step()
    assert opt.state[w]["exp_avg"].device.type == "meta" and opt.state[w]["step"].device.type == "cpu"
