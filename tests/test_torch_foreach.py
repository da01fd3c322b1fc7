"""The multi-tensor path (``backend="foreach"``, and ``"auto"`` off the CPU) gives the per-tensor reference's bits.

Every elementwise algorithm of the registry runs on both paths from the same start with the same gradients, with
hyperparameters drawn by the kernels' Hypothesis strategies, in float32, float64, bfloat16, float16 and complex64
storage, on tensors of mixed shapes (a 0-d one, an empty one, a transposed one); after several steps every parameter
and state tensor must hold the same bits. No GPU is needed: ``backend="foreach"`` runs the path on the CPU, and the
``meta`` device stands in for a device the kernel cannot take, to show that ``"auto"`` sends such tensors to the path.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import descend
from descend.algorithms import registry
from descend.engine import foreach
from tests.shapes import takes_dense_gradients, torch_grad
from tests.test_kernels_strategies import STRATEGIES

torch = pytest.importorskip("torch")
dt = pytest.importorskip("descend.torch")

# The elementwise rules; a closure-driven one (L-BFGS) runs no reference_update, and Muon's reads whole matrices, so
# it has no multi-tensor form (tests/test_muon.py holds backend="foreach" to a clear refusal).
NAMES = [name for name, spec in registry.ELEMENTWISE.items() if not spec.whole_tensor]
STORAGE = [torch.float32, torch.float64, torch.bfloat16, torch.float16, torch.complex64]
_INTS = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def bits(t: Any) -> Any:
    """A tensor's bytes as integers (NaN payloads included), or a non-tensor value as it is."""
    if not isinstance(t, torch.Tensor):
        return t
    t = t.detach()
    if t.is_complex():
        t = torch.view_as_real(t)
    return t.contiguous().view(_INTS[t.element_size()]).clone()


def same(a: Any, b: Any) -> bool:
    a, b = bits(a), bits(b)
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    return a == b


def make_params(dtype: torch.dtype, seed: int) -> list:
    gen = torch.Generator().manual_seed(seed)
    shapes = [(3, 4), (7,), (), (0,), (2, 3, 2)]
    values = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    values.append(torch.randn(5, 3, generator=gen, dtype=torch.float64).t())  # not contiguous
    return [torch.nn.Parameter(v.to(dtype)) for v in values]


def gradients(params: list, step: int, seed: int) -> list:
    gen = torch.Generator().manual_seed(1000 * seed + step)
    out = []
    for p in params:
        g = torch.randn(p.shape, generator=gen, dtype=torch.float64)
        g[torch.rand(p.shape, generator=gen) < 0.1] = 0.0  # exact zeros: signs, divisions by eps
        out.append(g.to(p.dtype))
    return out


def run(name: str, kwargs: dict, backend: str, dtype: torch.dtype, seed: int, steps: int = 4, missing: Any = None):
    """``steps`` steps of ``name`` on :func:`make_params`; ``missing(step, index)`` True leaves that gradient None."""
    params = make_params(dtype, seed)
    opt = dt.OPTIMIZERS[name](params, backend=backend, **kwargs)
    for step in range(steps):
        for i, (p, g) in enumerate(zip(params, gradients(params, step, seed))):
            p.grad = None if missing is not None and missing(step, i) else torch_grad(type(opt), g)
        opt.step()
    return params, opt


def assert_same_run(name: str, a: tuple, b: tuple, what: str) -> None:
    (pa, oa), (pb, ob) = a, b
    for i, (x, y) in enumerate(zip(pa, pb)):
        assert same(x, y), f"{name} {what}: parameter {i}"
        sa, sb = oa.state.get(x, {}), ob.state.get(y, {})
        assert sa.keys() == sb.keys(), f"{name} {what}: state keys of parameter {i}"
        for key in sa:
            assert same(sa[key], sb[key]), f"{name} {what}: state {key!r} of parameter {i}"


def test_every_algorithm_has_a_torch_class() -> None:
    assert set(NAMES) <= set(dt.OPTIMIZERS)


@pytest.mark.parametrize("dtype", STORAGE, ids=str)
@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_foreach_equals_the_reference_bit_for_bit(name: str, dtype: torch.dtype, data: Any) -> None:
    if dtype.is_complex and not takes_dense_gradients(name):
        pytest.skip("SparseAdam's torch class refuses complex parameters, as torch's")
    kwargs = data.draw(STRATEGIES[name], label="hyperparameters")
    seed = data.draw(st.integers(0, 2**16), label="seed")
    try:
        registry.get(name).make(**kwargs)
    except ValueError:
        assume(False)
    reference = run(name, kwargs, "reference", dtype, seed)
    multi = run(name, kwargs, "foreach", dtype, seed)
    assert_same_run(name, reference, multi, f"{dtype} {kwargs}")


@pytest.mark.parametrize("size", [1, 13])
def test_a_set_computed_in_runs_gives_the_same_bits(size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """On the CPU a set is computed in runs of tensors (one run per tensor with ``CPU_RUN=1``; runs of a few tensors
    with 13): the bits are the reference's."""
    monkeypatch.setattr(foreach, "CPU_RUN", size)
    for name in NAMES:
        kwargs = dict(registry.get(name).full_state)
        for dtype in (torch.float32, torch.float16):
            reference = run(name, kwargs, "reference", dtype, 11)
            assert_same_run(name, reference, run(name, kwargs, "foreach", dtype, 11), f"{dtype} in runs of {size}")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_float32_state_for_half_parameters(dtype: torch.dtype) -> None:
    """With ``state_dtype=torch.float32`` a set mixes storage: its parameters are loaded into float32 and rounded back,
    its state is read and written as it is."""
    for name in NAMES:
        kwargs = {**registry.get(name).full_state, "state_dtype": torch.float32}
        reference, multi = (run(name, kwargs, backend, dtype, 12) for backend in ("reference", "foreach"))
        assert_same_run(name, reference, multi, f"{dtype} with float32 state")
        slots = registry.get(name).state_slots(registry.get(name).make(**registry.get(name).full_state))
        assert all(st[k].dtype == torch.float32 for st in multi[1].state.values() for k in slots), name


def scalars_at(spec: Any, step: int) -> Any:
    """The scalars of a parameter's ``step``-th update (not its first) with the full-state defaults."""
    hp = spec.make(**spec.full_state)
    host = spec.host_slots(hp)
    for count in range(1, step + 1):
        before, host = host, spec.advance_host(hp, count, host)
    return spec.scalars(hp, step, before if spec.host_for_scalars == "before" else host, False)


@pytest.mark.parametrize("name", NAMES)
def test_parameters_at_different_steps_in_one_group(name: str, calls: list[int]) -> None:
    """Parameters that missed some steps are at other step counts, so their scalars differ: each set of equal
    scalars is one multi-tensor call, and the bits are still the reference's."""
    sets = calls
    spec = registry.get(name)
    kwargs = dict(spec.full_state)

    def missing(step: int, i: int) -> bool:
        return (step + i) % 3 == 0 and step < 4

    for dtype in (torch.float32, torch.bfloat16):
        reference = run(name, kwargs, "reference", dtype, 7, steps=6, missing=missing)
        sets.clear()
        multi = run(name, kwargs, "foreach", dtype, 7, steps=6, missing=missing)
        assert_same_run(name, reference, multi, f"{dtype} at mixed steps")
        # a sparse gradient of an empty parameter holds nothing, and SparseAdam's class sends it nowhere
        sent = [takes_dense_gradients(name) or p.numel() > 0 for p in multi[0]]
        assert sum(sets) == sum(not missing(step, i) and sent[i] for step in range(6) for i in range(6))
        if scalars_at(spec, 1) != scalars_at(spec, 2):  # the scalars depend on the step
            assert len(sets) > 6, f"parameters at different steps should fall into different sets, got {sets}"


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every set the multi-tensor path is given, in order."""
    sizes: list[int] = []
    original = foreach.group_step

    def counting(spec: Any, params: list, *args: Any) -> Any:
        sizes.append(len(params))
        return original(spec, params, *args)

    monkeypatch.setattr(foreach, "group_step", counting)
    return sizes


def test_auto_runs_the_kernel_on_the_cpu_and_foreach_forces_the_path(calls: list[int]) -> None:
    params = [torch.nn.Parameter(torch.randn(4, 3)) for _ in range(3)]
    opt = dt.Adam(params, backend="foreach")
    for _ in range(3):
        for p in params:
            p.grad = torch.ones_like(p)
        opt.step()
    assert calls == [3, 3, 3] and not opt._plans  # one set per step, and no kernel plan recorded
    calls.clear()
    if descend.kernels.available()[0]:
        auto = dt.Adam(params)
        auto.step()
        assert calls == []


def test_auto_sends_tensors_off_the_cpu_to_the_multi_tensor_path(calls: list[int]) -> None:
    """The ``meta`` device has no data but runs every operation the path uses off the CPU (``_foreach_sqrt``, the
    multi-tensor sign, division by a 0-d tensor on the device, the batched copy back)."""
    for name in [n for n in NAMES if takes_dense_gradients(n)]:  # (no sparse tensors on the meta device)
        spec = registry.get(name)
        for dtype in (torch.float32, torch.float16, torch.complex64):
            calls.clear()
            params = [torch.nn.Parameter(torch.empty(s, device="meta", dtype=dtype)) for s in [(3, 4), (5,), ()]]
            opt = dt.OPTIMIZERS[name](params, **spec.full_state)
            for _ in range(2):
                for p in params:
                    p.grad = torch.empty_like(p)
                opt.step()
            assert calls == [3, 3], f"{name} {dtype}: {calls}"
            assert all(t.device.type == "meta" for st in opt.state.values() for t in st.values() if t.ndim)


def test_a_cpu_tensor_the_kernel_refuses_still_runs_the_reference_under_auto(calls: list[int]) -> None:
    p = torch.nn.Parameter(torch.randn(6, 4).t())
    opt = dt.Adam([p])
    p.grad = torch.ones(4, 6)
    opt.step()
    assert calls == []


def test_the_numpy_front_and_contradicting_options_refuse_foreach() -> None:
    with pytest.raises(ValueError, match=r"Invalid backend 'foreach'; choose one of auto, reference, fused \("):
        descend.Adam([np.zeros(3)], backend="foreach")
    p = torch.nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match=r"foreach=False asks for backend 'reference' but backend='foreach'"):
        dt.Adam([p], backend="foreach", foreach=False)
    with pytest.raises(ValueError, match=r"fused=True asks for backend 'fused' but backend='foreach'"):
        dt.Adam([p], backend="foreach", fused=True)
    dt.Adam([p], backend="foreach", foreach=True)  # agrees


@pytest.mark.parametrize("policy", ["skip", "raise", "propagate"])
def test_nan_policy_on_the_multi_tensor_path(policy: str) -> None:
    runs = {}
    for backend in ("reference", "foreach"):
        params = make_params(torch.float32, 3)
        opt = dt.Adam(params, backend=backend, nan_policy=policy, amsgrad=True)
        for step in range(3):
            grads = gradients(params, step, 3)
            if step == 2:
                grads[1][2] = float("nan")
                grads[0][0, 1] = -float("inf")
            for p, g in zip(params, grads):
                p.grad = g
            before = [bits(p) for p in params] + [bits(t) for s in opt.state.values() for t in s.values()]
            if step == 2 and policy == "raise":
                with pytest.raises(ValueError, match=r"the gradient of parameter 0 \(shape \(3, 4\)\) holds NaN"):
                    opt.step()
            else:
                opt.step()
            if step == 2 and policy != "propagate":
                after = [bits(p) for p in params] + [bits(t) for s in opt.state.values() for t in s.values()]
                assert all(torch.equal(a, b) for a, b in zip(before, after))
        runs[backend] = (params, opt)
    assert_same_run("adam", runs["reference"], runs["foreach"], f"nan_policy={policy}")


# -- atomicity ---------------------------------------------------------------------------------------------------------


class Fault(RuntimeError):
    pass


def _nth(n: int, original: Any) -> Any:
    """``original``, raising Fault on its n-th call (counting from 1)."""
    calls = [0]

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == n:
            raise Fault(f"injected at call {n}")
        return original(*args, **kwargs)

    return wrapped


def _setup() -> tuple[list, Any]:
    """Two groups on the multi-tensor path: float32 tensors (one transposed), and bfloat16 ones loaded into float32."""
    gen = torch.Generator().manual_seed(5)
    first = [torch.randn(50, generator=gen), torch.randn(3, 4, generator=gen), torch.randn(8, 6, generator=gen).t()]
    second = [torch.randn(7, generator=gen).to(torch.bfloat16), torch.randn(2, 5, generator=gen).to(torch.bfloat16)]
    params = [torch.nn.Parameter(p) for p in first + second]
    groups = [{"params": params[:3]}, {"params": params[3:], "lr": 0.01, "weight_decay": 0.1}]
    return params, dt.AdamW(groups, lr=0.05, amsgrad=True, backend="foreach")


def _snapshot(params: list, opt: Any) -> list:
    return [bits(p) for p in params] + [(k, bits(v)) for p in params for k, v in opt.state.get(p, {}).items()]


def _equal(a: list, b: list) -> bool:
    return len(a) == len(b) and all(same(x[-1], y[-1]) if isinstance(x, tuple) else same(x, y) for x, y in zip(a, b))


def _grads(params: list, step: int) -> None:
    for p in params:
        p.grad = torch.cos(torch.arange(p.numel(), dtype=torch.float64).reshape(p.shape) + step).to(p.dtype)


FAULTS = {
    # the second set's rule raises after every one of its operations has run
    "end of the rule": lambda opt, m: m.setattr(
        opt._engine, "spec", dataclasses.replace(opt._engine.spec, reference_update=_after(2, opt._engine.spec))
    ),
    # a multi-tensor operation in the middle of the second set's rule
    "multi-tensor operation": lambda opt, m: m.setattr(torch, "_foreach_maximum", _nth(2, torch._foreach_maximum)),
    # loading bfloat16 storage into float32
    "load": lambda opt, m: m.setattr(torch, "_foreach_copy_", _nth(1, torch._foreach_copy_)),
}


def _after(n: int, spec: Any) -> Any:
    """``spec.reference_update``, raising Fault once its n-th call has run."""
    calls = [0]

    def rule(*args: Any) -> None:
        spec.reference_update(*args)
        calls[0] += 1
        if calls[0] == n:
            raise Fault("injected after the rule ran")

    return rule


@pytest.mark.parametrize("at_step", [0, 3])
@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_step_that_raises_changes_nothing(fault: str, at_step: int, monkeypatch: pytest.MonkeyPatch) -> None:
    params, opt = _setup()
    twin_params, twin = _setup()
    for step in range(at_step):
        for ps, o in ((params, opt), (twin_params, twin)):
            _grads(ps, step)
            o.step()
    before = _snapshot(params, opt)
    _grads(params, at_step)
    with monkeypatch.context() as m:
        FAULTS[fault](opt, m)
        with pytest.raises(Fault):
            opt.step()
    assert _equal(_snapshot(params, opt), before), f"a fault at the {fault} changed something"
    for step in range(at_step, at_step + 2):
        for ps, o in ((params, opt), (twin_params, twin)):
            _grads(ps, step)
            o.step()
    assert _equal(_snapshot(params, opt), _snapshot(twin_params, twin))


def test_an_interrupt_during_the_writes_finishes_the_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """The writes store values computed before, so one interrupted (a KeyboardInterrupt) is made again and the step
    is finished before the interrupt goes on."""
    params, opt = _setup()
    twin_params, twin = _setup()
    for step in range(2):
        for ps, o in ((params, opt), (twin_params, twin)):
            _grads(ps, step)
            o.step()
    original = foreach.store
    calls = [0]

    def interrupted(writes: Any) -> None:
        calls[0] += 1
        if calls[0] == 1:
            original(writes[:1])  # some of the writes are done
            raise KeyboardInterrupt
        original(writes)

    monkeypatch.setattr(foreach, "store", interrupted)
    _grads(params, 2)
    _grads(twin_params, 2)
    with pytest.raises(KeyboardInterrupt):
        opt.step()
    twin.step()
    assert _equal(_snapshot(params, opt), _snapshot(twin_params, twin))


@pytest.mark.parametrize("backend", ["reference", "foreach"])
def test_a_bad_state_is_refused_as_on_the_general_path(backend: str) -> None:
    """A group in its steady state is checked as the general path checks it: a state of the wrong shape, or one
    tensor serving as the state of two parameters, is refused before anything changes, with the same message."""
    gen = torch.Generator().manual_seed(9)
    params = [torch.nn.Parameter(torch.randn(3, 4, generator=gen)) for _ in range(3)]
    opt = dt.Adam(params, backend=backend)
    for p in params:
        p.grad = torch.randn(3, 4, generator=gen)
    opt.step()
    opt.state[params[1]]["exp_avg"] = torch.zeros(2)
    before = _snapshot(params, opt)
    with pytest.raises(ValueError, match=r"the state 'exp_avg' of parameter 1 has shape \(2,\)"):
        opt.step()
    assert _equal(_snapshot(params, opt), before)
    opt.state[params[1]]["exp_avg"] = opt.state[params[0]]["exp_avg"]  # shared with parameter 0
    before = _snapshot(params, opt)
    with pytest.raises(ValueError, match="share"):
        opt.step()
    assert _equal(_snapshot(params, opt), before)
