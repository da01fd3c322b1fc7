"""The fused kernels against the reference: for float32 and float64, params and every state slot are bit-identical
to ``reference_update`` run with NumPy, for every algorithm and flag, shape, hyperparameter and step count."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import descend
from descend import kernels
from descend.algorithms import registry
from tests.test_kernels_strategies import NAMES, STRATEGIES, data, make_hp, reference_steps, same_bits

pytestmark = pytest.mark.skipif(not kernels.available()[0], reason=kernels.available()[1])

SMALL_SHAPES = st.lists(
    st.one_of(
        st.tuples(st.integers(0, 40)),
        st.tuples(st.integers(0, 9), st.integers(0, 9)),
        st.tuples(st.integers(0, 70_000)),
        st.just(()),
    ),
    min_size=1,
    max_size=5,
)


def _check_front(name: str, kwargs: dict, dtype: type, shapes: list, steps: int, seed: int, scale: float) -> None:
    """The NumPy front with backend="fused" against reference_update, tensor by tensor."""
    hp = make_hp(name, kwargs)
    rng = np.random.default_rng(seed)
    params = [data(rng, shape, dtype, 1.0) for shape in shapes]
    expected = [p.copy() for p in params]
    grads = [[data(rng, shape, dtype, scale) for shape in shapes] for _ in range(steps)]
    opt = descend.OPTIMIZERS[name](params, backend="fused", **kwargs)
    for step_grads in grads:
        opt.step(step_grads)
    for i, e in enumerate(expected):
        state = reference_steps(name, hp, e, [g[i] for g in grads])
        assert same_bits(params[i], e), f"{name} {kwargs}: param {i} differs after {steps} steps"
        for slot in registry.get(name).slots_for(hp, e.shape):
            assert same_bits(opt.state[i][slot], state[slot]), f"{name} {kwargs}: state {slot!r} of param {i}"
        if "mu_product" in state:
            assert opt.state[i]["mu_product"] == state["mu_product"]


def _front_test(max_examples: int, shapes: st.SearchStrategy) -> object:
    @pytest.mark.parametrize("name", NAMES)
    @settings(max_examples=max_examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        data=st.data(),
        dtype=st.sampled_from([np.float32, np.float64]),
        shapes=shapes,
        steps=st.integers(1, 12),
        seed=st.integers(0, 2**32 - 1),
        scale=st.sampled_from([0.0, 1e-4, 1.0, 1e3]),
    )
    def test(name: str, data: st.DataObject, dtype: type, shapes: list, steps: int, seed: int, scale: float) -> None:
        _check_front(name, data.draw(STRATEGIES[name]), dtype, shapes, steps, seed, scale)

    return test


test_bit_identical = _front_test(25, SMALL_SHAPES)

test_bit_identical_long = pytest.mark.slow(
    _front_test(
        400,
        st.lists(
            st.tuples(st.integers(0, 2_100_000)) | st.tuples(st.integers(0, 300), st.integers(0, 300)),
            max_size=4,
            min_size=1,
        ),
    )
)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bit_identical_over_a_million(name: str, dtype: type) -> None:
    """One tensor over a million elements (many chunks, both threads) next to small and empty ones."""
    kwargs = {
        "adadelta": {},
        "sgd": {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
        "rprop": {"etas": (0.3, 1.5), "step_sizes": (1e-4, 0.5), "maximize": True},
        "sparse_adam": {"lr": 0.01, "maximize": True},  # no weight decay, as torch's
    }.get(name, {"weight_decay": 0.01, "maximize": True})
    _check_front(name, kwargs, dtype, [(1_048_583,), (0,), (3, 5), ()], 3, 7, 1.0)


@pytest.mark.parametrize("isa", kernels._supported_isas())
@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=8, deadline=None)
@given(data=st.data(), dtype=st.sampled_from([np.float32, np.float64]), size=st.integers(0, 3000))
def test_every_instruction_set(isa: str, name: str, data: st.DataObject, dtype: type, size: int) -> None:
    """Each compiled instruction set the CPU supports gives the same bits as the reference."""
    kwargs = data.draw(STRATEGIES[name])
    before = kernels.isa()
    kernels._set_isa(isa)
    try:
        _check_front(name, kwargs, dtype, [(size,), (17,)], 4, size, 1.0)
    finally:
        kernels._set_isa(before)


def test_threads_do_not_change_the_result() -> None:
    """2,000 small tensors with one thread and with the default give the same bits."""
    rng = np.random.default_rng(3)
    base = [rng.standard_normal(1000).astype(np.float32) for _ in range(2000)]
    grads = [rng.standard_normal(1000).astype(np.float32) for _ in range(2000)]
    results = []
    for threads in (1, None):
        kernels.set_num_threads(threads)
        params = [p.copy() for p in base]
        opt = descend.Adam(params, backend="fused", amsgrad=True)
        for _ in range(3):
            opt.step(grads)
        results.append(np.concatenate(params))
    kernels.set_num_threads(None)
    assert same_bits(results[0], results[1])


def test_auto_runs_the_reference_for_non_contiguous_arrays() -> None:
    rng = np.random.default_rng(1)
    big = rng.standard_normal((6, 8))
    strided, flat = big[:, ::2], rng.standard_normal(10)
    expected_strided, expected_flat = strided.copy(), flat.copy()
    opt = descend.Adam([strided, flat], lr=0.1)
    grads = [[rng.standard_normal(strided.shape), rng.standard_normal(10)] for _ in range(3)]
    for g in grads:
        opt.step(g)
    reference_steps("adam", registry.get("adam").make(lr=0.1), expected_strided, [g[0] for g in grads])
    reference_steps("adam", registry.get("adam").make(lr=0.1), expected_flat, [g[1] for g in grads])
    assert same_bits(np.ascontiguousarray(strided), expected_strided)
    assert same_bits(flat, expected_flat)


def test_fused_refuses_non_contiguous_before_changing_anything() -> None:
    big = np.ones((4, 6))
    strided, flat = big[:, ::2], np.ones(5)
    opt = descend.SGD([flat, strided], lr=0.1, momentum=0.9, backend="fused")
    refusal = r"parameter 1 of SGD \(shape \(4, 3\), dtype float64\): the parameter is not C-contiguous"
    with pytest.raises(ValueError, match=refusal):
        opt.step([np.ones(5), np.ones(strided.shape)])
    assert opt.state == {} and np.all(flat == 1.0) and np.all(big == 1.0)


def test_fused_refuses_a_fortran_ordered_state() -> None:
    p = np.zeros((3, 4))
    opt = descend.Adagrad([p], backend="fused")
    opt.step([np.ones((3, 4))])
    opt.state[0]["sum"] = np.asfortranarray(opt.state[0]["sum"])
    with pytest.raises(ValueError, match="state 'sum' is not C-contiguous"):
        opt.step([np.ones((3, 4))])
    assert opt.state[0]["step"] == 1


def test_step_rejects_bad_arguments() -> None:
    p = np.zeros(4, dtype=np.float32)
    s = registry.get("adam").scalars(registry.get("adam").make(), 1)
    with pytest.raises(ValueError, match="no fused kernel for algorithm 'nosuch'"):
        kernels.step("nosuch", s, [p], [p.copy()], {}, dtype="float32")
    with pytest.raises(ValueError, match="no fused kernel for float32 params with bfloat16 state"):
        kernels.step("adam", s, [p], [p.copy()], {}, dtype="float32", state_dtype="bfloat16")
    with pytest.raises(ValueError, match="needs the state slot 'exp_avg_sq'"):
        kernels.step("adam", s, [p], [p.copy()], {"exp_avg": [p.copy()]}, dtype="float32")
    with pytest.raises(TypeError, match="expected 'f'"):
        kernels.step("adam", s, [p], [p.astype(np.float64)], {"exp_avg": [p], "exp_avg_sq": [p]}, dtype="float32")
    with pytest.raises(ValueError, match="has 3 elements, its parameter has 4"):
        kernels.step("adam", s, [p], [p[:3].copy()], {"exp_avg": [p], "exp_avg_sq": [p]}, dtype="float32")
    with pytest.raises(ValueError, match="sizes must be given"):
        a = p.ctypes.data
        kernels.step("adam", s, [a], [a], {"exp_avg": [a], "exp_avg_sq": [a]}, dtype="float32")
    with pytest.raises(ValueError, match="thread count"):
        kernels.set_num_threads(-1)


def test_the_build_follows_the_interface_table() -> None:
    """The compiled module was generated from _layout.py as it is now: every body's values, flags and slots, by name
    and in order. A scalar dropped from or moved within a scalars NamedTuple changes the table and fails here (and
    descend refuses the stale build at import)."""
    from descend.kernels import _fused
    from descend.kernels._layout import interface

    assert dict(_fused.INTERFACE) == interface()
    assert [name for name, _ in _fused.INTERFACE] == list(_fused.ALGORITHMS)


@pytest.mark.parametrize("name", NAMES)
def test_every_scalar_reaches_the_kernel(name: str) -> None:
    """Each field of the algorithm's scalars is a value the kernel reads (every float, in order) or a flag bit, and
    the kernel's slots are the state slots the algorithm keeps with every flag on."""
    from descend.kernels._layout import KERNELS

    layout = KERNELS[name]
    spec = registry.get(name)
    hp = spec.make()
    s = spec.scalars(hp, 1, spec.advance_host(hp, 1, spec.host_slots(hp)), True)
    assert type(s) is layout.scalars
    floats = tuple(f for f in s._fields if isinstance(getattr(s, f), float))
    bools = {f for f in s._fields if isinstance(getattr(s, f), bool)}
    assert layout.values == floats, "every float field, in the NamedTuple's order"
    assert bools <= set(layout.flag_names), "every bool field is a flag bit"
    assert layout.flag_names[0] == "maximize" and set(layout.flag_names) <= set(s._fields)
    assert set(spec.state_slots(hp)) <= set(layout.slot_names)


def test_a_value_moved_in_the_table_changes_the_kernels_bits() -> None:
    """The kernel reads each value by its generated index: feeding the values in another order gives other bits,
    which is what the interface check above guards against."""
    from descend.kernels._layout import KERNELS

    spec = registry.get("adam")
    hp = spec.make(lr=0.1, weight_decay=0.1)
    s = spec.scalars(hp, 3, {}, False)
    good = [np.linspace(-1, 1, 9) for _ in range(3)]
    bad = [a.copy() for a in good]
    g = np.linspace(0.5, -0.5, 9)
    kernels.step("adam", s, [good[0]], [g], {"exp_avg": [good[1]], "exp_avg_sq": [good[2]]}, dtype="float64")
    values = list(KERNELS["adam"].values)
    i, j = values.index("eps"), values.index("neg_step_size")
    swapped = s._replace(eps=s.neg_step_size, neg_step_size=s.eps)
    kernels.step("adam", swapped, [bad[0]], [g], {"exp_avg": [bad[1]], "exp_avg_sq": [bad[2]]}, dtype="float64")
    assert i != j and not same_bits(good[0], bad[0])


def test_without_the_extension_descend_imports_warns_once_and_runs_the_reference() -> None:
    import subprocess
    import sys

    script = (
        "import sys, warnings\n"
        "sys.modules['descend.kernels._fused'] = None  # as if the extension had not been built\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    import numpy as np, descend\n"
        "    from descend import kernels\n"
        "    w = np.zeros(3)\n"
        "    descend.Adam([w], lr=0.1).step([np.array([1.0, -2.0, 0.0])])\n"
        "ours = [str(c.message) for c in caught if 'fused kernels' in str(c.message)]\n"
        "assert len(ours) == 1, ours\n"
        "assert not kernels.available()[0] and 'could not be imported' in kernels.available()[1]\n"
        "assert np.allclose(w, [-0.1, 0.1, 0.0])\n"
        "try:\n"
        "    descend.Adam([w], backend='fused')\n"
        "except ValueError as exc:\n"
        "    assert 'cannot run' in str(exc), exc\n"
        "else:\n"
        "    raise AssertionError('backend=fused was accepted without the extension')\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)


def test_roofline_moves_the_same_bytes_with_trivial_math() -> None:
    rng = np.random.default_rng(5)
    params = [rng.standard_normal(n).astype(np.float32) for n in (0, 5, 70_000)]
    grads = [rng.standard_normal(p.shape).astype(np.float32) for p in params]
    states = [[rng.standard_normal(p.shape).astype(np.float32) for p in params] for _ in range(2)]
    expected = [p + g for p, g in zip(params, grads)], [[s + g for s, g in zip(slot, grads)] for slot in states]
    kernels.roofline(params, grads, states)
    assert all(same_bits(a, b) for a, b in zip(params, expected[0]))
    assert all(same_bits(a, b) for slot, want in zip(states, expected[1]) for a, b in zip(slot, want))
