"""descend.torch's steady-state plan: whatever changes between steps, the plan path gives the reference's bits.

Each case trains the same parameters twice, with backend="auto" (the plan runs from the third step on) and
backend="reference" (never planned), applying the same change to the optimizer or the tensors before step 5, and
compares every parameter and state tensor bit for bit.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable

import pytest

torch = pytest.importorskip("torch")

import descend.torch as dt  # noqa: E402
from descend import kernels  # noqa: E402

pytestmark = pytest.mark.skipif(not kernels.available()[0], reason="the fused kernels are not built")

SHAPES = [(4, 5), (7,), (), (3, 3)]


def _grads(params: list, step: int, gen: torch.Generator) -> None:
    for i, p in enumerate(params):
        p.grad = (p.detach() * 0.3 + torch.randn(p.shape, generator=gen, dtype=p.dtype) * (i + 1) / (step + 1)).to(
            p.dtype
        )


def _run(
    backend: str,
    change: Callable[[list, object], None],
    *,
    cls: type = dt.Adam,
    dtype: torch.dtype = torch.float32,
    steps: int = 9,
    planned: bool = True,
    **kwargs: object,
) -> tuple[list[torch.Tensor], object]:
    gen = torch.Generator().manual_seed(3)
    params = [torch.randn(s, generator=gen).to(dtype).requires_grad_() for s in SHAPES]
    opt = cls(params, backend=backend, **kwargs)
    for step in range(steps):
        _grads(params, step, gen)
        if step == 4:
            change(params, opt)
        opt.step()
        if backend == "auto" and step == 3:
            assert bool(opt._plans) == planned, "a plan runs the steady state where the group fits one"
    tensors = [p.detach().clone() for p in params]
    for group in opt.param_groups:
        for p in group["params"]:
            tensors += [v.clone() if isinstance(v, torch.Tensor) else torch.tensor(v) for v in opt.state[p].values()]
    return tensors, opt


def _same(change: Callable[[list, object], None], **kwargs: object) -> object:
    """Train with a plan and with the reference, making ``change`` before step 5; the bits must agree."""
    planned, opt = _run("auto", change, **kwargs)
    reference, _ = _run("reference", change, **kwargs)
    assert len(planned) == len(reference)
    for a, b in zip(planned, reference):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a, b) or (a.isnan() == b.isnan()).all() and torch.equal(a.nan_to_num(), b.nan_to_num())
    return opt


def _nothing(params: list, opt: object) -> None:
    pass


def _reset_state_of_one(params: list, opt: object) -> None:
    opt.state[params[0]] = {}


def _delete_state_of_one(params: list, opt: object) -> None:
    del opt.state[params[1]]


def _load_state_dict(params: list, opt: object) -> None:
    saved = copy.deepcopy(opt.state_dict())
    for st in saved["state"].values():
        st["exp_avg"].mul_(0.5)
    opt.load_state_dict(saved)


def _replace_param_memory(params: list, opt: object) -> None:
    params[0].data = params[0].data.clone()


def _replace_state_tensor(params: list, opt: object) -> None:
    opt.state[params[0]]["exp_avg_sq"] = opt.state[params[0]]["exp_avg_sq"].clone() * 2


def _edit_state_in_place(params: list, opt: object) -> None:
    opt.state[params[1]]["exp_avg"].zero_()
    opt.state[params[2]]["step"].fill_(100.0)  # this parameter now runs at another step count than the others


def _share_state_memory(params: list, opt: object) -> None:
    for key in ("exp_avg", "step"):  # moves the data of the same storages into shared memory, freeing the old
        opt.state[params[0]][key].share_memory_()


def _non_contiguous_grad(params: list, opt: object) -> None:
    params[0].grad = params[0].grad.t().contiguous().t()


def _no_grad_for_one(params: list, opt: object) -> None:
    params[1].grad = None


def _no_grads_at_all(params: list, opt: object) -> None:
    for p in params:
        p.grad = None


def _new_lr_and_betas(params: list, opt: object) -> None:
    opt.param_groups[0]["lr"] = 0.003
    opt.param_groups[0]["betas"] = (0.5, 0.9)


def _switch_on_amsgrad(params: list, opt: object) -> None:
    opt.param_groups[0]["amsgrad"] = True


def _append_a_param(params: list, opt: object) -> None:
    extra = torch.linspace(-1, 1, 6).requires_grad_()
    extra.grad = torch.full_like(extra, 0.25)
    opt.param_groups[0]["params"].append(extra)
    params.append(extra)


def _point_state_data_elsewhere(params: list, opt: object) -> None:
    opt.state[params[0]]["exp_avg"].data = torch.zeros(params[0].shape)  # the same tensor object, other memory


def _set_state_to_other_storage(params: list, opt: object) -> None:
    st = opt.state[params[1]]
    st["exp_avg_sq"].set_(st["exp_avg_sq"].clone() * 3)


def _point_step_data_elsewhere(params: list, opt: object) -> None:
    opt.state[params[2]]["step"].data = torch.tensor(40.0)


def _transpose_param_in_place(params: list, opt: object) -> None:
    params[0].data = params[0].data.t()  # (4, 5) -> (5, 4) at the same address: the layout changed, not the memory
    params[0].grad = params[0].grad.t().contiguous()
    for key in ("exp_avg", "exp_avg_sq"):
        opt.state[params[0]][key] = opt.state[params[0]][key].t().contiguous()


def _transpose_state_in_place(params: list, opt: object) -> None:
    opt.state[params[0]]["exp_avg"].t_()  # now (5, 4) and no longer the parameter's shape: torch refuses to add them


def _shrink_state_in_place(params: list, opt: object) -> None:
    opt.state[params[1]]["exp_avg"].resize_(3)  # the same address, fewer elements: refused as torch refuses it


def _point_state_at_its_transpose(params: list, opt: object) -> None:
    # a square state tensor swapped to its own transpose: the same address and version, another layout
    st = opt.state[params[3]]
    st["exp_avg"].data = st["exp_avg"].data.t()


def _point_state_at_a_reshape(params: list, opt: object) -> None:
    # the same memory seen as another (contiguous) shape: torch cannot add it to the parameter
    st = opt.state[params[0]]
    st["exp_avg_sq"].data = st["exp_avg_sq"].data.view(-1)


def _point_state_at_another_dtype(params: list, opt: object) -> None:
    # the same memory read as int32: torch refuses a state that is not a float tensor
    st = opt.state[params[1]]
    st["exp_avg"].data = st["exp_avg"].data.view(torch.int32)


def _point_step_at_another_dtype(params: list, opt: object) -> None:
    # the same four bytes read as int32 (a float's bit pattern as a huge count): the reference reads that count
    st = opt.state[params[3]]
    st["step"].data = st["step"].data.view(torch.int32)


def _negated_grad(params: list, opt: object) -> None:
    # a lazily negated view (is_neg()): its memory holds the other sign of what it reads as
    params[1].grad = torch._neg_view(-params[1].grad)


def _point_param_at_its_negation(params: list, opt: object) -> None:
    params[0].data = torch._neg_view(params[0].data)  # the same memory, address, dtype and layout


def _point_state_at_its_negation(params: list, opt: object) -> None:
    st = opt.state[params[3]]
    st["exp_avg"].data = torch._neg_view(st["exp_avg"].data)


def _point_step_at_its_negation(params: list, opt: object) -> None:
    st = opt.state[params[2]]
    st["step"].data = torch._neg_view(st["step"].data)  # a negative count: the bias correction's root refuses it


def _add_a_group(params: list, opt: object) -> None:
    extra = torch.linspace(-1, 1, 6).requires_grad_()
    extra.grad = torch.full_like(extra, 0.25)
    opt.add_param_group({"params": [extra], "lr": 0.1})
    params.append(extra)


CHANGES = [
    _nothing,
    _reset_state_of_one,
    _delete_state_of_one,
    _load_state_dict,
    _replace_param_memory,
    _replace_state_tensor,
    _edit_state_in_place,
    _share_state_memory,
    _non_contiguous_grad,
    _no_grad_for_one,
    _no_grads_at_all,
    _new_lr_and_betas,
    _switch_on_amsgrad,
    _append_a_param,
    _add_a_group,
    _point_state_data_elsewhere,
    _set_state_to_other_storage,
    _point_step_data_elsewhere,
    _transpose_param_in_place,
    _point_state_at_its_transpose,
    _point_step_at_another_dtype,
    _negated_grad,
    _point_param_at_its_negation,
    _point_state_at_its_negation,
]

# Changes that leave a state tensor that cannot be added to its parameter: both backends must refuse the step and
# change nothing (with a plan, it would write where the old layout was).
REFUSED = [
    _transpose_state_in_place,
    _shrink_state_in_place,
    _point_state_at_a_reshape,
    _point_state_at_another_dtype,
    _point_step_at_its_negation,
]


@pytest.fixture(params=["shim", "shim, is_neg()", "attributes"])
def checks(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The plan's checks read the tensors' metadata with torch's C functions (the default where torch has them),
    with them but each tensor's is_neg() called (a torch without an exported at::native::is_neg), or through the
    tensors' Python attributes."""
    import descend.engine.plan as plan

    if request.param == "attributes":
        monkeypatch.setattr(plan, "_SHIM", None)
    elif plan._SHIM is None:
        pytest.skip("this torch exports no C functions for a tensor's metadata")
    elif request.param == "shim, is_neg()":
        monkeypatch.setattr(plan, "_SHIM", plan._SHIM[:7])
    return request.param


@pytest.mark.parametrize("change", CHANGES, ids=lambda f: f.__name__.strip("_"))
def test_a_change_between_steps_gives_the_reference_bits(change: Callable[[list, object], None], checks: str) -> None:
    opt = _same(change, lr=0.01)
    plans = list(opt._plans.values())  # type: ignore[attr-defined]
    assert all(kernels.plan_uses_shim(p.compiled) == (checks != "attributes") for p in plans)


def test_the_state_data_swap_from_the_docs_is_seen() -> None:
    """A state tensor given other memory through .data is read and written there, as torch.optim does."""
    w = torch.nn.Parameter(torch.randn(5, generator=torch.Generator().manual_seed(0)))
    opt = dt.Adam([w], lr=0.1)
    for i in range(6):
        w.grad = torch.full((5,), 1.0 + i)
        opt.step()
        if i == 2:
            opt.state[w]["exp_avg"].data = torch.zeros(5)
    assert torch.allclose(opt.state[w]["exp_avg"], torch.full((5,), 1.3740), atol=1e-4)


@pytest.mark.parametrize("change", REFUSED, ids=lambda f: f.__name__.strip("_"))
@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_a_state_tensor_of_another_layout_is_refused_with_nothing_changed(
    change: Callable, backend: str, checks: str
) -> None:
    gen = torch.Generator().manual_seed(3)
    params = [torch.randn(s, generator=gen).requires_grad_() for s in SHAPES]
    opt = dt.Adam(params, lr=0.01, backend=backend)
    for step in range(4):
        _grads(params, step, gen)
        opt.step()
    change(params, opt)
    before = [p.detach().clone() for p in params] + [v.clone() for st in opt.state.values() for v in st.values()]
    with pytest.raises((ValueError, RuntimeError)):
        opt.step()
    after = [p.detach().clone() for p in params] + [v.clone() for st in opt.state.values() for v in st.values()]
    assert all(a.shape == b.shape and torch.equal(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (dt.SGD, {"lr": 0.1}),
        (dt.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
        (dt.RMSprop, {"lr": 0.01, "centered": True, "momentum": 0.5}),
        (dt.Adagrad, {"lr": 0.1}),
        (dt.Adadelta, {}),
        (dt.AdamW, {"lr": 0.01, "amsgrad": True}),
        (dt.Adamax, {"lr": 0.01}),
        (dt.NAdam, {"lr": 0.01}),
        (dt.RAdam, {"lr": 0.01, "decoupled_weight_decay": True, "weight_decay": 0.1}),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else "",
)
def test_every_algorithm_runs_from_a_plan_with_the_reference_bits(cls: type, kwargs: dict) -> None:
    _same(_nothing, cls=cls, **kwargs)
    # a parameter that misses a step holds another step count (and NAdam another mu_product) from then on
    _same(_no_grad_for_one, cls=cls, **kwargs)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_other_dtypes_run_from_a_plan(dtype: torch.dtype) -> None:
    _same(_reset_state_of_one, dtype=dtype, lr=0.01)


def test_float32_state_for_bfloat16_params() -> None:
    opt = _same(_nothing, dtype=torch.bfloat16, lr=0.01, state_dtype=torch.float32)
    assert all(v.dtype == torch.float32 for st in opt.state.values() for k, v in st.items() if k != "step")


def test_float64_step_counters_under_a_float64_default_dtype() -> None:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        opt = _same(_nothing, dtype=torch.float64, lr=0.01)
    finally:
        torch.set_default_dtype(previous)
    assert all(st["step"].dtype == torch.float64 for st in opt.state.values())


def test_float32_step_counters_stop_where_torch_stops() -> None:
    def far(params: list, opt: object) -> None:
        for p in params:
            opt.state[p]["step"].fill_(2.0**24)  # float32 cannot count past this by adding 1

    opt = _same(far, lr=0.01)
    assert all(st["step"].item() == 2.0**24 for st in opt.state.values())


def test_a_plan_is_dropped_and_rebuilt_when_the_group_changes() -> None:
    params = [torch.ones(3, requires_grad=True), torch.ones(2, requires_grad=True)]
    opt = dt.Adam(params, lr=0.1)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    first = opt._plans[id(opt.param_groups[0])]
    opt.step()
    assert opt._plans[id(opt.param_groups[0])] is first  # the steady state kept it
    params[0].data = torch.zeros(3)
    opt.step()
    second = opt._plans[id(opt.param_groups[0])]
    assert second is not first and second.p_ptrs[0] == params[0].data_ptr()


@pytest.mark.parametrize("policy", ["skip", "raise"])
def test_nan_policy_reads_the_planned_gradients(policy: str) -> None:
    params = [torch.ones(3, requires_grad=True), torch.ones(2, requires_grad=True)]
    opt = dt.Adam(params, lr=0.1, nan_policy=policy)
    for _ in range(3):
        for p in params:
            p.grad = torch.ones_like(p)
        opt.step()
    assert opt._plans
    before = [p.detach().clone() for p in params] + [v.clone() for st in opt.state.values() for v in st.values()]
    params[1].grad = torch.tensor([1.0, float("nan")])
    if policy == "raise":
        with pytest.raises(ValueError, match=r"gradient of parameter 1 \(shape \(2,\)\)"):
            opt.step()
    else:
        opt.step()
        assert opt.skipped_steps == 1
    after = [p.detach().clone() for p in params] + [v.clone() for st in opt.state.values() for v in st.values()]
    assert all(torch.equal(a, b) for a, b in zip(before, after))


def test_a_gradient_of_another_shape_is_refused_as_on_the_general_path() -> None:
    w = torch.ones(2, 3, requires_grad=True)
    opt = dt.Adam([w], lr=0.1)
    for _ in range(3):
        w.grad = torch.ones_like(w)
        opt.step()
    w.grad.data = torch.ones(3, 2)  # bypasses the grad setter's own check
    before = w.detach().clone()
    with pytest.raises(ValueError, match=r"shape \(3, 2\) was found for a parameter of dtype torch.float32 and shape"):
        opt.step()
    assert torch.equal(w.detach(), before)


def test_compile_plan_refuses_malformed_entries() -> None:
    p = torch.ones(3)
    good = ({}, p.data_ptr(), p.shape, (), (), ())
    assert kernels.gather(
        [p], kernels.compile_plan([p], [good], (), 0), {p: good[0]}, torch.float32, torch.strided, (torch.Tensor,)
    ) == ([None], [None])  # no gradient: nothing to update, the plan holds
    with pytest.raises(ValueError, match="a plan of 2 entries for 1 params"):
        kernels.compile_plan([p], [good, good], (), 0)
    with pytest.raises(ValueError, match="malformed"):
        kernels.compile_plan([p], [good[:5]], (), 0)
    with pytest.raises(ValueError, match="malformed"):
        kernels.compile_plan([p], [({}, p.data_ptr(), p.shape, (p,), (), ())], ("exp_avg",), 1)
    with pytest.raises(TypeError, match="an address must be an int"):
        kernels.compile_plan([p], [({}, "here", p.shape, (), (), ())], (), 0)
    with pytest.raises(ValueError, match="at most 6 state keys"):
        kernels.compile_plan([p], [None], ("a", "b", "c", "d", "e", "f", "g"), 0)
    with pytest.raises(ValueError, match="2 tensor slots among 1 keys"):
        kernels.compile_plan([p], [None], ("a",), 2)
    with pytest.raises(ValueError):
        kernels.gather([p], object(), {}, torch.float32, torch.strided, (torch.Tensor,))


def test_hints_are_only_fetched_never_read() -> None:
    # The plan's hints (where torch keeps each tensor's metadata) are fetched ahead and never dereferenced: stale,
    # null or unmapped addresses change nothing, and a malformed hint list is refused when the plan is compiled.
    params = [torch.nn.Parameter(torch.randn(4)) for _ in range(3)]
    opt, ref = dt.Adam(params, lr=0.1), dt.Adam([torch.nn.Parameter(p.detach().clone()) for p in params], lr=0.1)
    for o in (opt, ref):
        for q in o.param_groups[0]["params"]:
            q.grad = torch.ones(4)
        o.step()
    plan = next(iter(opt._plans.values()))
    garbage = [(0, 8, 2**47 - 64, 2**63 - 1) for _ in params]
    compiled = kernels.compile_plan(plan.params, plan.entries, plan.keys, len(plan.slots), None, garbage)
    plan.compiled = compiled
    for _ in range(3):
        opt.step()
        ref.step()
    assert next(iter(opt._plans.values())).compiled is compiled  # the steps above went through the garbage hints
    assert all(torch.equal(a, b) for a, b in zip(params, ref.param_groups[0]["params"]))
    p = torch.ones(3)
    good = ({}, p.data_ptr(), p.shape, (), (), ())
    with pytest.raises(TypeError, match="one entry per param"):
        kernels.compile_plan([p], [good], (), 0, None, [(), ()])
    with pytest.raises(ValueError, match="a tuple of at most"):
        kernels.compile_plan([p], [good], (), 0, None, [tuple(range(1, 20))])
    with pytest.raises(TypeError, match="an address must be an int"):
        kernels.compile_plan([p], [good], (), 0, None, [("here",)])


def test_a_tensor_torch_will_not_hand_a_data_pointer_for_raises_as_torch_does() -> None:
    # The plan reads addresses with torch's C reader, which reports such a tensor with a C++ exception: it must become
    # torch's Python error, not an abort, and descend writes nothing (torch's own step has advanced its count).
    results = []
    for cls in (torch.optim.Adam, dt.Adam):
        w = torch.nn.Parameter(torch.linspace(-1, 1, 5))
        opt = cls([w], lr=0.1)
        for _ in range(3):
            w.grad = torch.ones(5)
            opt.step()
        torch._C._set_throw_on_mutable_data_ptr(opt.state[w]["exp_avg"])
        before = [w.detach().clone(), opt.state[w]["exp_avg"].clone(), opt.state[w]["step"].clone()]
        with pytest.raises(RuntimeError, match="Cannot access data pointer") as raised:
            opt.step()
        after = [w.detach(), opt.state[w]["exp_avg"], opt.state[w]["step"]]
        if cls is dt.Adam:
            assert all(torch.equal(a, b) for a, b in zip(before, after))
        results.append(str(raised.value))
    assert results[0] == results[1]


@pytest.mark.parametrize("change", [_nothing, _point_state_data_elsewhere, _point_state_at_its_transpose])
def test_without_torchs_reader_the_plan_calls_data_ptr(change: Callable, monkeypatch: pytest.MonkeyPatch) -> None:
    # A torch without the exported reader: the plan asks each tensor's data_ptr(), with the same bits.
    import descend.engine.plan as plan

    monkeypatch.setattr(plan, "_READER", None)
    _same(change, lr=0.01)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the library's file name is Linux's")
def test_torchs_c_functions_for_a_tensors_metadata_are_found_here() -> None:
    """On this torch the plan reads the tensors' metadata with torch's own C functions, confirmed on every tensor."""
    import descend.engine.plan as plan

    assert plan._SHIM is not None and plan._SHIM[0] == object.__basicsize__ and plan._SHIM[7] != 0
    params = [torch.randn(s).requires_grad_() for s in SHAPES]
    opt = dt.Adam(params, lr=0.01)
    for _ in range(3):
        for p in params:
            p.grad = torch.ones_like(p)
        opt.step()
    assert [kernels.plan_uses_shim(p.compiled) for p in opt._plans.values()] == [True]


@pytest.mark.parametrize("offset", [24, 32])
def test_a_shim_offset_that_does_not_hold_is_not_used(offset: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """An offset where the tensor's object does not hold its at::Tensor (another torch's layout): the plan finds
    something other than the tensor's TensorImpl there, goes without the shim, and the bits stay the reference's."""
    import descend.engine.plan as plan

    if plan._SHIM is None:
        pytest.skip("this torch exports no C functions for a tensor's metadata")
    monkeypatch.setattr(plan, "_SHIM", (offset, *plan._SHIM[1:]))
    opt = _same(_point_state_data_elsewhere, lr=0.01)
    assert [kernels.plan_uses_shim(p.compiled) for p in opt._plans.values()] == [False]
    with pytest.raises(ValueError, match="inside the object's header"):
        kernels.compile_plan([], [], (), 0, None, [], (8, *plan._SHIM[1:]))
    with pytest.raises(TypeError, match="a tuple of 7 or 8 ints"):
        kernels.compile_plan([], [], (), 0, None, [], (16, 1))


def test_a_gradient_autograd_hands_over_negated_is_read_with_its_sign(checks: str) -> None:
    """Autograd can give a lazily negated gradient (here the imaginary part of a conjugate, for a 0-d parameter):
    the plan reads it as the reference does, not its memory's other sign."""
    results = []
    for backend in ("auto", "reference"):
        a, b = torch.nn.Parameter(torch.tensor(0.5)), torch.nn.Parameter(torch.tensor(0.25))
        opt = dt.Adam([a, b], lr=0.1, backend=backend)
        for _ in range(6):
            opt.zero_grad()
            (torch.complex(a, b).conj() * torch.tensor(2 + 3j)).real.backward()
            assert b.grad.is_neg() and b.grad.item() == 3.0
            opt.step()
        assert bool(opt._plans) == (backend == "auto")
        results.append((a.detach().clone(), b.detach().clone()))
    (a1, b1), (a2, b2) = results
    assert torch.equal(a1, a2) and torch.equal(b1, b2) and b1.item() < 0.25  # it moved against its gradient


class _NoInPlace(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        name = getattr(func, "__name__", "")
        if name.endswith("_") and not name.startswith("_") and name != "requires_grad_":
            raise RuntimeError(f"_NoInPlace refuses {name}")
        return super().__torch_function__(func, types, args, kwargs or {})


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_a_parameter_given_another_class_is_stepped_as_that_class(backend: str, checks: str) -> None:
    """A parameter whose __class__ is switched to a subclass between steps: its own operations decide (here they
    refuse), on the planned path as on the reference, and nothing is written."""
    w = torch.nn.Parameter(torch.ones(3))
    opt = dt.Adam([w], lr=0.1, backend=backend)
    for _ in range(4):
        w.grad = torch.ones(3)
        opt.step()
    w.__class__ = _NoInPlace
    w.grad = torch.ones(3)
    before = w.detach().as_subclass(torch.Tensor).clone()
    with pytest.raises(RuntimeError, match="_NoInPlace refuses"):
        opt.step()
    assert torch.equal(w.detach().as_subclass(torch.Tensor), before)


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_a_parameter_seen_as_another_dtype_is_refused_with_nothing_changed(backend: str, checks: str) -> None:
    """float16 memory read as bfloat16 through .data (the same address, size and layout): the gradient no longer
    has the parameter's dtype, and both paths refuse the step in the same words."""
    w = torch.nn.Parameter(torch.linspace(-1, 1, 5, dtype=torch.float16))
    opt = dt.Adam([w], lr=0.1, backend=backend)
    for _ in range(4):
        w.grad = torch.full((5,), 0.5, dtype=torch.float16)
        opt.step()
    w.grad = torch.full((5,), 0.5, dtype=torch.float16)
    w.data = w.data.view(torch.bfloat16)  # (torch refuses a float16 gradient assigned after this)
    before = [w.detach().clone(), *(v.clone() for v in opt.state[w].values())]
    with pytest.raises(ValueError, match="gradient of dtype torch.float16 .* parameter of dtype torch.bfloat16"):
        opt.step()
    after = [w.detach(), *opt.state[w].values()]
    assert all(
        torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8)) for a, b in zip(before, after)
    )
