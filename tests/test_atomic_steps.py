"""A step that raises changes nothing: faults injected at every stage of the engine's step, on both fronts.

Each case trains two identical optimizers (two param groups; contiguous arrays that the kernel takes and a strided one
that the reference takes), injects a fault into one of them at a stage of a step (the first step, which creates the
state, and a steady-state step), checks that every param and state array is byte for byte what it was, then lifts the
fault and checks that training goes on exactly as in the optimizer that never failed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest

import descend
from descend import kernels
from descend.engine import step as engine_step

torch = pytest.importorskip("torch")

import descend.torch as dt  # noqa: E402


class Fault(RuntimeError):
    pass


def _nth(n: int, original: Callable) -> Callable:
    """``original``, raising Fault on its n-th call (counting from 1)."""
    calls = [0]

    def wrapped(*args: object, **kwargs: object) -> object:
        calls[0] += 1
        if calls[0] == n:
            raise Fault(f"injected at call {n}")
        return original(*args, **kwargs)

    return wrapped


def _inject(stage: str, opt: object, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = opt._engine
    spec = engine.spec
    if stage == "state creation":
        monkeypatch.setattr(engine.kind, "new_state", _nth(2, engine.kind.new_state))
    elif stage == "step counter":
        monkeypatch.setattr(engine.kind, "next_step", _nth(2, engine.kind.next_step))
    elif stage == "scalars":
        monkeypatch.setattr(engine, "spec", dataclasses.replace(spec, scalars=_nth(2, spec.scalars)))
    elif stage == "reference rule":
        monkeypatch.setattr(engine, "spec", dataclasses.replace(spec, reference_update=_nth(1, spec.reference_update)))
    elif stage == "kernel job":
        monkeypatch.setattr(kernels, "job", _nth(1, kernels.job))
    elif stage == "kernel run":
        monkeypatch.setattr(kernels, "run", _nth(1, kernels.run))
    elif stage == "finite check":
        monkeypatch.setattr(engine, "nan_policy", "skip")
        monkeypatch.setattr(engine_step, "first_nonfinite", _nth(1, engine_step.first_nonfinite))
    elif stage == "plan":
        monkeypatch.setattr(kernels, "gather", _nth(1, kernels.gather))
    else:  # pragma: no cover - a typo in the list below
        raise AssertionError(stage)


STAGES = ["state creation", "step counter", "scalars", "reference rule", "kernel job", "kernel run", "finite check"]
# (stage, steps before the faulty one): state is created on the first step only, and a plan exists from the second on
CASES = [(stage, at) for stage in STAGES for at in (0, 3) if (stage, at) != ("state creation", 3)]


def _numpy_setup() -> tuple[list, object]:
    rng = np.random.default_rng(0)
    big = rng.standard_normal((6, 8))
    params = [rng.standard_normal(50), rng.standard_normal((3, 4)), big[:, ::2], rng.standard_normal(7)]
    opt = descend.Adam(
        [{"params": params[:2]}, {"params": params[2:], "lr": 0.01, "weight_decay": 0.1}], lr=0.05, amsgrad=True
    )
    return params, opt


def _numpy_snapshot(params: list, opt: object) -> list[bytes]:
    out = [np.ascontiguousarray(p).tobytes() for p in params]
    for i in sorted(opt.state):
        out += [repr((i, k, v.tobytes() if isinstance(v, np.ndarray) else v)).encode() for k, v in opt.state[i].items()]
    return out


def _numpy_grads(params: list, step: int) -> list:
    return [np.cos(np.arange(p.size).reshape(p.shape) + step) for p in params]


@pytest.mark.parametrize(("stage", "at_step"), CASES)
def test_numpy_front(stage: str, at_step: int, monkeypatch: pytest.MonkeyPatch) -> None:
    params, opt = _numpy_setup()
    twin_params, twin = _numpy_setup()
    for step in range(at_step):
        opt.step(_numpy_grads(params, step))
        twin.step(_numpy_grads(twin_params, step))
    before = _numpy_snapshot(params, opt)
    with monkeypatch.context() as m:
        _inject(stage, opt, m)
        with pytest.raises(Fault):
            opt.step(_numpy_grads(params, at_step))
    assert _numpy_snapshot(params, opt) == before, f"a fault at the {stage} stage changed something"
    for step in range(at_step, at_step + 2):
        opt.step(_numpy_grads(params, step))
        twin.step(_numpy_grads(twin_params, step))
    assert _numpy_snapshot(params, opt) == _numpy_snapshot(twin_params, twin)


def _torch_setup() -> tuple[list, object]:
    gen = torch.Generator().manual_seed(0)
    big = torch.randn(6, 8, generator=gen)
    params = [
        torch.randn(50, generator=gen),
        torch.randn(3, 4, generator=gen),
        big[:, ::2],
        torch.randn(7, generator=gen),
    ]
    params = [p.clone().requires_grad_() if p.is_contiguous() else p.requires_grad_() for p in params]
    opt = dt.AdamW(
        [{"params": params[:2]}, {"params": params[2:], "lr": 0.01, "weight_decay": 0.1}], lr=0.05, amsgrad=True
    )
    return params, opt


def _torch_snapshot(params: list, opt: object) -> list[bytes]:
    out = [p.detach().contiguous().numpy().tobytes() for p in params]
    for p in params:
        out += [repr((k, v.numpy().tobytes())).encode() for k, v in opt.state.get(p, {}).items()]
    return out


def _torch_grads(params: list, step: int) -> None:
    for p in params:
        p.grad = torch.cos(torch.arange(p.numel(), dtype=p.dtype).reshape(p.shape) + step)


@pytest.mark.parametrize(("stage", "at_step"), [*CASES, ("plan", 3)])
def test_torch_front(stage: str, at_step: int, monkeypatch: pytest.MonkeyPatch) -> None:
    params, opt = _torch_setup()
    twin_params, twin = _torch_setup()
    for step in range(at_step):
        for ps, o in ((params, opt), (twin_params, twin)):
            _torch_grads(ps, step)
            o.step()
    before = _torch_snapshot(params, opt)
    _torch_grads(params, at_step)
    with monkeypatch.context() as m:
        _inject(stage, opt, m)
        with pytest.raises(Fault):
            opt.step()
    assert _torch_snapshot(params, opt) == before, f"a fault at the {stage} stage changed something"
    for step in range(at_step, at_step + 2):
        for ps, o in ((params, opt), (twin_params, twin)):
            _torch_grads(ps, step)
            o.step()
    assert _torch_snapshot(params, opt) == _torch_snapshot(twin_params, twin)


def test_a_refused_array_in_the_last_group_leaves_the_first_group_as_it_was() -> None:
    """Refusals are atomic across groups: a read-only param in group 2 stops the step before group 1 changes."""
    a, b = np.ones(5), np.ones(5)
    opt = descend.SGD([{"params": [a]}, {"params": [b]}], lr=0.1, momentum=0.9)
    opt.step([np.ones(5), np.ones(5)])
    b.flags.writeable = False
    state = {i: {k: v.copy() for k, v in st.items()} for i, st in opt.state.items()}
    with pytest.raises(ValueError, match="parameter 1 is read-only"):
        opt.step([np.ones(5), np.ones(5)])
    assert np.all(a == 0.9) and all(np.array_equal(opt.state[i][k], v) for i in state for k, v in state[i].items())


def test_a_bad_state_slot_is_refused_before_anything_changes() -> None:
    a, b = np.ones(5), np.ones(4)
    opt = descend.Adam([a, b], lr=0.1)
    opt.step([np.ones(5), np.ones(4)])
    opt.state[1]["exp_avg"] = np.zeros(3)
    before = (a.copy(), opt.state[0]["exp_avg"].copy(), opt.state[0]["step"])
    with pytest.raises(ValueError, match=r"the state 'exp_avg' of parameter 1 has shape \(3,\)"):
        opt.step([np.ones(5), np.ones(4)])
    assert np.array_equal(a, before[0]) and np.array_equal(opt.state[0]["exp_avg"], before[1])
    assert opt.state[0]["step"] == before[2] == 1


@pytest.mark.parametrize("state_dtype", [None, "bfloat16", "blockwise8"])
@pytest.mark.parametrize("front", ["numpy", "torch"])
def test_two_state_slots_of_one_parameter_on_one_array_are_refused_on_every_backend(front: str, state_dtype) -> None:
    """Two slots of one parameter given the same array would each be written in turn, the last write winning: both
    backends refuse the step in the same words, and nothing changes."""
    torch = pytest.importorskip("torch")
    import descend.torch as dt

    said = []
    for backend in ("auto", "reference"):
        if front == "numpy":
            p = np.linspace(-1, 1, 64, dtype=np.float32)
            opt = descend.Adam([p], lr=1e-2, state_dtype=state_dtype, backend=backend)
            opt.step([np.full(64, 0.5, np.float32)])
            st = opt.state[0]
            st["exp_avg_sq"] = st["exp_avg"]
            before = [p.copy(), *(np.array(v, copy=True) for v in st.values())]
            with pytest.raises(ValueError) as raised:
                opt.step([np.full(64, 0.25, np.float32)])
            assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(before, [p, *st.values()]))
        else:
            w = torch.linspace(-1, 1, 64).requires_grad_()
            opt = dt.Adam([w], lr=1e-2, state_dtype=state_dtype, backend=backend)
            w.grad = torch.full((64,), 0.5)
            opt.step()
            st = opt.state[w]
            st["exp_avg_sq"] = st["exp_avg"]
            before = [w.detach().clone(), *(v.clone() for v in st.values())]
            w.grad = torch.full((64,), 0.25)
            with pytest.raises(ValueError) as raised:
                opt.step()
            assert all(torch.equal(a, b) for a, b in zip(before, [w.detach(), *st.values()]))
        said.append(str(raised.value))
    assert said[0] == said[1] and "'exp_avg' of parameter 0 and the state 'exp_avg_sq' of parameter 0" in said[0]
