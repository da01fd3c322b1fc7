"""The NumPy front's contract: shapes and dtypes, param groups, schedules, state_dict, and refusing bad input."""

from __future__ import annotations

import copy
import inspect

import numpy as np
import pytest

import descend
from descend.algorithms import ELEMENTWISE
from tests.shapes import shape_for


def _snapshot(opt):
    return [p.copy() for p in opt.params], copy.deepcopy(opt.state_dict())


def _assert_unchanged(opt, before) -> None:
    params, sd = before
    for p, q in zip(opt.params, params):
        assert p.tobytes() == q.tobytes()
    after = opt.state_dict()
    assert after["param_groups"] == sd["param_groups"]
    assert set(after["state"]) == set(sd["state"])
    for i, entry in sd["state"].items():
        for k, v in entry.items():
            assert np.asarray(after["state"][i][k]).tobytes() == np.asarray(v).tobytes()


@pytest.mark.parametrize("name", list(ELEMENTWISE))  # step(grads); LBFGS takes a closure (tests/test_lbfgs.py)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_any_shape_and_dtype_updates_in_place(name: str, dtype) -> None:
    shapes = [(2, 3, 4), (5,), (), (0, 3)]
    params = [np.ones(shape_for(name, shape), dtype) for shape in shapes]
    ids = [id(p) for p in params]
    opt = descend.OPTIMIZERS[name](params, lr=0.1)
    for _ in range(3):
        opt.step([np.ones_like(p) for p in params])
    assert [id(p) for p in opt.params] == ids
    for p in params:
        assert p.dtype == dtype
        assert np.all(p < 1) or p.size == 0, f"{name} did not move {p}"
    for entry in opt.state.values():
        for v in entry.values():
            if isinstance(v, np.ndarray):
                assert v.dtype == dtype


def test_param_groups_have_their_own_options() -> None:
    a, b = np.zeros(2), np.zeros(2)
    opt = descend.SGD([{"params": [a]}, {"params": [b], "lr": 1.0}], lr=0.1)
    opt.step([np.ones(2), np.ones(2)])
    np.testing.assert_array_equal(a, [-0.1, -0.1])
    np.testing.assert_array_equal(b, [-1.0, -1.0])
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[1]["lr"] == 1.0


def test_changing_lr_between_steps_takes_effect() -> None:
    x = np.zeros(1)
    opt = descend.SGD([x], lr=0.1)
    schedule = descend.schedules.step_decay(0.1, step_size=1, gamma=0.5)
    for step in range(3):
        opt.param_groups[0]["lr"] = schedule(step)
        opt.step([np.ones(1)])
    np.testing.assert_allclose(x, [-(0.1 + 0.05 + 0.025)])


def test_none_gradient_skips_the_parameter() -> None:
    a, b = np.zeros(1), np.zeros(1)
    opt = descend.Adam([a, b], lr=0.1)
    opt.step([np.ones(1), None])
    assert a[0] != 0 and b[0] == 0
    assert 1 not in opt.state


def test_non_contiguous_arrays_work() -> None:
    base = np.zeros((4, 6))
    view = base[:, ::2]
    opt = descend.Adam([view], lr=0.1)
    opt.step([np.ones((4, 3))])
    assert np.all(base[:, ::2] < 0) and np.all(base[:, 1::2] == 0)


def test_signature_mirrors_torch_and_explicit_arguments_beat_the_convention() -> None:
    sig = inspect.signature(descend.Adam)
    assert list(sig.parameters)[:6] == ["params", "lr", "betas", "eps", "weight_decay", "amsgrad"]
    assert sig.parameters["maximize"].kind is inspect.Parameter.KEYWORD_ONLY
    opt = descend.Adam([np.zeros(1)], 0.5, convention="keras")
    assert opt.defaults["lr"] == 0.5 and opt.defaults["eps"] == 1e-7 and opt.defaults["eps_hat"] is True


def test_state_dict_round_trip_continues_identically() -> None:
    rng = np.random.default_rng(0)
    grads = [[rng.standard_normal(3)] for _ in range(10)]
    a, b = np.ones(3), np.ones(3)
    first = descend.NAdam([a], lr=0.1)
    for g in grads[:5]:
        first.step(g)
    saved = first.state_dict()
    b[...] = a
    second = descend.NAdam([b], lr=0.1)
    second.load_state_dict(saved)
    for g in grads[5:]:
        first.step(g)
        second.step(g)
    np.testing.assert_array_equal(a, b)
    assert second.state[0]["step"] == 10


def test_state_dict_is_a_snapshot() -> None:
    x = np.zeros(2)
    opt = descend.Adam([x])
    opt.step([np.ones(2)])
    sd = opt.state_dict()
    opt.step([np.ones(2)])
    assert sd["state"][0]["step"] == 1
    assert not np.array_equal(sd["state"][0]["exp_avg"], opt.state[0]["exp_avg"])


def test_describe_shows_the_current_hyperparameters() -> None:
    opt = descend.Adam([np.zeros(1)], lr=0.02, weight_decay=0.1)
    assert "0.02" in opt.describe() and "L2" in opt.describe()
    opt.param_groups[0]["lr"] = 0.5
    assert "0.5" in opt.describe()
    assert "gain 1" in descend.Momentum([np.zeros(1)]).describe()


# -- bad input: the error names what was wrong, and nothing changes ---------------------------------------------------

BAD_HYPERPARAMETERS = [
    ("adam", {"lr": -1.0}, ValueError, "lr.*-1.0"),
    ("adam", {"lr": float("nan")}, ValueError, "lr"),
    ("adam", {"lr": "0.1"}, TypeError, "lr"),
    ("adam", {"betas": (1.0, 0.999)}, ValueError, "beta parameter at index 0.*1.0"),
    ("adam", {"betas": (0.9, -0.1)}, ValueError, "index 1"),
    ("adam", {"betas": 0.9}, TypeError, "betas"),
    ("adam", {"eps": -1e-8}, ValueError, "eps"),
    ("adam", {"weight_decay": -0.1}, ValueError, "weight_decay"),
    ("adam", {"amsgrad": 1}, TypeError, "amsgrad"),
    ("adam", {"amsgrad_max": "max"}, ValueError, "amsgrad_max.*'raw', 'corrected'"),
    ("adam", {"amsgrad": True, "amsgrad_max": "corrected", "eps_hat": True}, ValueError, "eps_hat"),
    ("adam", {"eps_root": -1.0}, ValueError, "eps_root"),
    ("adam", {"momentum": 0.9}, TypeError, "momentum"),
    ("sgd", {"momentum": -0.5}, ValueError, "momentum"),
    ("sgd", {"nesterov": True}, ValueError, "Nesterov.*momentum"),
    ("sgd", {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, ValueError, "dampening"),
    ("momentum", {"beta": 1.0}, ValueError, "beta"),
    ("rmsprop", {"alpha": 1.5}, ValueError, "alpha"),
    ("rmsprop", {"momentum": -1}, ValueError, "momentum"),
    ("rmsprop", {"centered": "yes"}, TypeError, "centered"),
    ("adagrad", {"lr_decay": -1}, ValueError, "lr_decay"),
    ("adagrad", {"initial_accumulator_value": -0.1}, ValueError, "initial_accumulator_value"),
    ("adadelta", {"rho": 1.1}, ValueError, "rho"),
    ("adamax", {"eps_in_max": None}, TypeError, "eps_in_max"),
    ("nadam", {"momentum_decay": -1}, ValueError, "momentum_decay"),
    ("radam", {"decoupled_weight_decay": "no"}, TypeError, "decoupled_weight_decay"),
]


@pytest.mark.parametrize(("name", "kwargs", "error", "match"), BAD_HYPERPARAMETERS)
def test_bad_hyperparameters_are_refused(name, kwargs, error, match) -> None:
    x = np.zeros(2)
    with pytest.raises(error, match=match):
        descend.OPTIMIZERS[name]([x], **kwargs)
    assert np.all(x == 0)


def test_bad_convention_and_backend() -> None:
    with pytest.raises(ValueError, match="Unknown convention 'tf'"):
        descend.Adam([np.zeros(1)], convention="tf")
    with pytest.raises(ValueError, match="Invalid backend 'gpu'"):
        descend.Adam([np.zeros(1)], backend="gpu")


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        (np.zeros(3), TypeError, "single ndarray.*wrap it"),
        ([], ValueError, "empty parameter list"),
        ([np.zeros(3, dtype=np.int64)], TypeError, "dtype int64"),
        ([np.zeros(3, dtype=np.complex128)], TypeError, "complex128"),
        ([[1.0, 2.0]], TypeError, "must be a NumPy array"),
        ("w", TypeError, "params"),
        (None, TypeError, "params"),
    ],
)
def test_bad_params_are_refused(params, error, match) -> None:
    with pytest.raises(error, match=match):
        descend.Adam(params)


def test_the_same_array_twice_is_refused() -> None:
    w = np.zeros(3)
    with pytest.raises(ValueError, match="more than once"):
        descend.Adam([w, w])
    with pytest.raises(ValueError, match="more than once"):
        descend.Adam([{"params": [w]}, {"params": [w]}])


def test_read_only_arrays_are_refused() -> None:
    w = np.zeros(3)
    w.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        descend.SGD([w])


def _stepped_adam():
    a, b = np.ones(3), np.ones((2, 2), dtype=np.float32)
    opt = descend.Adam([a, b], lr=0.1, amsgrad=True)
    opt.step([np.ones(3), np.ones((2, 2), np.float32)])
    return opt


@pytest.mark.parametrize(
    ("grads", "error", "match"),
    [
        ([np.ones(3)], ValueError, "got 1 gradients for 2 parameters"),
        ([np.ones(3), np.ones(4, np.float32)], ValueError, r"grads\[1\] has shape \(4,\)"),
        ([np.ones(3), np.ones((2, 2))], TypeError, r"grads\[1\] has dtype float64"),
        ([np.ones(3), [[1.0, 1.0], [1.0, 1.0]]], TypeError, r"grads\[1\] must be a NumPy array"),
        (np.ones(3), TypeError, "single ndarray"),
        ("grads", TypeError, "grads must be a list"),
    ],
)
def test_bad_gradients_change_nothing(grads, error, match) -> None:
    opt = _stepped_adam()
    before = _snapshot(opt)
    with pytest.raises(error, match=match):
        opt.step(grads)
    _assert_unchanged(opt, before)


def test_a_bad_lr_set_between_steps_changes_nothing() -> None:
    opt = _stepped_adam()
    before = _snapshot(opt)
    opt.param_groups[0]["lr"] = -0.1
    with pytest.raises(ValueError, match="lr"):
        opt.step([np.ones(3), np.ones((2, 2), np.float32)])
    opt.param_groups[0]["lr"] = 0.1
    _assert_unchanged(opt, before)


def test_state_dict_from_another_algorithm_is_refused() -> None:
    other = descend.RMSprop([np.ones(3), np.ones((2, 2), np.float32)])
    other.step([np.ones(3), np.ones((2, 2), np.float32)])
    opt = _stepped_adam()
    before = _snapshot(opt)
    with pytest.raises(ValueError, match="not a Adam state_dict|Adam with these settings keeps"):
        opt.load_state_dict(other.state_dict())
    _assert_unchanged(opt, before)


def test_state_dict_with_other_shapes_is_refused() -> None:
    opt = _stepped_adam()
    sd = opt.state_dict()
    sd["state"][0]["exp_avg"] = np.zeros(4)
    before = _snapshot(opt)
    with pytest.raises(ValueError, match=r"exp_avg.*shape \(4,\)"):
        opt.load_state_dict(sd)
    _assert_unchanged(opt, before)


def test_state_dict_with_other_group_sizes_is_refused() -> None:
    opt = _stepped_adam()
    sd = opt.state_dict()
    sd["param_groups"][0]["params"] = [0]
    with pytest.raises(ValueError, match="has 1 params"):
        opt.load_state_dict(sd)


def test_numpy_scalar_gradients_for_0d_parameters() -> None:
    b = np.zeros(())
    opt = descend.SGD([b], lr=0.5)
    opt.step([np.float64(2.0)])  # what arithmetic on 0-d arrays returns
    assert b.shape == () and float(b) == -1.0


def test_hyperparameters_are_validated_again_whenever_a_group_value_changes(monkeypatch) -> None:
    calls = []
    spec = descend.Adam.spec
    original = spec.hyperparams.from_group.__func__

    def counting(cls, group):
        calls.append(dict(group))
        return original(cls, group)

    monkeypatch.setattr(spec.hyperparams, "from_group", classmethod(counting))
    x = np.zeros(2)
    opt = descend.Adam([x], lr=0.1)
    calls.clear()
    for _ in range(3):
        opt.step([np.ones(2)])
    assert len(calls) == 1  # unchanged values are validated once
    opt.param_groups[0]["lr"] = True  # equal to 1, but not a number descend accepts
    with pytest.raises(TypeError, match="lr"):
        opt.step([np.ones(2)])
    opt.param_groups[0]["betas"] = (0.9, np.float64(0.999))  # a NumPy scalar is validated every time
    opt.param_groups[0]["lr"] = 0.1
    opt.step([np.ones(2)])
    opt.step([np.ones(2)])
    assert len(calls) == 4
