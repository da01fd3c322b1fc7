"""descend.torch against torch.optim: the same parameters and state, step after step, for every shared algorithm.

(Muon, whose update runs through bfloat16 and has its own tolerance, is held to torch.optim.Muon in test_muon.py.)"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import descend.torch as dt  # noqa: E402
from tests.shapes import shape_for, torch_grad  # noqa: E402
from tests.tolerances import assert_close, torch_tolerance  # noqa: E402

STEPS = 25

# (algorithm, hyperparameters): torch's defaults and the settings that change the rule's branches.
CASES = [
    ("sgd", {}),
    ("sgd", {"lr": 0.1, "weight_decay": 0.01}),
    ("sgd", {"lr": 0.05, "momentum": 0.9}),
    ("sgd", {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "maximize": True}),
    ("sgd", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
    ("rmsprop", {}),
    ("rmsprop", {"lr": 0.1, "weight_decay": 0.01, "maximize": True}),
    ("rmsprop", {"lr": 0.01, "centered": True}),
    ("rmsprop", {"lr": 0.01, "momentum": 0.9, "centered": True, "alpha": 0.9}),
    ("adagrad", {}),
    ("adagrad", {"lr": 0.5, "lr_decay": 0.01, "weight_decay": 0.01}),
    ("adagrad", {"initial_accumulator_value": 0.1, "eps": 1e-6, "maximize": True}),
    ("adadelta", {}),
    ("adadelta", {"lr": 0.5, "rho": 0.95, "weight_decay": 0.01, "maximize": True}),
    ("adam", {}),
    ("adam", {"lr": 0.1, "betas": (0.8, 0.99)}),
    ("adam", {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True}),
    ("adam", {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True}),
    ("adamw", {}),
    ("adamw", {"lr": 0.05, "weight_decay": 0.1, "amsgrad": True}),
    ("adamax", {}),
    ("adamax", {"lr": 0.1, "weight_decay": 0.01, "maximize": True}),
    ("nadam", {}),
    ("nadam", {"lr": 0.05, "weight_decay": 0.01, "momentum_decay": 0.01}),
    ("nadam", {"lr": 0.05, "weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True}),
    ("radam", {}),
    ("radam", {"lr": 0.05, "weight_decay": 0.01}),
    ("radam", {"lr": 0.05, "weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True}),
    ("rprop", {}),
    ("rprop", {"lr": 0.05, "etas": (0.3, 1.5), "step_sizes": (0.01, 0.08)}),
    ("rprop", {"lr": 0.1, "etas": (0.7, 1.1), "step_sizes": (0.0, 1.0), "maximize": True}),
    ("asgd", {}),
    ("asgd", {"lr": 0.1, "lambd": 0.5, "alpha": 1.0, "t0": 3.0}),
    ("asgd", {"lr": 0.05, "lambd": 0.1, "alpha": 0.5, "t0": 10.0, "weight_decay": 0.1, "maximize": True}),
    ("adafactor", {}),
    ("adafactor", {"lr": 0.05, "weight_decay": 0.1, "maximize": True}),
    ("adafactor", {"eps": (1e-3, 1e-2), "beta2_decay": -0.5, "d": 1.5}),
]


def case_id(case: tuple[str, dict]) -> str:
    name, kwargs = case
    return name + "".join(f"-{k}={v}" for k, v in kwargs.items())


def make_params(dtype: torch.dtype, seed: int = 0, name: str = "adam") -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.nn.Parameter(torch.randn(5, 3, generator=gen, dtype=torch.float64).to(dtype)),
        torch.nn.Parameter(torch.randn(shape_for(name, (4,)), generator=gen, dtype=torch.float64).to(dtype)),
    ]


def set_grads(params: list[torch.Tensor], step: int, cls: type = dt.Adam) -> None:
    """Gradients of a quadratic plus noise: they depend on the parameters, so diverging runs show it; in the form
    descend.torch's ``cls`` takes (sparse for SparseAdam, as torch's)."""
    gen = torch.Generator().manual_seed(1000 + step)
    for p in params:
        noise = torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype)
        p.grad = torch_grad(cls, (p.detach() * 0.5 + noise).to(p.dtype))


def run_lockstep(ours: torch.optim.Optimizer, theirs: torch.optim.Optimizer, a: list, b: list, steps: int, start=0):
    for t in range(start, start + steps):
        set_grads(a, t, type(ours))
        set_grads(b, t, type(ours))
        ours.step()
        theirs.step()


def assert_same_state(ours: torch.optim.Optimizer, theirs: torch.optim.Optimizer, a: list, b: list) -> None:
    # descend.torch keeps NAdam's mu_product and ASGD's eta and mu as torch does, in tensors of torch's scalar dtype,
    # so every algorithm here is held to the plain tolerance of its dtype.
    tol = torch_tolerance(a[0].dtype)
    for i, (p, q) in enumerate(zip(a, b)):
        assert_close(p, q, tol, f"param {i}")
        mine, ref = ours.state[p], theirs.state[q]
        assert list(mine) == list(ref), f"state keys of param {i}: {list(mine)} != {list(ref)}"
        for key in ref:
            if key == "step":
                assert mine[key].dtype == ref[key].dtype and mine[key].device == ref[key].device
                assert mine[key].item() == ref[key].item()
            else:
                assert mine[key].dtype == ref[key].dtype, key
                assert_close(mine[key], ref[key], tol, f"state {key!r} of param {i}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_matches_torch_optim(case: tuple[str, dict], dtype: torch.dtype) -> None:
    name, kwargs = case
    ours_cls = dt.OPTIMIZERS[name]
    theirs_cls = getattr(torch.optim, ours_cls.spec.torch_name)
    a, b = make_params(dtype), make_params(dtype)
    ours, theirs = ours_cls(a, **kwargs), theirs_cls(b, foreach=False, **kwargs)
    start = [p.detach().clone() for p in a]
    run_lockstep(ours, theirs, a, b, STEPS)
    assert any(not torch.equal(p, s) for p, s in zip(a, start)), "the parameters did not move"
    assert_same_state(ours, theirs, a, b)


# LBFGS steps with a closure and keeps lists and numbers in its state: tests/test_torch_lbfgs.py holds it to torch's.
@pytest.mark.parametrize(
    "name",
    [
        n
        for n, c in dt.OPTIMIZERS.items()
        if c.spec.torch_name and c.spec.elementwise and hasattr(torch.optim, c.spec.torch_name)
    ],
)
def test_state_dict_layout_matches_torch(name: str) -> None:
    ours_cls = dt.OPTIMIZERS[name]
    theirs_cls = getattr(torch.optim, ours_cls.spec.torch_name)
    kwargs = {"momentum": 0.9} if name == "sgd" else {}
    a, b = make_params(torch.float32, name=name), make_params(torch.float32, name=name)
    ours, theirs = ours_cls(a, **kwargs), theirs_cls(b, **kwargs)
    run_lockstep(ours, theirs, a, b, 2)
    mine, ref = ours.state_dict(), theirs.state_dict()
    assert mine["state"].keys() == ref["state"].keys()
    for key, entry in ref["state"].items():
        assert list(mine["state"][key]) == list(entry)
        for slot, value in entry.items():
            assert type(mine["state"][key][slot]) is type(value)
            if isinstance(value, torch.Tensor):  # (SparseAdam's step is an int, as torch's)
                assert mine["state"][key][slot].shape == value.shape and mine["state"][key][slot].dtype == value.dtype
    group = mine["param_groups"][0]
    for k, v in ref["param_groups"][0].items():
        assert k in group, f"{name}'s param group lacks torch's key {k!r}"
        assert group[k] == v, f"{name}'s param group has {k}={group[k]!r}, torch has {v!r}"


def test_sgd_without_momentum_keeps_no_state() -> None:
    a = make_params(torch.float32)
    opt = dt.SGD(a, lr=0.1)
    set_grads(a, 0)
    opt.step()
    assert opt.state_dict()["state"] == {}
    assert len(opt.state) == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_asgd_under_a_changing_learning_rate_follows_torch(dtype: torch.dtype) -> None:
    """ASGD's step uses the rate the previous step stored, as torch's does: a scheduler's new rate reaches the
    update one step later."""
    results = []
    for cls in (torch.optim.ASGD, dt.ASGD):
        gen = torch.Generator().manual_seed(0)
        w = torch.randn(6, dtype=dtype, generator=gen).requires_grad_()
        opt = cls([w], lr=0.1, lambd=0.01, t0=2.0)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
        for _ in range(12):
            w.grad = torch.randn(6, dtype=dtype, generator=gen)
            opt.step()
            sched.step()
        results.append((w.detach().clone(), {k: v.clone() for k, v in opt.state[w].items()}))
    (theirs, their_state), (ours, our_state) = results
    assert_close(ours, theirs, torch_tolerance(dtype), "param")
    for key, value in their_state.items():
        assert_close(our_state[key], value, torch_tolerance(dtype), key)
