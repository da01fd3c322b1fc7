"""descend.save / descend.load: one .npz, no pickle, atomic, exact resume, refusing files that do not fit."""

from __future__ import annotations

import os
import stat
import zipfile

import numpy as np
import pytest

import descend
from descend.algorithms import ELEMENTWISE
from tests.shapes import shape_for


def _problem(name: str = "nadam"):
    w, b = np.ones((3, 2)), np.zeros(shape_for(name, ()))  # a 0-d array, or for Muon a matrix
    return [w, b], descend.OPTIMIZERS[name]([w, b], lr=0.05)


def _grads(step: int, params):
    rng = np.random.default_rng(step)
    return [np.asarray(p - 0.5 + rng.standard_normal(p.shape), dtype=p.dtype) for p in params]


@pytest.mark.parametrize("name", list(ELEMENTWISE))  # descend.save refuses LBFGS (tests/test_lbfgs.py)
def test_resume_is_bit_exact(tmp_path, name: str) -> None:
    params, opt = _problem(name)
    for step in range(5):
        opt.step(_grads(step, params))
    descend.save(tmp_path / "ckpt.npz", opt, step=5, note="mid-run")
    for step in range(5, 10):
        opt.step(_grads(step, params))
    expected = [p.copy() for p in params]

    fresh_params, fresh = _problem(name)
    extra = descend.load(tmp_path / "ckpt.npz", fresh)
    assert extra == {"step": 5, "note": "mid-run"}
    for step in range(extra["step"], 10):
        fresh.step(_grads(step, fresh_params))
    for p, q in zip(fresh_params, expected):
        assert p.tobytes() == q.tobytes()


def test_file_loads_without_pickle(tmp_path) -> None:
    params, opt = _problem()
    opt.step(_grads(0, params))
    path = descend.save(tmp_path / "c.npz", opt)
    with np.load(path, allow_pickle=False) as data:
        assert "meta" in data.files and "param/0" in data.files and "state/0/exp_avg" in data.files


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch) -> None:
    params, opt = _problem()
    path = descend.save(tmp_path / "c.npz", opt, step=1)
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    opt.step(_grads(0, params))
    with pytest.raises(OSError, match="disk full"):
        descend.save(path, opt, step=2)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["c.npz"]  # no temporary file left behind


def test_extra_must_be_json(tmp_path) -> None:
    _, opt = _problem()
    with pytest.raises(TypeError, match="JSON"):
        descend.save(tmp_path / "c.npz", opt, bad=object())
    assert not (tmp_path / "c.npz").exists()


def _assert_untouched(params, opt, before):
    for p, q in zip(params, before[0]):
        assert p.tobytes() == q.tobytes()
    assert opt.state_dict()["state"].keys() == before[1].keys()


@pytest.mark.parametrize(
    ("make_other", "match"),
    [
        (lambda: _problem("adam")[1], "holds a 'adam' checkpoint"),
        (lambda: descend.NAdam([np.ones((3, 2))], lr=0.05), "holds 1 parameters; the optimizer has 2"),
        (lambda: descend.NAdam([np.ones((2, 3)), np.zeros(())]), r"shape \(2, 3\)"),
        (lambda: descend.NAdam([np.ones((3, 2), np.float32), np.zeros((), np.float32)]), "dtype float32"),
    ],
)
def test_a_checkpoint_that_does_not_fit_is_refused(tmp_path, make_other, match) -> None:
    other = make_other()
    other.step(_grads(0, other.params))
    descend.save(tmp_path / "other.npz", other)
    params, opt = _problem()
    opt.step(_grads(1, params))
    before = ([p.copy() for p in params], opt.state_dict()["state"])
    with pytest.raises(ValueError, match=match):
        descend.load(tmp_path / "other.npz", opt)
    _assert_untouched(params, opt, before)


def test_truncated_and_foreign_files_are_refused(tmp_path) -> None:
    params, opt = _problem()
    path = descend.save(tmp_path / "c.npz", opt)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="not a readable descend checkpoint"):
        descend.load(truncated, opt)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, weights=np.ones(3))
    with pytest.raises(ValueError, match="no 'meta' entry"):
        descend.load(foreign, opt)
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a readable"):
        descend.load(text, opt)
    with zipfile.ZipFile(tmp_path / "pickled.npz", "w") as z:
        z.writestr("meta.npy", b"garbage")
    with pytest.raises(ValueError):
        descend.load(tmp_path / "pickled.npz", opt)
    with pytest.raises(FileNotFoundError):
        descend.load(tmp_path / "missing.npz", opt)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o600])
def test_save_keeps_the_mode_of_the_file_it_replaces(tmp_path, mode: int) -> None:
    _, opt = _problem()
    path = descend.save(tmp_path / "c.npz", opt)
    os.chmod(path, mode)
    descend.save(path, opt)
    assert stat.S_IMODE(os.stat(path).st_mode) == mode


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_a_new_checkpoint_gets_the_mode_the_umask_leaves(tmp_path, umask: int) -> None:
    _, opt = _problem()
    old = os.umask(umask)
    try:
        path = descend.save(tmp_path / "c.npz", opt)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask


def test_save_into_a_missing_folder_names_that_folder(tmp_path) -> None:
    _, opt = _problem()
    with pytest.raises(FileNotFoundError) as caught:
        descend.save(tmp_path / "missing" / "c.npz", opt)
    assert caught.value.filename == str(tmp_path / "missing")
    assert "the folder does not exist" in str(caught.value) and ".tmp" not in str(caught.value)


@pytest.mark.parametrize("content", [b"hello, not a checkpoint", b"\x80\x04K\x05.", b"\x00" * 64])
def test_a_file_that_is_not_npz_gets_our_message(tmp_path, content: bytes) -> None:
    _, opt = _problem()
    path = tmp_path / "c.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError) as caught:
        descend.load(path, opt)
    message = str(caught.value)
    assert "allow_pickle" not in message and "pickle" not in message
    assert f"{path} is not a readable descend checkpoint: it is not a .npz (zip) archive" in message
