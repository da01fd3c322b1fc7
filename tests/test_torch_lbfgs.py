"""descend.torch.LBFGS against torch.optim.LBFGS: the same parameters, losses and state, bit for bit, on Rosenbrock, a
least-squares fit and a small MLP, with and without the strong-Wolfe line search, in float32 and float64; state_dicts
that load both ways and resume with the bits of an uninterrupted run; a step that raises changes nothing."""

from __future__ import annotations

import copy
import io
import itertools
from typing import Any

import pytest

torch = pytest.importorskip("torch")

import descend.torch as dt  # noqa: E402
from tests.bad_input_helpers import assert_unchanged, snapshot  # noqa: E402
from tests.lbfgs_problems import PROBLEMS  # noqa: E402

SETTINGS = {
    "defaults": {},
    "short history": {"lr": 0.5, "history_size": 3, "max_iter": 7},
    "tensor lr": {"lr": torch.tensor(0.8), "max_iter": 5},
}
DTYPES = {"float32": torch.float32, "float64": torch.float64}
CASES = list(itertools.product(PROBLEMS, [None, "strong_wolfe"], DTYPES, SETTINGS))


def same(a: Any, b: Any) -> bool:
    """Equal values of equal types: tensors with the same dtype and bits, lists entry by entry, numbers by type too."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and torch.equal(a, b)
        )
    if isinstance(a, list) or isinstance(b, list):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def assert_same_state(mine: dict, ref: dict) -> None:
    assert list(mine) == list(ref), f"state keys {list(mine)} != {list(ref)}"
    for key, value in ref.items():
        assert same(mine[key], value), f"state {key!r}: {mine[key]!r} != {value!r}"


def fresh(settings: dict) -> dict:
    return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in settings.items()}


def run(cls: type, problem: str, dtype: torch.dtype, steps: int, **kwargs: Any) -> tuple[list, Any, list]:
    params = PROBLEMS[problem].torch_params(dtype)
    opt = cls(params, **kwargs)
    closure = PROBLEMS[problem].torch_closure(params)
    losses = [opt.step(closure).detach().item() for _ in range(steps)]
    return params, opt, losses


@pytest.mark.parametrize(
    ("problem", "line_search", "dtype", "settings"), CASES, ids=["-".join(map(str, c)) for c in CASES]
)
def test_same_bits_as_torch(problem: str, line_search: str | None, dtype: str, settings: str) -> None:
    kwargs = {"line_search_fn": line_search, **SETTINGS[settings]}
    ours, opt, our_losses = run(dt.LBFGS, problem, DTYPES[dtype], 4, **fresh(kwargs))
    theirs, ref, their_losses = run(torch.optim.LBFGS, problem, DTYPES[dtype], 4, **fresh(kwargs))
    assert our_losses == their_losses
    assert ref.state[theirs[0]]["n_iter"] > 4, "the run stopped before the history was used"
    for p, q in zip(ours, theirs):
        assert p.dtype == q.dtype and torch.equal(p, q)
    assert_same_state(opt.state[ours[0]], ref.state[theirs[0]])
    assert all(not opt.state[p] for p in ours[1:]), "the state lives on the first parameter alone"


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_complex_missing_and_sparse_gradients_as_torch(dtype: torch.dtype) -> None:
    """A complex parameter is a pair of reals, a parameter without a gradient counts as zero, a sparse gradient is
    made dense: as in torch."""

    def build(cls: type) -> tuple[list, Any, Any]:
        gen = torch.Generator().manual_seed(5)
        z = torch.nn.Parameter(torch.randn(3, generator=gen, dtype=dtype))
        unused = torch.nn.Parameter(torch.ones(2))
        emb = torch.nn.Embedding(4, 2, sparse=True, _weight=torch.randn(4, 2, generator=gen))
        opt = cls([z, unused, emb.weight], line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = (z.abs() ** 2 - 1).pow(2).sum() + (emb(torch.tensor([0, 2])) - 1).pow(2).sum()
            loss.backward()
            return loss

        return [z, unused, emb.weight], opt, closure

    ours, opt, c1 = build(dt.LBFGS)
    theirs, ref, c2 = build(torch.optim.LBFGS)
    for _ in range(3):
        assert opt.step(c1).detach().item() == ref.step(c2).detach().item()
    assert all(torch.equal(p, q) for p, q in zip(ours, theirs))
    assert_same_state(opt.state[ours[0]], ref.state[theirs[0]])


# -- state_dicts ---------------------------------------------------------------------------------------------------


def saved(opt: Any) -> dict:
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    return torch.load(buffer)


@pytest.mark.parametrize("line_search", [None, "strong_wolfe"])
@pytest.mark.parametrize(("first", "second"), [("descend", "descend"), ("torch", "descend"), ("descend", "torch")])
def test_save_mid_run_load_and_continue_gives_the_uninterrupted_bits(first: str, second: str, line_search: Any) -> None:
    classes = {"descend": dt.LBFGS, "torch": torch.optim.LBFGS}
    kwargs = {"line_search_fn": line_search, "max_iter": 6, "history_size": 4}
    problem = PROBLEMS["mlp"]
    straight = problem.torch_params(torch.float32)
    uninterrupted = classes[second](straight, **kwargs)
    closure = problem.torch_closure(straight)
    for _ in range(5):
        uninterrupted.step(closure)

    params = problem.torch_params(torch.float32)
    before = classes[first](params, **kwargs)
    for _ in range(2):
        before.step(problem.torch_closure(params))
    state = saved(before)
    resumed_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    resumed = classes[second](resumed_params, **kwargs)
    resumed.load_state_dict(state)
    for _ in range(3):
        resumed.step(problem.torch_closure(resumed_params))
    assert all(torch.equal(p, q) for p, q in zip(resumed_params, straight))
    assert_same_state(resumed.state[resumed_params[0]], uninterrupted.state[straight[0]])


def test_a_state_dict_taken_mid_run_does_not_change_as_training_goes_on() -> None:
    problem = PROBLEMS["least-squares"]
    params = problem.torch_params(torch.float64)
    opt = dt.LBFGS(params, max_iter=3)
    closure = problem.torch_closure(params)
    opt.step(closure)
    state_dict = opt.state_dict()
    frozen = snapshot(type("Held", (), {"param_groups": [], "state_dict": lambda self: state_dict})())
    opt.step(closure)
    opt.step(closure)
    assert frozen == snapshot(type("Held", (), {"param_groups": [], "state_dict": lambda self: state_dict})())


def _loaded_then_refused(mutate: Any) -> tuple[Any, dict]:
    problem = PROBLEMS["least-squares"]
    params = problem.torch_params(torch.float64)
    opt = dt.LBFGS(params, max_iter=3)
    for _ in range(2):
        opt.step(problem.torch_closure(params))
    state_dict = copy.deepcopy(opt.state_dict())
    mutate(state_dict)
    return opt, state_dict


def _adams_state_dict(sd: dict) -> None:
    w = torch.nn.Parameter(torch.ones(3, 4))
    b = torch.nn.Parameter(torch.ones(3))
    adam = torch.optim.Adam([w, b])
    w.grad, b.grad = torch.ones_like(w), torch.ones_like(b)
    adam.step()
    sd.clear()
    sd.update(adam.state_dict())


BAD_STATE_DICTS = [
    ("adam's", _adams_state_dict, r"lacks history_size, .*max_iter.*saved by another optimizer class, not LBFGS"),
    ("short d", lambda sd: sd["state"][0].update(d=sd["state"][0]["d"][:-1]), r"'d' must be a flat vector of the"),
    ("unknown key", lambda sd: sd["state"][0].update(momentum_buffer=1.0), r"unknown keys \['momentum_buffer'\]"),
    ("ragged history", lambda sd: sd["state"][0]["ro"].pop(), r"one entry per pair"),
    ("state on the second", lambda sd: sd["state"].update({1: {"n_iter": 1}}), r"keeps its state on the first"),
    ("two groups", lambda sd: sd["param_groups"].append(dict(sd["param_groups"][0])), r"one param group"),
    ("bad history_size", lambda sd: sd["param_groups"][0].update(history_size=0), r"Invalid history_size value: 0"),
    ("lost counts", lambda sd: sd["state"][0].pop("prev_loss"), r"n_iter=\d+ but lacks prev_loss"),
]


@pytest.mark.parametrize(("what", "mutate", "match"), BAD_STATE_DICTS, ids=[c[0] for c in BAD_STATE_DICTS])
def test_a_state_dict_that_does_not_fit_is_refused_whole(what: str, mutate: Any, match: str) -> None:
    opt, state_dict = _loaded_then_refused(mutate)
    before = snapshot(opt)
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(state_dict)
    assert_unchanged(opt, before)


# -- steps that raise ----------------------------------------------------------------------------------------------


def failing(closure: Any, on_call: int, error: type[BaseException] = RuntimeError) -> Any:
    calls = itertools.count(1)

    def wrapped() -> Any:
        if next(calls) == on_call:
            raise error("the model failed")
        return closure()

    return wrapped


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
@pytest.mark.parametrize(("line_search", "on_call"), [("strong_wolfe", 3), ("strong_wolfe", 1), (None, 2)])
def test_a_closure_that_raises_mid_step_changes_nothing(line_search: Any, on_call: int, error: type) -> None:
    """The closure raises on its ``on_call``-th call of the third step (3 with strong_wolfe is inside the line
    search, with the parameters moved to a trial point): the parameters are put back and the state is untouched, so
    the next steps give the bits of a run that never failed."""
    problem = PROBLEMS["mlp"]
    kwargs = {"line_search_fn": line_search, "max_iter": 4}
    params, twin = problem.torch_params(torch.float64), problem.torch_params(torch.float64)
    opt, ref = dt.LBFGS(params, **kwargs), dt.LBFGS(twin, **kwargs)
    closure, twin_closure = problem.torch_closure(params), problem.torch_closure(twin)
    for _ in range(2):
        opt.step(closure)
        ref.step(twin_closure)
    before = snapshot(opt)
    with pytest.raises(error, match="the model failed"):
        opt.step(failing(closure, on_call, error))
    assert_unchanged(opt, before)
    for _ in range(2):
        opt.step(closure)
        ref.step(twin_closure)
    assert all(torch.equal(p, q) for p, q in zip(params, twin))
    assert_same_state(opt.state[params[0]], ref.state[twin[0]])


BAD_CLOSURES = [
    ("none", None, TypeError, r"LBFGS.step needs a closure that clears the gradients"),
    ("returns None", lambda: None, TypeError, r"closure must return the loss.*it returned NoneType"),
    ("returns two", lambda: torch.ones(2), TypeError, r"one-element tensor.*returned Tensor of shape \(2,\)"),
    ("returns text", lambda: "loss", TypeError, r"must return the loss.*returned str"),
]


@pytest.mark.parametrize(("what", "closure", "error", "match"), BAD_CLOSURES, ids=[c[0] for c in BAD_CLOSURES])
def test_a_bad_closure_is_refused_and_changes_nothing(what: str, closure: Any, error: type, match: str) -> None:
    problem = PROBLEMS["least-squares"]
    params = problem.torch_params(torch.float32)
    opt = dt.LBFGS(params, max_iter=2)
    opt.step(problem.torch_closure(params))
    before = snapshot(opt)
    with pytest.raises(error, match=match):
        opt.step(closure)
    assert_unchanged(opt, before)


def test_a_gradient_of_another_shape_is_refused() -> None:
    w = torch.nn.Parameter(torch.ones(4))
    opt = dt.LBFGS([w])

    def closure() -> torch.Tensor:
        w.grad = torch.zeros_like(w)
        w.grad.data = torch.zeros(7)  # torch checks assignments to .grad, not to its .data
        return torch.tensor(1.0)

    with pytest.raises(ValueError, match=r"gradient of shape \(7,\) on parameter 0 of shape \(4,\)"):
        opt.step(closure)
    assert torch.equal(w.detach(), torch.ones(4)) and not opt.state


# -- construction --------------------------------------------------------------------------------------------------


def test_one_param_group_as_torch() -> None:
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(3))
    with pytest.raises(ValueError, match=r"LBFGS doesn't support per-parameter options \(parameter groups\)"):
        torch.optim.LBFGS([{"params": [a]}, {"params": [b]}])
    with pytest.raises(ValueError, match=r"LBFGS doesn't support per-parameter options \(parameter groups\)"):
        dt.LBFGS([{"params": [a]}, {"params": [b]}])
    with pytest.raises(ValueError, match=r"some parameters appear in more than one parameter group"):
        dt.LBFGS([{"params": [a]}, {"params": [a]}])
    opt = dt.LBFGS([a])
    with pytest.raises(ValueError, match=r"doesn't support per-parameter options"):
        opt.add_param_group({"params": [b]})
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["params"] == [a]


def test_defaults_and_max_eval_as_torch_stores_them() -> None:
    w = torch.nn.Parameter(torch.ones(2))
    for kwargs in ({}, {"max_iter": 7}, {"max_iter": 7, "max_eval": 3}, {"lr": torch.tensor(0.5)}):
        ours, theirs = dt.LBFGS([w], **kwargs), torch.optim.LBFGS([w], **kwargs)
        assert ours.param_groups[0].keys() == theirs.param_groups[0].keys()
        for key, value in theirs.param_groups[0].items():
            assert key == "params" or same(ours.param_groups[0][key], value), key
    assert dt.LBFGS([w], convention="paper").defaults["line_search_fn"] == "strong_wolfe"


def test_copy_and_describe() -> None:
    problem = PROBLEMS["rosenbrock"]
    params = problem.torch_params(torch.float64)
    opt = dt.LBFGS(params, line_search_fn="strong_wolfe", history_size=5)
    opt.step(problem.torch_closure(params))
    twin = copy.deepcopy(opt)
    twin_params = twin.param_groups[0]["params"]
    opt.step(problem.torch_closure(params))
    twin.step(problem.torch_closure(twin_params))
    assert torch.equal(params[0], twin_params[0])
    text = opt.describe()
    assert "keeping the last 5 pairs" in text and "strong-Wolfe line search" in text
