"""state_dicts between descend.torch and torch.optim, both ways and mid-run, and the ones descend refuses."""

from __future__ import annotations

import copy
import io
import pickle

import pytest

torch = pytest.importorskip("torch")

import descend.torch as dt  # noqa: E402
from tests.test_torch_parity import assert_same_state, make_params, run_lockstep, set_grads  # noqa: E402
from tests.tolerances import assert_close, torch_tolerance  # noqa: E402

# One setting per algorithm that fills every state slot it can keep.
SETTINGS = {
    "sgd": {"lr": 0.05, "momentum": 0.9, "nesterov": True},
    "rmsprop": {"lr": 0.01, "momentum": 0.5, "centered": True},
    "adagrad": {"lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.1},
    "adadelta": {"lr": 0.5},
    "adam": {"lr": 0.05, "amsgrad": True, "weight_decay": 0.01},
    "adamw": {"lr": 0.05},
    "adamax": {"lr": 0.05},
    "nadam": {"lr": 0.05, "weight_decay": 0.01},
    "radam": {"lr": 0.05},
}


def twin(name: str) -> type:
    return getattr(torch.optim, dt.OPTIMIZERS[name].spec.torch_name)


def clones(params: list[torch.Tensor]) -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(p.detach().clone()) for p in params]


def through_bytes(state_dict: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer)


@pytest.mark.parametrize("source", ["torch", "descend"])
@pytest.mark.parametrize("name", list(SETTINGS))
def test_round_trip_mid_run_then_lockstep(name: str, source: str) -> None:
    """A state_dict saved mid-run by either library loads into both, and both go on in lockstep.

    Both load the same state_dict, because torch's loading casts every state tensor but ``step`` to the parameter's
    dtype (NAdam's float32 ``mu_product`` becomes float64 here), in descend as in torch.
    """
    kwargs = SETTINGS[name]
    first_cls = twin(name) if source == "torch" else dt.OPTIMIZERS[name]
    a = make_params(torch.float64)
    first = first_cls(a, **kwargs)
    for t in range(8):
        set_grads(a, t)
        first.step()
    sd = through_bytes(first.state_dict())
    b, c = clones(a), clones(a)
    ours, theirs = dt.OPTIMIZERS[name](b, **kwargs), twin(name)(c, **kwargs)
    ours.load_state_dict(sd)
    theirs.load_state_dict(copy.deepcopy(sd))
    if ours.spec.has_step:
        assert ours.state[b[0]]["step"].item() == 8
    run_lockstep(ours, theirs, b, c, 12, start=8)
    assert_same_state(ours, theirs, b, c)
    # The run that saved the state, never interrupted, ends in the same place.
    for t in range(8, 20):
        set_grads(a, t)
        first.step()
    for p, q in zip(a, b):
        assert_close(p, q, torch_tolerance(torch.float64))


def test_loading_torch_state_keeps_descends_flags() -> None:
    a = make_params(torch.float32)
    theirs = torch.optim.Adam(a, lr=0.02)
    ours = dt.Adam(clones(a), convention="keras")
    ours.load_state_dict(theirs.state_dict())
    group = ours.param_groups[0]
    assert group["lr"] == 0.02 and group["eps"] == 1e-8  # torch's saved values
    assert group["eps_hat"] is True  # the flag torch does not know keeps this optimizer's value


def test_adamw_stays_decoupled_after_loading_an_adam_state_dict() -> None:
    a = make_params(torch.float32)
    ours = dt.AdamW(a)
    ours.load_state_dict(torch.optim.Adam(clones(a)).state_dict())
    assert ours.param_groups[0]["decoupled_weight_decay"] is True


def test_fresh_adagrad_state_is_created_eagerly_as_in_torch() -> None:
    a = make_params(torch.float32)
    ours = dt.Adagrad(a, initial_accumulator_value=0.5)
    theirs = torch.optim.Adagrad(clones(a), initial_accumulator_value=0.5)
    mine, ref = ours.state_dict()["state"], theirs.state_dict()["state"]
    assert mine.keys() == ref.keys() == {0, 1}
    for key in ref:
        assert list(mine[key]) == list(ref[key]) == ["step", "sum"]
        assert torch.equal(mine[key]["sum"], ref[key]["sum"]) and mine[key]["step"].item() == 0.0
    # torch's Adagrad needs that state to step: a state_dict saved before the first step still loads and runs there.
    b = clones(a)
    loaded = torch.optim.Adagrad(b, initial_accumulator_value=0.5)
    loaded.load_state_dict(ours.state_dict())
    for p in b:
        p.grad = torch.ones_like(p)
    loaded.step()


def saved(name: str, params: list[torch.Tensor], steps: int = 2, **kwargs) -> dict:
    opt = twin(name)(params, **kwargs)
    for _ in range(steps):
        for p in params:
            p.grad = torch.ones_like(p)
        opt.step()
    return opt.state_dict()


REFUSED = [
    ("sgd", lambda: saved("adam", make_params(torch.float32)), "another optimizer class"),
    ("adam", lambda: saved("radam", make_params(torch.float32)), "another optimizer class"),
    ("radam", lambda: saved("adam", make_params(torch.float32)), "another optimizer class"),
    ("radam", lambda: saved("adamax", make_params(torch.float32)), "keys"),
    ("nadam", lambda: saved("radam", make_params(torch.float32)), "another optimizer class"),
    ("adam", lambda: saved("adam", [torch.nn.Parameter(torch.ones(3, 5)), torch.nn.Parameter(torch.ones(4))]), "shape"),
    ("adam", lambda: saved("adam", make_params(torch.float32)[:1]), "param groups|params"),
    ("adam", lambda: {"state": {}}, "param_groups"),
]


@pytest.mark.parametrize(("name", "make", "words"), REFUSED, ids=[f"{r[0]}-{i}" for i, r in enumerate(REFUSED)])
def test_refuses_a_foreign_state_dict_before_changing_anything(name: str, make, words: str) -> None:
    a = make_params(torch.float32)
    ours = dt.OPTIMIZERS[name](a, lr=0.03)
    for p in a:
        p.grad = torch.full_like(p, 0.5)
    ours.step()
    before = copy.deepcopy(ours.state_dict())
    with pytest.raises(ValueError, match=words):
        ours.load_state_dict(make())
    after = ours.state_dict()
    assert after["param_groups"] == before["param_groups"]
    assert after["state"].keys() == before["state"].keys()
    for key, entry in before["state"].items():
        assert all(torch.equal(entry[k], after["state"][key][k]) for k in entry)


def test_implementation_options_stay_this_optimizers() -> None:
    """A state_dict saved with fused/capturable torch options loads; the options keep this optimizer's values."""
    a = make_params(torch.float32)
    sd = saved("adam", clones(a))
    sd["param_groups"][0].update(fused=True, capturable=True, differentiable=True, foreach=True)
    ours = dt.Adam(a, foreach=False)
    ours.load_state_dict(sd)
    group = ours.param_groups[0]
    options = (group["fused"], group["capturable"], group["differentiable"], group["foreach"])
    assert options == (None, False, False, False)
    assert ours.state[a[0]]["step"].item() == 2
    for p in a:
        p.grad = torch.ones_like(p)
    ours.step()
    assert ours.state[a[0]]["step"].item() == 3


def test_refuses_a_bad_hyperparameter_in_a_state_dict() -> None:
    a = make_params(torch.float32)
    sd = torch.optim.Adam(clones(a)).state_dict()
    sd["param_groups"][0]["lr"] = -1.0
    with pytest.raises(ValueError, match="lr"):
        dt.Adam(a).load_state_dict(sd)


def test_state_dict_hooks_are_torchs() -> None:
    a = make_params(torch.float32)
    opt = dt.Adam(a)
    seen = []

    def add_extra(optimizer: torch.optim.Optimizer, state_dict: dict) -> None:
        state_dict["extra"] = "kept"

    opt.register_state_dict_post_hook(add_extra)
    opt.register_load_state_dict_pre_hook(lambda o, sd: seen.append("pre"))
    opt.register_load_state_dict_post_hook(lambda o: seen.append("post"))
    sd = opt.state_dict()
    assert sd["extra"] == "kept"
    opt.load_state_dict(sd)
    assert seen == ["pre", "post"]


def test_pickle_and_deepcopy_keep_everything() -> None:
    a = make_params(torch.float32)
    opt = dt.AdamW(a, lr=0.1, convention="keras", backend="reference")
    for p in a:
        p.grad = torch.ones_like(p)
    opt.step()
    for copied in (copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))):
        assert type(copied) is dt.AdamW
        assert (copied.convention, copied.backend) == ("keras", "reference")
        assert copied.param_groups[0]["eps_hat"] is True and copied.param_groups[0]["decoupled_weight_decay"] is True
        params = copied.param_groups[0]["params"]
        assert copied.state[params[0]]["step"].item() == 1
        for p in params:
            p.grad = torch.ones_like(p)
        copied.step()
        assert copied.state[params[0]]["step"].item() == 2
