"""Bad input, continued: state dicts and checkpoint files that do not fit are refused and change nothing."""

from __future__ import annotations

import gc
import io
import json
import pickle
import struct
import warnings
import zipfile
from typing import Any

import numpy as np
import pytest

import descend

torch = pytest.importorskip("torch")

from tests.bad_input_helpers import assert_unchanged, numpy_opt, snapshot, torch_opt  # noqa: E402

# -- state dicts that do not fit ---------------------------------------------------------------------------------------


def _np_sd(change: Any) -> Any:
    def make(opt: Any) -> Any:
        sd = opt.state_dict()
        change(sd)
        return sd

    return make


NUMPY_STATE_DICTS = [
    ("not a dict", lambda o: [], ValueError, r"a state_dict must be a dict with 'state' and 'param_groups' keys"),
    ("no state", lambda o: {"param_groups": []}, ValueError, r"must be a dict with 'state' and 'param_groups'"),
    (
        "another algorithm",
        lambda o: numpy_opt("rmsprop").state_dict(),
        ValueError,
        r"param group 0 of the state_dict lacks .*: it is not a Adam state_dict",
    ),
    (
        "two groups",
        _np_sd(lambda sd: sd["param_groups"].append(dict(sd["param_groups"][0]))),
        ValueError,
        r"the state_dict has 2 param groups but the optimizer has 1",
    ),
    (
        "group size",
        _np_sd(lambda sd: sd["param_groups"][0].update(params=[0])),
        ValueError,
        r"param group 0 of the state_dict has 1 params, the optimizer's has 2",
    ),
    (
        "state shape",
        _np_sd(lambda sd: sd["state"][1].update(exp_avg=np.zeros(5))),
        ValueError,
        r"state 'exp_avg' for param 1 has shape \(5,\), the parameter has shape \(4,\)",
    ),
    (
        "missing slot",
        _np_sd(lambda sd: sd["state"][0].pop("exp_avg_sq")),
        ValueError,
        r"state for param 0 has keys \['exp_avg', 'step'\]; Adam with these settings keeps",
    ),
    (
        "unknown param",
        _np_sd(lambda sd: sd["state"].update({9: sd["state"][0]})),
        ValueError,
        r"the state_dict has state for param 9, which none of its groups lists",
    ),
    ("bad lr", _np_sd(lambda sd: sd["param_groups"][0].update(lr=-0.5)), ValueError, r"Invalid lr value: -0.5"),
    (
        "amsgrad slots",
        _np_sd(lambda sd: sd["param_groups"][0].update(amsgrad=True)),
        ValueError,
        r"Adam with these settings keeps \['exp_avg', 'exp_avg_sq', 'max_exp_avg_sq', 'step'\]",
    ),
]

NUMPY_STATE_DICTS_TYPES = [
    (
        "param_groups a string",
        _np_sd(lambda sd: sd.update(param_groups="x")),
        ValueError,
        r"'param_groups' must be a list of dicts, got 'x'",
    ),
    ("state a list", _np_sd(lambda sd: sd.update(state=[])), ValueError, r"'state' must be a dict"),
    ("state entry an int", _np_sd(lambda sd: sd["state"].update({0: 5})), ValueError, r"state for param 0 must be a"),
    (
        "step a string",
        _np_sd(lambda sd: sd["state"][0].update(step="abc")),
        ValueError,
        r"state 'step' for param 0 is 'abc'; it must be a non-negative whole number",
    ),
    (
        "step a fraction",
        _np_sd(lambda sd: sd["state"][0].update(step=1.5)),
        ValueError,
        r"state 'step' for param 0 is 1.5; it must be a non-negative whole number",
    ),
    (
        "complex state",
        _np_sd(lambda sd: sd["state"][0].update(exp_avg=np.ones((2, 3), complex))),
        ValueError,
        r"state 'exp_avg' for param 0 has dtype complex128; it must be real",
    ),
]


@pytest.mark.parametrize(
    ("what", "make", "error", "match"),
    NUMPY_STATE_DICTS + NUMPY_STATE_DICTS_TYPES,
    ids=[c[0] for c in NUMPY_STATE_DICTS] + [c[0] for c in NUMPY_STATE_DICTS_TYPES],
)
def test_numpy_state_dicts_that_do_not_fit(what: str, make: Any, error: type, match: str) -> None:
    _refused_whole(numpy_opt(), make, error, match)


def _refused_whole(opt: Any, make: Any, error: type, match: str) -> None:
    """``opt.load_state_dict(make(opt))`` raises ``error`` matching ``match``, and ``opt`` is left as it was."""
    before = snapshot(opt)
    bad = make(opt)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a silent cast (complex to real) counts as accepting it
        with pytest.raises(error, match=match):
            opt.load_state_dict(bad)
    assert_unchanged(opt, before)


def _t_sd(change: Any) -> Any:
    def make(opt: Any) -> Any:
        sd = opt.state_dict()
        sd = {
            "state": {k: dict(v) for k, v in sd["state"].items()},
            "param_groups": [dict(g) for g in sd["param_groups"]],
        }
        change(sd)
        return sd

    return make


TORCH_STATE_DICTS = [
    ("not a dict", lambda o: [], ValueError, r"a state_dict must be a dict with 'state' and 'param_groups' keys"),
    (
        "another class",
        lambda o: torch_opt("radam").state_dict(),
        ValueError,
        r"param group 0 of the state_dict .*: it was saved by another optimizer class, not Adam",
    ),
    (
        "group size",
        _t_sd(lambda sd: sd["param_groups"][0].update(params=[0])),
        ValueError,
        r"param group 0 of the state_dict has 1 params, this Adam's has 2",
    ),
    (
        "state shape",
        _t_sd(lambda sd: sd["state"][1].update(exp_avg=torch.zeros(5))),
        ValueError,
        r"state 'exp_avg' for param 1 has shape \(5,\), but the parameter has shape \(4,\)",
    ),
    (
        "state not a tensor",
        _t_sd(lambda sd: sd["state"][1].update(exp_avg=np.zeros(4))),
        ValueError,
        r"state 'exp_avg' for param 1 has shape ndarray",
    ),
    (
        "missing slot",
        _t_sd(lambda sd: sd["state"][0].pop("exp_avg_sq")),
        ValueError,
        r"state for param 0 has keys \['exp_avg', 'step'\]; Adam with these settings keeps",
    ),
    (
        "step of two",
        _t_sd(lambda sd: sd["state"][0].update(step=torch.ones(2))),
        ValueError,
        r"state 'step' for param 0 must be a single number, got shape",
    ),
    (
        "bad eps",
        _t_sd(lambda sd: sd["param_groups"][0].update(eps=float("nan"))),
        ValueError,
        r"Invalid eps value: nan",
    ),
    (
        "group not a dict",
        _t_sd(lambda sd: sd["param_groups"].__setitem__(0, 5)),
        ValueError,
        r"a saved param group must be a dict, got int",
    ),
]
TORCH_STATE_DICTS_TYPES = [
    ("state a list", _t_sd(lambda sd: sd.update(state=[])), ValueError, r"'state' must be a dict"),
    (
        "step a string",
        _t_sd(lambda sd: sd["state"][0].update(step="abc")),
        ValueError,
        r"state 'step' for param 0 must be a finite real number, got 'abc'",
    ),
    (
        "complex state",
        _t_sd(lambda sd: sd["state"][0].update(exp_avg=torch.ones(2, 3, dtype=torch.complex128))),
        ValueError,
        r"state 'exp_avg' for param 0 has dtype torch.complex128; it must be a real floating-point tensor",
    ),
]


@pytest.mark.parametrize(
    ("what", "make", "error", "match"),
    TORCH_STATE_DICTS + TORCH_STATE_DICTS_TYPES,
    ids=[c[0] for c in TORCH_STATE_DICTS] + [c[0] for c in TORCH_STATE_DICTS_TYPES],
)
def test_torch_state_dicts_that_do_not_fit(what: str, make: Any, error: type, match: str) -> None:
    _refused_whole(torch_opt(), make, error, match)


# -- checkpoint files --------------------------------------------------------------------------------------------------


def _entries(path: Any) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _rewrite(change: Any) -> Any:
    """A checkpoint of the optimizer under test, its entries changed by ``change(entries, meta)``."""

    def make(tmp_path: Any, opt: Any) -> Any:
        entries = _entries(descend.save(tmp_path / "good.npz", opt, step=2))
        meta = json.loads(str(entries["meta"]))
        change(entries, meta)
        entries["meta"] = np.array(json.dumps(meta))
        np.savez(tmp_path / "bad.npz", **entries)
        return tmp_path / "bad.npz"

    return make


def _truncated(keep: float) -> Any:
    def make(tmp_path: Any, opt: Any) -> Any:
        data = descend.save(tmp_path / "good.npz", opt).read_bytes()
        (tmp_path / "bad.npz").write_bytes(data[: int(len(data) * keep)])
        return tmp_path / "bad.npz"

    return make


def _pickled(tmp_path: Any, opt: Any) -> Any:
    entries = _entries(descend.save(tmp_path / "good.npz", opt))
    entries["param/0"] = np.array([print, "x"], dtype=object)
    np.savez(tmp_path / "bad.npz", **entries)  # np.savez pickles object arrays
    return tmp_path / "bad.npz"


def _npy_file(tmp_path: Any, opt: Any) -> Any:
    with open(tmp_path / "bad.npz", "wb") as f:
        np.save(f, np.ones(3))
    return tmp_path / "bad.npz"


def _torch_file(tmp_path: Any, opt: Any) -> Any:
    torch.save({"opt": opt.state_dict()}, tmp_path / "bad.npz")
    return tmp_path / "bad.npz"


def _other(name: str, **kwargs: Any) -> Any:
    def make(tmp_path: Any, opt: Any) -> Any:
        return descend.save(tmp_path / "bad.npz", numpy_opt(name, **kwargs))

    return make


CHECKPOINTS = [
    ("half the file", _truncated(0.5), r"bad.npz is not a readable descend checkpoint"),
    ("all but the last bytes", _truncated(0.98), r"bad.npz is not a readable descend checkpoint"),
    ("empty file", _truncated(0.0), r"bad.npz is not a readable descend checkpoint"),
    (
        "a pickled object",
        _pickled,
        r"not a readable descend checkpoint: entry .param/0. holds Python objects \(dtype object\)",
    ),
    ("a torch file", _torch_file, r"bad.npz is not a descend checkpoint: it has no 'meta' entry"),
    ("a directory", lambda tmp_path, opt: tmp_path, r"is not a readable descend checkpoint"),
    ("another format", _rewrite(lambda e, m: m.update(format="other")), r"not a descend checkpoint \(format 'other'"),
    ("a later version", _rewrite(lambda e, m: m.update(version=2)), r"is a version 2 checkpoint; this descend reads"),
    ("corrupt meta", _rewrite(lambda e, m: m.clear()), r"is not a descend checkpoint \(format None\)"),
    ("another algorithm", _other("rmsprop"), r"holds a 'rmsprop' checkpoint; it cannot be loaded into Adam"),
    ("an AdamW checkpoint", _other("adamw"), r"holds a 'adamw' checkpoint; it cannot be loaded into Adam"),
    ("a missing parameter", _rewrite(lambda e, m: e.pop("param/1")), r"holds 1 parameters; the optimizer has 2"),
    (
        "a parameter's shape",
        _rewrite(lambda e, m: e.update({"param/0": np.zeros((3, 2))})),
        r"parameter 0 in .* has shape \(3, 2\) and dtype float64; the optimizer's has shape \(2, 3\)",
    ),
    (
        "a parameter's dtype",
        _rewrite(lambda e, m: e.update({"param/1": np.zeros(4)})),
        r"parameter 1 in .* dtype float64; the optimizer's has shape \(4,\) and dtype float32",
    ),
    (
        "a state's shape",
        _rewrite(lambda e, m: e.update({"state/1/exp_avg": np.zeros(3)})),
        r"state 'exp_avg' for param 1 has shape \(3,\), the parameter has shape \(4,\)",
    ),
    ("a bad lr", _rewrite(lambda e, m: m["param_groups"][0].update(lr=-2.0)), r"Invalid lr value: -2.0"),
]
CHECKPOINTS_TYPES = [
    ("meta without algorithm", _rewrite(lambda e, m: m.pop("algorithm")), r"corrupt 'meta' entry: 'algorithm'"),
    (
        "param_groups not a list",
        _rewrite(lambda e, m: m.update(param_groups="x")),
        r"corrupt 'meta' entry: 'param_groups' must be a list",
    ),
    (
        "scalar_state not a dict",
        _rewrite(lambda e, m: m.update(scalar_state=[1])),
        r"corrupt 'meta' entry: 'scalar_state' must be a dict",
    ),
    ("a foreign entry name", _rewrite(lambda e, m: e.update({"param/x": np.zeros(3)})), r"entry 'param/x'"),
    (
        "a complex state",
        _rewrite(lambda e, m: e.update({"state/0/exp_avg": np.ones((2, 3), complex)})),
        r"state 'exp_avg' for param 0 has dtype complex128",
    ),
    ("a .npy file", _npy_file, r"bad.npz is not a readable descend checkpoint: it holds a single array"),
]


@pytest.mark.parametrize(
    ("what", "make", "match"),
    CHECKPOINTS + CHECKPOINTS_TYPES,
    ids=[c[0] for c in CHECKPOINTS] + [c[0] for c in CHECKPOINTS_TYPES],
)
def test_checkpoints_that_do_not_fit(tmp_path: Any, what: str, make: Any, match: str) -> None:
    opt = numpy_opt()
    path = make(tmp_path, numpy_opt(steps=3))
    before = snapshot(opt)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=match):
            descend.load(path, opt)
    assert_unchanged(opt, before)


def test_a_refused_checkpoint_leaves_no_file_open(tmp_path: Any) -> None:
    path = _truncated(0.98)(tmp_path, numpy_opt())
    opt = numpy_opt()

    def attempt() -> bool:
        try:
            descend.load(path, opt)
        except ValueError:
            return True
        return False

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert attempt()
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)], "the file was left open"


def test_save_and_load_refuse_what_is_not_a_numpy_optimizer(tmp_path: Any) -> None:
    with pytest.raises(TypeError, match=r"optimizer must be a descend NumPy optimizer, got Adam"):
        descend.save(tmp_path / "c.npz", torch_opt())
    path = descend.save(tmp_path / "c.npz", numpy_opt())
    with pytest.raises(TypeError, match=r"optimizer must be a descend NumPy optimizer, got dict"):
        descend.load(path, {})
    with pytest.raises(TypeError, match=r"extra values must be JSON-serialisable: .*ndarray"):
        descend.save(tmp_path / "d.npz", numpy_opt(), weights=np.ones(2))
    assert not (tmp_path / "d.npz").exists()


# -- crafted checkpoints: each refused with a ValueError or TypeError that says what is wrong -------------------------


def _raw_meta(text: str) -> Any:
    """A checkpoint whose meta entry is ``text`` as it stands."""

    def make(tmp_path: Any, opt: Any) -> Any:
        entries = _entries(descend.save(tmp_path / "good.npz", opt))
        entries["meta"] = np.array(text)
        np.savez(tmp_path / "bad.npz", **entries)
        return tmp_path / "bad.npz"

    return make


def _bytes(data: bytes) -> Any:
    def make(tmp_path: Any, opt: Any) -> Any:
        (tmp_path / "bad.npz").write_bytes(data)
        return tmp_path / "bad.npz"

    return make


def _members(change: Any) -> Any:
    """A checkpoint rewritten member by member: ``change(name, npy bytes)`` returns a list of (name, bytes)."""

    def make(tmp_path: Any, opt: Any) -> Any:
        good = descend.save(tmp_path / "good.npz", opt)
        with zipfile.ZipFile(good) as z:
            members = [(i.filename, z.read(i)) for i in z.infolist()]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns of a duplicate name
            with zipfile.ZipFile(tmp_path / "bad.npz", "w", zipfile.ZIP_DEFLATED) as z:
                for name, data in members:
                    for new_name, new_data in change(name, data):
                        z.writestr(new_name, new_data)
        return tmp_path / "bad.npz"

    return make


def _npy(array: np.ndarray) -> bytes:
    f = io.BytesIO()
    np.lib.format.write_array(f, array, allow_pickle=False)
    return f.getvalue()


def _header_only(dtype: str, shape: tuple[int, ...], fortran: bool = False) -> bytes:
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, {"descr": dtype, "fortran_order": fortran, "shape": shape})
    return f.getvalue()


def _replace(member: str, data: bytes) -> Any:
    return _members(lambda name, old: [(name, data if name == member else old)])


def _corrupted(member: str) -> Any:
    """A checkpoint with the last stored byte of ``member`` flipped: its CRC-32 no longer matches."""

    def make(tmp_path: Any, opt: Any) -> Any:
        data = bytearray(descend.save(tmp_path / "good.npz", opt).read_bytes())
        with zipfile.ZipFile(tmp_path / "good.npz") as z:
            info = z.getinfo(member)
        name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)
        data[info.header_offset + 30 + name_len + extra_len + info.compress_size - 1] ^= 0xFF
        (tmp_path / "bad.npz").write_bytes(bytes(data))
        return tmp_path / "bad.npz"

    return make


_GROUP = "m['param_groups'][0]"
CRAFTED = [
    ("deeply nested meta", _raw_meta("[" * 100_000 + "]" * 100_000), ValueError, r"JSON is nested too deeply"),
    ("meta a number", _raw_meta("5"), ValueError, r"is not a descend checkpoint \(format None\)"),
    ("meta huge int", _raw_meta("9" * 10_000), ValueError, r"corrupt 'meta' entry: .*digits"),
    ("version true", _rewrite(lambda e, m: m.update(version=True)), ValueError, r"a version True checkpoint"),
    ("algorithm a list", _rewrite(lambda e, m: m.update(algorithm=["adam"])), ValueError, r"'algorithm' must be"),
    ("extra a list", _rewrite(lambda e, m: m.update(extra=[1])), ValueError, r"'extra' must be a dict, got \[1\]"),
    (
        "group params a number",
        _rewrite(lambda e, m: m["param_groups"][0].update(params=5)),
        ValueError,
        r"param group 0's 'params' must be a list of parameter numbers, got 5",
    ),
    (
        "group params nested",
        _rewrite(lambda e, m: m["param_groups"][0].update(params=[[0], [1]])),
        ValueError,
        r"param group 0's 'params' must be a list of parameter numbers, got \[\[0\], \[1\]\]",
    ),
    (
        "group params floats",
        _rewrite(lambda e, m: m["param_groups"][0].update(params=[0.0, 1.0])),
        ValueError,
        r"param group 0's 'params' must be a list of parameter numbers",
    ),
    (
        "group a list",
        _rewrite(lambda e, m: m["param_groups"].__setitem__(0, [1])),
        ValueError,
        r"param group 0 must be a dict, got \[1\]",
    ),
    (
        "hyperparameter a dict",
        _rewrite(lambda e, m: m["param_groups"][0].update(lr={"a": 1})),
        ValueError,
        r"param group 0's 'lr' is \{'a': 1\}; a hyperparameter is a number",
    ),
    ("lr a string", _rewrite(lambda e, m: m["param_groups"][0].update(lr="x")), TypeError, r"lr must be a real number"),
    (
        "betas one number",
        _rewrite(lambda e, m: m["param_groups"][0].update(betas=[0.9])),
        TypeError,
        r"betas must be a pair of numbers",
    ),
    ("group without lr", _rewrite(lambda e, m: m["param_groups"][0].pop("lr")), ValueError, r"lacks lr"),
    (
        "scalar state of a superscript param",
        _rewrite(lambda e, m: m["scalar_state"].update({"\u00b2": {"step": 1}})),
        ValueError,
        r"'scalar_state' must map parameter numbers to dicts, got '\u00b2'",
    ),
    (
        "scalar state a list",
        _rewrite(lambda e, m: m["scalar_state"]["0"].update(step=[1, 2])),
        ValueError,
        r"scalar state 'step' of parameter 0 is \[1, 2\]; it must be a number",
    ),
    (
        "scalar state replaces an array",
        _rewrite(lambda e, m: m["scalar_state"]["0"].update(exp_avg=5)),
        ValueError,
        r"state 'exp_avg' for param 0 has shape \(\), the parameter has shape \(2, 3\)",
    ),
    ("missing state slot", _rewrite(lambda e, m: e.pop("state/0/exp_avg")), ValueError, r"state for param 0 has keys"),
    (
        "state of an unknown param",
        _rewrite(lambda e, m: e.update({"state/7/exp_avg": np.zeros(3)})),
        ValueError,
        r"state for param 7, which none of its groups lists",
    ),
    ("param index with a leading zero", _rewrite(lambda e, m: e.update({"param/01": e["param/1"]})), ValueError, r"01"),
    (
        "huge declared shape",
        _replace("param/0.npy", _header_only("<f8", (10**12,)) + bytes(48)),
        ValueError,
        r"entry 'param/0' declares \d+ bytes, but its header \(float64, shape \(1000000000000,\)\) makes it",
    ),
    (
        "negative shape",
        _replace("param/0.npy", _header_only("<f8", (-1, 3)) + bytes(48)),
        ValueError,
        r"entry 'param/0' has shape \(-1, 3\), with a negative dimension",
    ),
    (
        "object dtype state",
        _replace("state/0/exp_avg.npy", _header_only("|O", (2, 3))),
        ValueError,
        r"entry 'state/0/exp_avg' holds Python objects \(dtype object\)",
    ),
    (
        "structured dtype",
        _replace("param/0.npy", _npy(np.zeros((2, 3), [("a", "<f4"), ("b", "<f4")]))),
        ValueError,
        r"entry 'param/0' has the structured dtype",
    ),
    (
        "subarray dtype",
        _replace("state/1/exp_avg.npy", _header_only("('<f4', (2,))", (4,)) + bytes(32)),
        ValueError,
        r"entry 'state/1/exp_avg' (has the structured dtype|has no readable array header)",
    ),
    (
        "fortran order of another shape",
        _replace("param/0.npy", _npy(np.asfortranarray(np.zeros((3, 2))))),
        ValueError,
        r"parameter 0 in .* has shape \(3, 2\) and dtype float64; the optimizer's has shape \(2, 3\)",
    ),
    (
        "meta of bytes",
        _replace("meta.npy", _npy(np.array(b'{"format": "descend-checkpoint"}'))),
        ValueError,
        r"corrupt 'meta' entry: it must be one text, got dtype \|S\d+",
    ),
    (
        "a broken array header",
        _replace("param/0.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': 5}    "),
        ValueError,
        "header",
    ),
    ("not an array", _replace("param/1.npy", b"hello"), ValueError, r"entry 'param/1' has no readable array header"),
    (
        "a damaged member",
        _corrupted("param/0.npy"),
        ValueError,
        r"entry 'param/0' (cannot be read|has no readable array header) \(Bad CRC-32",
    ),
    (
        "duplicate member names",
        _members(lambda name, data: [(name, data)] * (2 if name == "param/0.npy" else 1)),
        ValueError,
        r"it holds more than one entry named \['param/0.npy'\]",
    ),
    ("a text file", _bytes(b"just some notes\n"), ValueError, r"it is not a \.npz \(zip\) archive"),
    ("a pickle", _bytes(pickle.dumps({"state": {}})), ValueError, r"it is not a \.npz \(zip\) archive"),
    ("an empty zip", _bytes(b"PK\x05\x06" + bytes(18)), ValueError, r"it has no 'meta' entry"),
    ("a zip without its directory", _bytes(b"PK\x03\x04" + bytes(100)), ValueError, r"its zip structure is damaged"),
    ("empty", _bytes(b""), ValueError, r"is not a readable descend checkpoint: the file is empty"),
    ("a folder", lambda tmp_path, opt: tmp_path, ValueError, r"is not a readable descend checkpoint: it is a folder"),
]


@pytest.mark.parametrize(("what", "make", "error", "match"), CRAFTED, ids=[c[0] for c in CRAFTED])
def test_crafted_checkpoints_are_refused_whole(tmp_path: Any, what: str, make: Any, error: type, match: str) -> None:
    opt = numpy_opt()
    path = make(tmp_path, numpy_opt(steps=3))
    before = snapshot(opt)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(error, match=match) as caught:
            descend.load(path, opt)
    assert "allow_pickle=True" not in str(caught.value) and ".tmp" not in str(caught.value)
    assert_unchanged(opt, before)


def test_fortran_order_entries_load_as_their_values(tmp_path: Any) -> None:
    """What np.savez writes for a Fortran-ordered array loads value for value (descend.save writes it for a
    Fortran-ordered parameter)."""
    rng = np.random.default_rng(1)
    params = [np.asfortranarray(rng.standard_normal((3, 5))), rng.standard_normal(2)]
    opt = descend.Adam(params, lr=0.1, backend="reference")
    opt.step([np.asfortranarray(rng.standard_normal((3, 5))), rng.standard_normal(2)])
    path = descend.save(tmp_path / "f.npz", opt)
    with zipfile.ZipFile(path) as z:
        assert b"'fortran_order': True" in z.read("param/0.npy")[:128]
    fresh = descend.Adam([np.zeros((3, 5)), np.zeros(2)], lr=0.1, backend="reference")
    descend.load(path, fresh)
    assert np.array_equal(fresh.params[0], params[0]) and np.array_equal(fresh.params[1], params[1])
    assert np.array_equal(fresh.state[0]["exp_avg"], opt.state[0]["exp_avg"])
