"""Low-bit state on the torch front (``state_dtype=torch.bfloat16``, ``"blockwise8"``, ``descend.StateFormat``): the
optimizer equals the reference step by step, the fused and reference backends agree bit for bit, and a state_dict
(or torch.save) resumes bit-exactly, seed and stream position included."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import descend  # noqa: E402
import descend.torch as dt  # noqa: E402
from descend import lowbit as lb  # noqa: E402
from descend.algorithms._spec import cast_scalars  # noqa: E402
from tests.lowbit_runner import bits_equal, raw, slots_of, tensor  # noqa: E402


def _params(dtype: torch.dtype = torch.float32, sizes: tuple = ((600, 7), (300,), (5,))) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    return [torch.randn(s, generator=gen).to(dtype).requires_grad_() for s in sizes]


def _grads(params: list[torch.Tensor], step: int) -> None:
    gen = torch.Generator().manual_seed(100 + step)
    for p in params:
        p.grad = (torch.randn(p.shape, generator=gen) * 1e-2).to(p.dtype)


def _expected(name: str, kwargs: dict, params: list[torch.Tensor], fmt: lb.StateFormat, steps: int) -> tuple:
    """The reference: descend.lowbit.update with the algorithm's reference_update, parameter by parameter."""
    opt = dt.OPTIMIZERS[name]([torch.zeros(1)], **kwargs)
    spec = opt.spec
    hp = spec.hyperparams.from_group(opt.param_groups[0])
    pdtype = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[params[0].dtype]
    from tests.lowbit_runner import fresh_state

    current = [raw(p.detach().clone()).reshape(-1).copy() for p in params]
    states = [{k: raw(v).copy() for k, v in fresh_state(name, hp, p.numel(), fmt, pdtype).items()} for p in params]
    host = spec.host_slots(hp)  # Schedule-Free's lr_max and weight_sum: float64, as the torch front keeps them
    for step in range(1, steps + 1):
        grads = [p.clone() for p in params]
        _grads(grads, step)
        before, host = host, spec.advance_host(hp, step, host) if host else {}
        seen = before if spec.host_for_scalars == "before" else host
        s32 = cast_scalars(spec.scalars(hp, step if spec.has_step else 0, seen, step == 1), np.float32)

        def rule(p: np.ndarray, g: np.ndarray, st: dict, s32: object = s32) -> None:
            spec.reference_update(np, p, g, st, s32)

        for i, g in enumerate(grads):
            with np.errstate(all="ignore"):
                current[i], states[i] = lb.update(
                    rule,
                    current[i],
                    raw(g.grad).reshape(-1),
                    states[i],
                    fmt,
                    param_dtype=pdtype,
                    slots=slots_of(name, hp),
                    key=(step, i),
                )
    return current, states


@pytest.mark.parametrize(
    ("name", "kwargs", "dtype", "state_dtype"),
    [
        ("adam", {"lr": 1e-2}, torch.float32, torch.bfloat16),
        ("adamw", {"lr": 1e-2, "amsgrad": True}, torch.float32, "blockwise8"),
        ("adamw", {"lr": 1e-2}, torch.bfloat16, lb.StateFormat("bfloat16", params="kahan", seed=9)),
        ("adam", {"lr": 1e-2}, torch.bfloat16, lb.StateFormat("blockwise8", params="stochastic")),
        ("sgd", {"lr": 0.1, "momentum": 0.9}, torch.float32, lb.StateFormat("bfloat16", stochastic_rounding=False)),
        ("rmsprop", {"lr": 1e-3, "centered": True}, torch.float32, "blockwise8"),
        ("adamw_schedulefree", {"lr": 1e-2}, torch.float32, "blockwise8"),
        ("lion", {"lr": 1e-3}, torch.float32, torch.bfloat16),
        ("rprop", {}, torch.float32, "blockwise8"),
    ],
)
@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_the_optimizer_follows_the_reference(
    name: str, kwargs: dict, dtype: torch.dtype, state_dtype: object, backend: str
) -> None:
    params = _params(dtype)
    initial = [p.detach().clone() for p in params]
    opt = dt.OPTIMIZERS[name](params, backend=backend, state_dtype=state_dtype, **kwargs)
    fmt = opt.state_dtype
    assert isinstance(fmt, lb.StateFormat)
    for step in range(1, 5):
        _grads(params, step)
        opt.step()
    expected, states = _expected(name, kwargs, initial, fmt, 4)
    for i, p in enumerate(params):
        assert bits_equal(p.detach().reshape(-1), tensor(expected[i], p.dtype)), f"param {i}"
        for key, value in states[i].items():
            ours = opt.state[p][key]
            assert bits_equal(ours.reshape(-1), tensor(value, ours.dtype)), f"state {key!r} of param {i}"
        assert float(opt.state[p]["step"]) == 4.0  # the stream's position, for SGD too


def _train(opt: torch.optim.Optimizer, params: list[torch.Tensor], steps: range) -> None:
    for step in steps:
        _grads(params, step)
        opt.step()


@pytest.mark.parametrize("state_dtype", [torch.bfloat16, "blockwise8", lb.StateFormat("bfloat16", params="kahan")])
def test_a_state_dict_resumes_bit_exactly(state_dtype: object) -> None:
    dtype = torch.bfloat16 if isinstance(state_dtype, lb.StateFormat) else torch.float32
    params = _params(dtype)
    straight = [p.detach().clone().requires_grad_() for p in params]
    reference = dt.AdamW(straight, lr=1e-2, state_dtype=state_dtype)
    _train(reference, straight, range(1, 7))

    first = [p.detach().clone().requires_grad_() for p in params]
    opt = dt.AdamW(first, lr=1e-2, state_dtype=state_dtype)
    _train(opt, first, range(1, 4))
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed = [p.detach().clone().requires_grad_() for p in first]
    other_seed = lb.StateFormat(**{**lb.format_record(opt.state_dtype), "seed": 12345})
    again = dt.AdamW(resumed, lr=1e-2, state_dtype=other_seed)
    again.load_state_dict(saved)
    assert again.state_dtype == opt.state_dtype  # the saved seed goes on
    _train(again, resumed, range(4, 7))
    for a, b in zip(straight, resumed):
        assert bits_equal(a.detach(), b.detach())
        assert set(reference.state[a]) == set(again.state[b])
        for key, value in reference.state[a].items():
            assert bits_equal(value, again.state[b][key]), key


def test_float32_state_loads_into_a_low_bit_optimizer_converted() -> None:
    params = _params()
    full = dt.Adam(params, lr=1e-2)
    _train(full, params, range(1, 3))
    low = dt.Adam(params, lr=1e-2, state_dtype="blockwise8")
    low.load_state_dict(copy.deepcopy(full.state_dict()))
    for p in params:
        codes, scales = low.state[p]["exp_avg_sq"], low.state[p]["exp_avg_sq_scale"]
        assert codes.dtype == torch.uint8 and scales.dtype == torch.float32
        decoded = lb.q8_decode(codes.numpy().reshape(-1), scales.numpy(), nonneg=True)
        ref = full.state[p]["exp_avg_sq"].numpy().reshape(-1)
        finest = np.repeat(scales.numpy(), lb.Q8_BLOCK)[: ref.size] * 2.0**-33  # the smallest step of the map
        assert np.all(np.abs(decoded - ref) <= np.abs(ref) / 16 + finest)
    _train(low, params, range(3, 5))  # it steps from there


def test_a_low_bit_state_dict_does_not_load_into_another_format() -> None:
    params = _params()
    opt = dt.Adam(params, state_dtype=torch.bfloat16)
    _train(opt, params, range(1, 2))
    with pytest.raises(ValueError, match="saved with state_dtype=StateFormat\\(dtype='bfloat16'"):
        dt.Adam(params, state_dtype="blockwise8").load_state_dict(opt.state_dict())
    with pytest.raises(ValueError, match="keeps its state in each parameter's dtype"):
        dt.Adam(params).load_state_dict(opt.state_dict())


def test_float64_params_keep_float64_state() -> None:
    params = [torch.ones(4, requires_grad=True), torch.ones(4, dtype=torch.float64, requires_grad=True)]
    opt = dt.Adam(params, state_dtype=torch.bfloat16)
    _grads(params, 1)
    opt.step()
    assert [opt.state[p]["exp_avg"].dtype for p in params] == [torch.bfloat16, torch.float64]


def test_the_state_takes_the_bytes_the_format_says() -> None:
    params = _params(sizes=((1000, 256),))
    sizes = {}
    for state_dtype in (None, torch.bfloat16, "blockwise8"):
        opt = dt.Adam(params, state_dtype=state_dtype)
        _train(opt, params, range(1, 2))
        sizes[state_dtype] = (
            sum(t.nbytes for t in opt.state[params[0]].values() if isinstance(t, torch.Tensor) and t.dim() > 0)
            / params[0].numel()
        )
    assert sizes == {None: 8.0, torch.bfloat16: 4.0, "blockwise8": 2.0 + 8 / 256}


def test_what_a_format_cannot_do_is_refused() -> None:
    params = _params()
    with pytest.raises(ValueError, match="differentiable=True"):
        opt = dt.Adam(params, state_dtype=torch.bfloat16, differentiable=True)
        _grads(params, 1)
        opt.step()
    with pytest.raises(ValueError, match="state_dtype must be None .* 'blockwise8' or a descend.StateFormat"):
        dt.Adam(params, state_dtype=torch.float16)
    matrix = [torch.ones(4, 4, requires_grad=True)]
    with pytest.raises(ValueError, match="Muon has no fused kernel, which low-bit state runs in: state_dtype='bf"):
        dt.Muon(matrix, state_dtype="bfloat16")
    with pytest.raises(ValueError, match="Muon has no fused kernel, which low-bit state runs in"):
        descend.Muon([np.ones((4, 4), np.float32)], state_dtype="blockwise8")
    with pytest.raises(ValueError, match="MuonWithAdamW keeps no low-bit state .* state_dtype='bfloat16' is not"):
        dt.MuonWithAdamW(matrix, state_dtype=torch.bfloat16)
    with pytest.raises(
        ValueError, match="Adafactor reduces over whole tensors and keeps no low-bit state: state_dtype='b"
    ):
        dt.Adafactor(matrix, state_dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="Adafactor reduces over whole tensors and keeps no low-bit state"):
        descend.Adafactor([np.ones((4, 4), np.float32)], state_dtype="blockwise8")
    assert descend.StateFormat is lb.StateFormat


@pytest.mark.parametrize(
    ("dtype", "state_dtype"),
    [
        (torch.float32, torch.bfloat16),
        (torch.float32, "blockwise8"),
        (torch.bfloat16, lb.StateFormat("bfloat16", params="kahan")),
    ],
    ids=["bfloat16", "blockwise8", "kahan"],
)
def test_the_steady_state_skips_the_general_path_and_gives_the_reference_bits(
    dtype: torch.dtype, state_dtype: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From the second step every tensor is there: the group is one kernel call on addresses checked in one pass,
    with the bits a backend="reference" run (which takes the general path every step) gives, a state tensor swapped
    with ``.data =`` between steps included."""
    from descend.engine import lowbit_step

    calls = []
    general = lowbit_step.prepare
    monkeypatch.setattr(lowbit_step, "prepare", lambda *a: calls.append(1) or general(*a))
    fast, slow = _params(dtype), _params(dtype)
    opt = dt.AdamW(fast, lr=1e-2, amsgrad=True, state_dtype=state_dtype)
    ref = dt.AdamW(slow, lr=1e-2, amsgrad=True, state_dtype=state_dtype, backend="reference")
    for step in range(1, 6):
        _grads(fast, step)
        _grads(slow, step)
        calls.clear()
        opt.step()
        assert len(calls) == (1 if step == 1 else 0), step  # the first step creates the state
        ref.step()
        if step == 2:  # new storage, other values: the next step reads them
            for o, p in ((opt, fast[0]), (ref, slow[0])):
                o.state[p]["exp_avg"].data = o.state[p]["exp_avg"].flip(0).contiguous()
    for i, (a, b) in enumerate(zip(fast, slow)):
        assert bits_equal(a.detach(), b.detach()), i
        for key, value in ref.state[b].items():
            assert bits_equal(opt.state[a][key], value), (i, key)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (lambda a: a.float(), r"'exp_avg' of parameter 0 has shape \(600, 7\), dtype torch.float32, .*keeps uint8"),
        (lambda a: a[:-1].clone(), r"'exp_avg' of parameter 0 has shape \(599, 7\), .*of the parameter's shape"),
        (lambda a: a.t(), r"'exp_avg' of parameter 0 has shape \(7, 600\), .*of the parameter's shape"),
    ],
    ids=["storage", "size", "transposed"],
)
def test_a_state_tensor_changed_between_steps_is_refused_in_the_general_paths_words(bad, match) -> None:
    params = _params()
    opt = dt.Adam(params, lr=1e-2, state_dtype="blockwise8")
    _grads(params, 1)
    opt.step()
    state = opt.state[params[0]]
    state["exp_avg"] = bad(state["exp_avg"])
    before = [p.detach().clone() for p in params]
    _grads(params, 2)
    with pytest.raises(ValueError, match=match):
        opt.step()
    assert all(bits_equal(p.detach(), b) for p, b in zip(params, before))  # nothing moved


@pytest.mark.parametrize("grad", ["the parameter", "transposed", "a view at an offset"], ids=str)
def test_a_gradient_the_steady_call_cannot_take_goes_the_general_way(grad: str) -> None:
    """A gradient that is the parameter's own memory, not contiguous, or a view into a larger buffer: the steady
    call is not taken, or the kernel refuses it before anything runs, or it reads it where it lies; the step gives
    the reference's bits."""
    pairs = [(_params(sizes=((40, 30), (300,))), backend) for backend in ("auto", "reference")]
    opts = [(dt.Adam(ps, lr=1e-2, state_dtype=torch.bfloat16, backend=bk), ps) for ps, bk in pairs]
    for opt, ps in opts:
        _grads(ps, 1)
        opt.step()
        _grads(ps, 2)
        if grad == "the parameter":
            ps[1].grad = ps[1].detach()
        elif grad == "transposed":
            ps[0].grad = ps[0].grad.t().contiguous().t()
        else:
            buffer = torch.zeros(ps[1].numel() + 3)
            buffer[3:].copy_(ps[1].grad)
            ps[1].grad = buffer[3:]
        try:
            opt.step()
        except Exception as exc:  # noqa: BLE001
            opt.error = exc
    (fast_opt, fast), (ref_opt, slow) = opts
    assert type(getattr(fast_opt, "error", None)) is type(getattr(ref_opt, "error", None))
    for a, b in zip(fast, slow):
        assert bits_equal(a.detach(), b.detach())
        for key, value in ref_opt.state[b].items():
            assert bits_equal(fast_opt.state[a][key], value), key


@pytest.mark.parametrize("state_dtype", [torch.bfloat16, "blockwise8"])
def test_a_lazily_negated_gradient_gives_the_bits_of_its_values_on_every_backend(state_dtype: object) -> None:
    """A gradient torch hands over as a negated view (is_neg(): its memory holds the other sign) is read as the
    values it stands for, by the kernel and by the reference alike."""
    results = []
    for backend, resolve in (("auto", True), ("auto", False), ("reference", False)):
        params = _params()
        opt = dt.Adam(params, lr=1e-2, state_dtype=state_dtype, backend=backend)
        for step in range(1, 4):
            _grads(params, step)
            for p in params:
                negated = torch._neg_view(-p.grad)
                assert negated.is_neg()
                p.grad = negated.resolve_neg() if resolve else negated
            opt.step()
        results.append([p.detach().clone() for p in params])
    for other in results[1:]:
        assert all(bits_equal(a, b) for a, b in zip(results[0], other))
