"""Hostile inputs to both fronts and the checkpoints: aliasing, mutation between steps, odd arrays, exceptions and
interrupts inside a step, threads and fork. Each either gives the reference backend's bits, or raises a clear error
having changed nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable

import numpy as np
import pytest

import descend
from descend import kernels

torch = pytest.importorskip("torch")

import descend.torch as dt  # noqa: E402

pytestmark = pytest.mark.skipif(not kernels.available()[0], reason="needs the compiled kernels")

N = 1000


def _np_bytes(opt: descend.optim.Optimizer, params: list[np.ndarray]) -> list:
    state = [{k: np.asarray(v).tobytes() for k, v in sorted(opt.state[i].items())} for i in sorted(opt.state)]
    return [np.asarray(p).tobytes() for p in params] + state


def _np_run(make: Callable, before: Callable, steps: int = 3, **kw: object) -> dict[str, object]:
    """Per backend, the bytes of every param and state after ``steps`` steps, or the error raised."""
    out: dict[str, object] = {}
    for backend in ("auto", "reference"):
        params = make()
        opt = descend.Adam(params, lr=0.1, backend=backend, **kw)
        try:
            for s in range(steps):
                opt.step(before(params, opt, s))
            out[backend] = _np_bytes(opt, params)
        except (ValueError, TypeError) as exc:
            out[backend] = f"{type(exc).__name__}: {exc}"
    return out


def _two() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal(N), rng.standard_normal(N)]


def _g(value: float) -> np.ndarray:
    return np.full(N, value)


# -- aliasing ----------------------------------------------------------------------------------------------------------


def test_numpy_grad_that_is_another_param_gives_the_reference_bits() -> None:
    out = _np_run(_two, lambda ps, opt, s: [_g(0.5), ps[0]])
    assert isinstance(out["auto"], list) and out["auto"] == out["reference"]


def test_numpy_grad_that_is_another_params_state_gives_the_reference_bits() -> None:
    out = _np_run(_two, lambda ps, opt, s: [_g(0.5), opt.state[0]["exp_avg"] if s else _g(0.3)])
    assert isinstance(out["auto"], list) and out["auto"] == out["reference"]


def test_numpy_same_gradient_for_two_params_gives_the_reference_bits() -> None:
    g = _g(0.25)
    out = _np_run(_two, lambda ps, opt, s: [g, g])
    assert isinstance(out["auto"], list) and out["auto"] == out["reference"]


@pytest.mark.parametrize("alias", ["state of another param", "another param", "the param itself"])
def test_numpy_state_sharing_memory_is_refused_and_changes_nothing(alias: str) -> None:
    params = _two()
    opt = descend.Adam(params, lr=0.1)
    opt.step([_g(0.5), _g(0.3)])
    target = {
        "state of another param": opt.state[0]["exp_avg"],
        "another param": params[0],
        "the param itself": params[1],
    }
    opt.state[1]["exp_avg"] = target[alias]
    before = _np_bytes(opt, params)
    with pytest.raises(ValueError, match="share"):
        opt.step([_g(0.5), _g(0.3)])
    assert _np_bytes(opt, params) == before
    ref = descend.Adam(_two(), lr=0.1, backend="reference")
    ref.step([_g(0.5), _g(0.3)])
    ref.state[1]["exp_avg"] = {"state of another param": ref.state[0]["exp_avg"]}.get(
        alias, ref.params[1 - (alias == "another param")]
    )
    with pytest.raises(ValueError, match="share"):  # the same answer from the reference backend
        ref.step([_g(0.5), _g(0.3)])


def test_numpy_params_that_are_views_of_each_other() -> None:
    w = np.zeros(10)
    with pytest.raises(ValueError, match="parameters 0 and 1 share memory"):
        descend.Adam([w[:6], w[4:]])
    descend.Adam([w[::2], w[1::2]]).step([np.ones(5), np.ones(5)])  # interleaved views share no element
    assert np.all(w != 0)


# -- mutation between steps --------------------------------------------------------------------------------------------


def test_numpy_state_slot_of_another_dtype_gives_the_reference_bits() -> None:
    def before(ps: list, opt: descend.Adam, s: int) -> list:
        if s == 1:
            opt.state[0]["exp_avg"] = opt.state[0]["exp_avg"].astype(np.float32)
        return [_g(0.5), _g(0.3)]

    out = _np_run(_two, before)
    assert isinstance(out["auto"], list) and out["auto"] == out["reference"]


def test_numpy_big_endian_arrays_are_refused_by_name() -> None:
    w = np.zeros(3, np.float32)
    opt = descend.Adam([w])
    with pytest.raises(TypeError, match=r"grads\[0\] has dtype >f4"):
        opt.step([np.ones(3, ">f4")])
    with pytest.raises(TypeError, match="dtype >f4; descend updates float32 and float64"):
        descend.Adam([np.zeros(3, ">f4")])
    opt.step([np.ones(3, np.float32)])
    opt.state[0]["exp_avg"] = opt.state[0]["exp_avg"].astype(">f4")
    before = w.tobytes()
    with pytest.raises(ValueError, match="state 'exp_avg' of parameter 0 has shape \\(3,\\), dtype >f4"):
        opt.step([np.ones(3, np.float32)])
    assert w.tobytes() == before


def test_nan_hyperparameter_set_between_steps_is_refused_on_both_fronts() -> None:
    params = _two()
    opt = descend.Adam(params, lr=0.1)
    opt.step([_g(0.5), _g(0.3)])
    opt.param_groups[0]["lr"] = float("nan")
    before = _np_bytes(opt, params)
    with pytest.raises(ValueError, match="nan"):
        opt.step([_g(0.5), _g(0.3)])
    assert _np_bytes(opt, params) == before
    w = torch.nn.Parameter(torch.ones(N))
    topt = dt.Adam([w], lr=0.1)
    w.grad = torch.ones(N)
    topt.step()
    topt.param_groups[0]["betas"] = (0.9, float("nan"))
    snapshot = w.detach().clone()
    with pytest.raises(ValueError, match="nan"):
        topt.step()
    assert torch.equal(w.detach(), snapshot)


# -- weird arrays ------------------------------------------------------------------------------------------------------


def test_numpy_weird_layouts_give_the_reference_bits(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "g.bin")

    def make() -> list:
        rng = np.random.default_rng(1)
        mm = np.memmap(os.path.join(str(tmp_path), f"p{len(os.listdir(str(tmp_path)))}"), np.float64, "w+", shape=(7,))
        mm[:] = 1.5
        return [
            np.array(2.0),
            np.zeros(0),
            np.zeros((3, 0)),
            rng.standard_normal(N)[::-1],
            rng.standard_normal(2 * N)[::2],
            mm,
        ]

    def before(ps: list, opt: descend.Adam, s: int) -> list:
        ro = np.full(N, 0.1)
        ro.flags.writeable = False
        g = np.memmap(path, np.float64, "w+", shape=(7,))
        g[:] = 0.25 * (s + 1)
        return [np.array(0.5), np.zeros(0), np.zeros((3, 0)), np.broadcast_to(np.float64(0.7), (N,)), ro, g]

    out = _np_run(make, before)
    assert isinstance(out["auto"], list) and out["auto"] == out["reference"]


class _Boom(np.ndarray):
    """An array whose NumPy protocol hooks raise KeyboardInterrupt while armed."""

    armed = False

    def __array_function__(self, func, types, args, kwargs):  # noqa: ANN001, ANN204
        if _Boom.armed:
            raise KeyboardInterrupt(f"in {func.__name__}")
        return super().__array_function__(func, types, args, kwargs)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):  # noqa: ANN001, ANN204
        if _Boom.armed:
            raise KeyboardInterrupt(f"in {ufunc.__name__}")
        return getattr(ufunc, method)(*[i.view(np.ndarray) if isinstance(i, _Boom) else i for i in inputs], **kwargs)


def test_numpy_subclass_hooks_raising_during_a_step(monkeypatch: pytest.MonkeyPatch) -> None:
    def make() -> list:
        return [np.ones(N), np.ones(2 * N)[::2], np.full(N, 2.0).view(_Boom)]

    def grads(boom_grad: bool = False) -> list:
        return [_g(1.0), _g(1.0), _g(1.0).view(_Boom) if boom_grad else _g(1.0)]

    params, ref_params = make(), make()
    opt, ref = descend.Adam(params, lr=0.1, nan_policy="raise"), descend.Adam(ref_params, lr=0.1, backend="reference")
    for o in (opt, ref):
        o.step(grads())
    monkeypatch.setattr(_Boom, "armed", True)
    opt.step(grads())  # writing into the subclass param goes through a plain view: its hooks do not run
    opt.step(grads(boom_grad=True))  # the finite check and the kernel read the subclass grad's memory directly
    monkeypatch.setattr(_Boom, "armed", False)
    for _ in range(2):
        ref.step(grads())
    assert _np_bytes(opt, params) == _np_bytes(ref, ref_params)


def _torch_run(make: Callable, before: Callable, steps: int = 3, **kw: object) -> dict[str, object]:
    out: dict[str, object] = {}
    for backend in ("auto", "reference"):
        torch.manual_seed(0)
        params = make()
        opt = dt.Adam(params, lr=0.1, backend=backend, **kw)
        try:
            for s in range(steps):
                before(params, opt, s)
                opt.step()
            state = [{k: v.detach().numpy().tobytes() for k, v in sorted(st.items())} for st in opt.state.values()]
            out[backend] = [p.detach().numpy().tobytes() for p in params] + state
        except (ValueError, TypeError) as exc:
            out[backend] = f"{type(exc).__name__}: {exc}"
    return out


def _tw() -> list:
    return [torch.nn.Parameter(torch.randn(N)), torch.nn.Parameter(torch.randn(N))]


def _tgrads(ps: list, second: object = None) -> None:
    ps[0].grad = torch.full((N,), 0.5)
    ps[1].grad = torch.full((N,), -0.25) if second is None else second


def test_torch_grad_that_is_another_param_or_its_state_gives_the_reference_bits() -> None:
    out = _torch_run(_tw, lambda ps, opt, s: _tgrads(ps, ps[0].detach()))
    assert isinstance(out["auto"], list) and out["auto"] == out["reference"]
    out = _torch_run(_tw, lambda ps, opt, s: _tgrads(ps, opt.state[ps[0]]["exp_avg"] if s else None))
    assert isinstance(out["auto"], list) and out["auto"] == out["reference"]


def test_torch_state_shared_between_params_is_refused() -> None:
    def before(ps: list, opt: dt.Adam, s: int) -> None:
        _tgrads(ps)
        if s == 2:
            opt.state[ps[1]]["exp_avg"] = opt.state[ps[0]]["exp_avg"]

    out = _torch_run(_tw, before)
    assert out["auto"] == out["reference"]
    assert "the state 'exp_avg' of parameter 0 and the state 'exp_avg' of parameter 1 share memory" in str(out["auto"])


def test_torch_mutations_between_steps_give_the_reference_bits() -> None:
    def before(ps: list, opt: dt.Adam, s: int) -> None:
        ps[0].grad = torch.tensor([0.7]).expand(N)  # stride 0
        with torch.inference_mode():
            ps[1].grad = torch.full((N,), 0.1 * (s + 1))
        if s == 1:
            opt.state[ps[0]], opt.state[ps[1]] = opt.state[ps[1]], opt.state[ps[0]]
            opt.state[ps[0]]["exp_avg"] = opt.state[ps[0]]["exp_avg"].double()
            opt.state[ps[1]]["exp_avg_sq"].requires_grad_(True)

    out = _torch_run(_tw, before, steps=4)
    assert isinstance(out["auto"], list) and out["auto"] == out["reference"]

    def channels_last() -> list:
        return [torch.nn.Parameter(torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last))]

    def grads(ps: list, opt: dt.Adam, s: int) -> None:
        g = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(s))
        ps[0].grad = g.to(memory_format=torch.channels_last) if s % 2 else g

    out = _torch_run(channels_last, grads, steps=4)
    assert isinstance(out["auto"], list) and out["auto"] == out["reference"]


@pytest.mark.parametrize("policy", ["skip", "raise"])
def test_nan_only_in_the_state_is_not_a_nonfinite_gradient(policy: str) -> None:
    def before(ps: list, opt: dt.Adam, s: int) -> None:
        _tgrads(ps)
        if s == 1:
            opt.state[ps[0]]["exp_avg"][3] = float("nan")

    out = _torch_run(_tw, before, nan_policy=policy)
    assert isinstance(out["auto"], list) and out["auto"] == out["reference"]


# -- interrupts inside a step ------------------------------------------------------------------------------------------


def _interrupting(original: Callable, n: int) -> Callable:
    calls = [0]

    def wrapped(*args: object) -> object:
        result = original(*args)
        calls[0] += 1
        if calls[0] == n:
            raise KeyboardInterrupt("as a signal handler would, right after the call returned")
        return result

    return wrapped


@pytest.mark.parametrize("where", ["after the kernel", "between writes"])
def test_an_interrupt_inside_a_step_leaves_it_whole(where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def make() -> list:
        return [np.ones(N), np.ones(2 * N)[::2], np.full(N, 3.0)]  # the kernel takes two, the reference one

    params, ref_params = make(), make()
    opt, ref = descend.NAdam(params, lr=0.1), descend.NAdam(ref_params, lr=0.1, backend="reference")
    grads = [_g(1.0), _g(-0.5), _g(0.25)]
    for o in (opt, ref):
        o.step(grads)
    if where == "after the kernel":
        real = kernels._fused

        class Interrupted:  # the compiled module, its run interrupted on the way back
            run = staticmethod(_interrupting(real.run, 1))

            def __getattr__(self, name: str) -> object:
                return getattr(real, name)

        monkeypatch.setattr(kernels, "_fused", Interrupted())
    else:
        monkeypatch.setattr(opt._engine.kind, "write_back", _interrupting(opt._engine.kind.write_back, 1))
    with pytest.raises(KeyboardInterrupt):
        opt.step(grads)
    monkeypatch.undo()
    ref.step(grads)
    assert _np_bytes(opt, params) == _np_bytes(ref, ref_params)
    for o in (opt, ref):
        o.step(grads)
    assert _np_bytes(opt, params) == _np_bytes(ref, ref_params)


def test_a_real_signal_interrupting_steps_never_splits_one() -> None:
    script = r"""
import signal, numpy as np, descend
params = [np.ones(40000), np.ones(80000)[::2]]
opt = descend.Adam(params, lr=0.01)
g = [np.full(40000, 0.5), np.full(40000, 0.5)]
interrupted, armed = 0, [False]
def handler(*args):
    if armed[0]:  # raises once per arming, inside the try below
        armed[0] = False
        raise KeyboardInterrupt
signal.signal(signal.SIGALRM, handler)
signal.setitimer(signal.ITIMER_REAL, 0.001, 0.0007)
for _ in range(3000):
    try:
        armed[0] = True
        opt.step(g)
        armed[0] = False
    except KeyboardInterrupt:
        interrupted += 1
signal.setitimer(signal.ITIMER_REAL, 0)
ref = descend.Adam([np.ones(40000), np.ones(80000)[::2]], lr=0.01, backend="reference")
for _ in range(opt.state.get(0, {}).get("step", 0)):
    ref.step(g)
ok = all(np.array_equal(a, b) for a, b in zip(params, ref.params)) and all(
    opt.state.get(i, {}).get("step") == ref.state.get(i, {}).get("step") for i in (0, 1)
)
print("OK" if ok else "SPLIT", interrupted)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.stdout.startswith("OK"), out.stdout + out.stderr


# -- threads, checkpoints, fork ----------------------------------------------------------------------------------------


def test_save_while_another_thread_steps_holds_one_step(tmp_path: object) -> None:
    script = textwrap.dedent(
        r"""
        import sys, threading, numpy as np, descend
        path = sys.argv[1]
        params = [np.ones(200000), np.ones(3)]
        opt = descend.Adam(params, lr=0.01)
        g = [np.full(200000, 0.5), np.full(3, 0.5)]
        trajectory = {}
        ref = descend.Adam([np.ones(200000), np.ones(3)], lr=0.01, backend="reference")
        for k in range(1, 401):
            ref.step(g)
            trajectory[k] = ref.params[0][:5].copy()
        stop = False
        def loop():
            for _ in range(400):
                opt.step(g)
        t = threading.Thread(target=loop)
        t.start()
        bad = 0
        while t.is_alive():
            descend.save(path, opt)
            fresh = descend.Adam([np.zeros(200000), np.zeros(3)], lr=0.01)
            descend.load(path, fresh)
            k = fresh.state.get(0, {}).get("step", 0)
            if k and not np.array_equal(fresh.params[0][:5], trajectory[k]):
                bad += 1
        t.join()
        print("bad", bad)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script, os.path.join(str(tmp_path), "c.npz")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.stdout.strip() == "bad 0", out.stdout + out.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_while_another_thread_steps_lets_the_child_step() -> None:
    script = textwrap.dedent(
        r"""
        import os, signal, threading, numpy as np, descend
        params = [np.ones(200000)]
        opt = descend.Adam(params, lr=0.01)
        g = [np.full(200000, 0.5)]
        go = threading.Event()
        def loop():
            go.set()
            for _ in range(2000):
                opt.step(g)
        t = threading.Thread(target=loop)
        t.start()
        go.wait()
        codes = []
        for _ in range(20):
            pid = os.fork()
            if pid == 0:
                signal.alarm(20)  # a child that hangs is killed
                before = opt.state[0]["step"]
                opt.step(g)  # hangs if the lock is held by the parent's stepping thread
                os._exit(0 if opt.state[0]["step"] == before + 1 else 3)
            codes.append(os.waitpid(pid, 0)[1])
        t.join()
        print("codes", sorted(set(codes)))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "codes [0]", out.stdout + out.stderr
