"""Checkpoints of a NumPy optimizer and its parameters in one ``.npz`` file that loads without pickle.

The file holds ``param/<i>`` (each parameter), ``state/<i>/<slot>`` (each state array) and ``meta``, a JSON text with
the algorithm, the param groups, the scalar state (``step``, ``mu_product``) and the caller's ``extra`` values.
Writing goes to a temporary file in the same folder, then a rename, so a crash or a kill never leaves a
half-written checkpoint in place of the previous one; the checkpoint keeps the mode of the file it replaces.

Loading trusts nothing in the file. Every entry's name, array header (dtype, shape, order) and declared size are
checked against the optimizer, and the param groups and state against the algorithm, before any array data is read;
a file that does not fit costs no more memory than the optimizer's own parameters and state, however large its
entries claim to be, and is refused with a ValueError (or the TypeError of a hyperparameter of the wrong type) that
says what is wrong.
"""

from __future__ import annotations

import errno
import json
import os
import re
import reprlib
import stat
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any

import numpy as np

from descend.optim import Optimizer

FORMAT = "descend-checkpoint"
VERSION = 1
MAX_META_BYTES = 1 << 26
"""The most bytes the ``meta`` entry may take (64 MiB: NumPy stores text at 4 bytes a character)."""

_INDEX = re.compile(r"0|[1-9][0-9]{0,17}")
_SLOT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_HEADER_LIMIT = 10_000  # NumPy's own limit on an array header's length
_READ_CHUNK = 1 << 22
# What reading a zip member may raise when the file is damaged or hostile.
_READ_ERRORS = (
    OSError,
    EOFError,
    ValueError,
    TypeError,
    SyntaxError,
    RecursionError,
    OverflowError,
    RuntimeError,  # an encrypted member
    NotImplementedError,  # an unknown compression method
    zipfile.BadZipFile,
    zlib.error,
)


def _check_optimizer(optimizer: Any) -> None:
    if isinstance(optimizer, Optimizer):
        return
    spec = getattr(optimizer, "spec", None)
    if spec is not None and not getattr(spec, "elementwise", True):
        raise TypeError(
            f"a checkpoint holds an elementwise optimizer's state arrays; {spec.title} keeps lists of history vectors "
            "and numbers, which it has no place for: save its state_dict() with pickle instead"
        )
    raise TypeError(f"optimizer must be a descend NumPy optimizer, got {type(optimizer).__name__}")


def save(path: str | os.PathLike[str], optimizer: Optimizer, **extra: Any) -> Path:
    """Write the optimizer's parameters and state to ``path`` atomically.

    A file that ``path`` replaces keeps its permission bits; a new file gets the ones the umask leaves (``0o644``
    under the usual umask of ``0o022``), as ``open`` would give it.

    Args:
        path: the file to write (any name; ``.npz`` is customary).
        optimizer: a NumPy optimizer (``descend.Adam``, ...).
        **extra: JSON-serialisable values to keep with the checkpoint (for example ``step=137``).

    Returns:
        The path written.

    Raises:
        TypeError: ``optimizer`` is not a NumPy optimizer, or an extra value is not JSON-serialisable.
        ValueError: the param groups and extra values take more than ``MAX_META_BYTES`` as stored.
        FileNotFoundError: the folder of ``path`` does not exist (the error names that folder).
    """
    _check_optimizer(optimizer)
    try:
        extra_json = json.dumps(extra)
    except TypeError as exc:
        raise TypeError(f"extra values must be JSON-serialisable: {exc}") from None
    with optimizer._engine.lock:  # a step another thread runs does not land between the parameters and the state
        sd = optimizer.state_dict()
        arrays: dict[str, np.ndarray] = {f"param/{i}": p.copy(order="K") for i, p in enumerate(optimizer.params)}
    scalars: dict[str, dict[str, float | int]] = {}
    for i, entry in sd["state"].items():
        for k, v in entry.items():
            if isinstance(v, np.ndarray):
                arrays[f"state/{i}/{k}"] = v
            else:
                scalars.setdefault(str(i), {})[k] = v
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "algorithm": optimizer.algorithm,
        "param_groups": sd["param_groups"],
        "scalar_state": scalars,
        "extra": json.loads(extra_json),
    }
    arrays["meta"] = np.array(json.dumps(meta))
    if arrays["meta"].nbytes > MAX_META_BYTES:
        raise ValueError(
            f"the param groups and extra values take {arrays['meta'].nbytes} bytes as stored; a checkpoint's meta "
            f"entry may take at most {MAX_META_BYTES} (MAX_META_BYTES), so keep large values out of extra"
        )
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    fd, tmp = _create_temporary(target, directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target


def _create_temporary(target: Path, directory: Path) -> tuple[int, str]:
    """Open a new ``.<name>.<random>.tmp`` next to ``target``, with the mode the checkpoint should end with."""
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        mode = None  # a new file: os.open applies the umask to 0o666, as open() does
    for _ in range(100):
        tmp = os.path.join(directory, f".{target.name}.{os.urandom(6).hex()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            reason = "the folder does not exist" if exc.errno == errno.ENOENT else exc.strerror
            raise type(exc)(exc.errno, f"cannot save {target}: {reason}", str(directory)) from None
        if mode is not None:
            try:
                os.fchmod(fd, mode)
            except BaseException:
                os.close(fd)
                os.unlink(tmp)
                raise
        return fd, tmp
    raise FileExistsError(errno.EEXIST, f"cannot save {target}: no free temporary name", str(directory))


# -- loading -----------------------------------------------------------------------------------------------------------


class _Entry:
    """One array of the archive as its header describes it, before its data is read."""

    def __init__(self, info: zipfile.ZipInfo, shape: tuple[int, ...], fortran: bool, dtype: np.dtype) -> None:
        self.info, self.shape, self.fortran, self.dtype = info, shape, fortran, dtype

    def placeholder(self) -> np.ndarray:
        """An array of the entry's dtype and shape that takes no memory, for checking before reading."""
        return np.broadcast_to(np.zeros((), self.dtype), self.shape)


def _unreadable(path: Path, why: str) -> ValueError:
    return ValueError(f"{path} is not a readable descend checkpoint: {why}")


def _open_archive(path: Path, f: IO[bytes]) -> zipfile.ZipFile:
    head = f.read(8)
    if not head:
        raise _unreadable(path, "the file is empty")
    if head.startswith(b"\x93NUMPY"):
        raise _unreadable(path, "it holds a single array, not a .npz archive")
    if not head.startswith(b"PK"):
        raise _unreadable(
            path,
            f"it is not a .npz (zip) archive (it starts with {head!r}); descend.load reads what descend.save writes",
        )
    f.seek(0)
    try:
        return zipfile.ZipFile(f)
    except _READ_ERRORS as exc:
        raise _unreadable(path, f"its zip structure is damaged ({exc})") from None


def _header(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo, key: str) -> _Entry:
    """Read and check one member's array header; nothing past it is decompressed."""
    try:
        with archive.open(info) as stream:
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream, max_header_size=_HEADER_LIMIT)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream, max_header_size=_HEADER_LIMIT)
            else:
                raise ValueError(f"array format version {version[0]}.{version[1]}; descend reads 1.0 and 2.0")
            start = stream.tell()
    except _READ_ERRORS as exc:
        raise _unreadable(path, f"entry {key!r} has no readable array header ({exc})") from None
    if any(d < 0 for d in shape):
        raise _unreadable(path, f"entry {key!r} has shape {shape}, with a negative dimension")
    if dtype.hasobject:
        raise _unreadable(
            path,
            f"entry {key!r} holds Python objects (dtype {dtype}). Object arrays cannot be loaded when "
            f"allow_pickle=False: descend.load never runs pickled code",
        )
    if dtype.names is not None or dtype.subdtype is not None:
        raise _unreadable(path, f"entry {key!r} has the structured dtype {dtype}; a checkpoint holds plain numbers")
    nbytes = dtype.itemsize
    for d in shape:
        nbytes *= d
    if info.file_size != start + nbytes:
        raise _unreadable(
            path,
            f"entry {key!r} declares {info.file_size} bytes, but its header ({dtype}, shape {shape}) makes it "
            f"{start + nbytes}",
        )
    return _Entry(info, shape, fortran, dtype)


def _data(path: Path, archive: zipfile.ZipFile, entry: _Entry, key: str) -> np.ndarray:
    """The array of a checked entry, read into memory of exactly the size its header gives."""
    count = 1
    for d in entry.shape:
        count *= d
    flat = np.empty(count, entry.dtype)
    raw = flat.view(np.uint8) if flat.dtype.itemsize else np.empty(0, np.uint8)
    try:
        with archive.open(entry.info) as stream:
            stream.seek(entry.info.file_size - raw.size)
            pos = 0
            while pos < raw.size:
                chunk = stream.read(min(_READ_CHUNK, raw.size - pos))
                if not chunk:
                    raise EOFError(f"the data ends after {pos} of {raw.size} bytes")
                raw[pos : pos + len(chunk)] = np.frombuffer(chunk, np.uint8)
                pos += len(chunk)
            if stream.read(1):
                raise ValueError("it holds more data than its header says")
    except _READ_ERRORS as exc:
        raise _unreadable(path, f"entry {key!r} cannot be read ({exc})") from None
    if entry.fortran:
        return flat.reshape(entry.shape[::-1]).transpose()
    return flat.reshape(entry.shape)


def _entries(path: Path, archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """The archive's members by entry name (``param/0``, ``meta``...), refusing duplicates and foreign names."""
    infos = archive.infolist()
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise _unreadable(path, f"it holds more than one entry named {reprlib.repr(twice)}")
    if "meta.npy" not in names:
        raise ValueError(f"{path} is not a descend checkpoint: it has no 'meta' entry")
    entries = {}
    for info in infos:
        name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
        parts = name.split("/")
        known = (
            name == "meta"
            or (len(parts) == 2 and parts[0] == "param" and _INDEX.fullmatch(parts[1]))
            or (len(parts) == 3 and parts[0] == "state" and _INDEX.fullmatch(parts[1]) and _SLOT.fullmatch(parts[2]))
        )
        if not (known and info.filename.endswith(".npy")):
            raise ValueError(
                f"{path} has an entry {reprlib.repr(name)}; a descend checkpoint holds only param/<i>, "
                f"state/<i>/<slot> and meta"
            )
        entries[name] = info
    return entries


def _meta(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> dict[str, Any]:
    """The checked ``meta`` entry."""
    if info.file_size > MAX_META_BYTES + _HEADER_LIMIT:
        raise _unreadable(path, f"its 'meta' entry declares {info.file_size} bytes; at most {MAX_META_BYTES}")
    entry = _header(path, archive, info, "meta")
    if entry.dtype.kind != "U" or entry.shape != ():
        raise ValueError(
            f"{path} has a corrupt 'meta' entry: it must be one text, got dtype {entry.dtype} and shape {entry.shape}"
        )
    text = str(_data(path, archive, entry, "meta")[()])
    try:
        meta = json.loads(text)
    except RecursionError:
        raise ValueError(f"{path} has a corrupt 'meta' entry: its JSON is nested too deeply to read") from None
    except ValueError as exc:
        raise ValueError(f"{path} has a corrupt 'meta' entry: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(
            f"{path} is not a descend checkpoint "
            f"(format {reprlib.repr(meta.get('format')) if isinstance(meta, dict) else None})"
        )
    if type(meta.get("version")) is not int or meta["version"] != VERSION:
        raise ValueError(
            f"{path} is a version {reprlib.repr(meta.get('version'))} checkpoint; this descend reads version {VERSION}"
        )
    for key, kind in {"algorithm": str, "param_groups": list, "scalar_state": dict, "extra": dict}.items():
        if not isinstance(meta.get(key), kind):
            raise ValueError(
                f"{path} has a corrupt 'meta' entry: {key!r} must be a {kind.__name__}, "
                f"got {reprlib.repr(meta.get(key))}"
            )
    for g, group in enumerate(meta["param_groups"]):
        if not isinstance(group, dict):
            raise ValueError(f"{path} has a corrupt 'meta' entry: param group {g} must be a dict, got {group!r}")
        indices = group.get("params")
        if not isinstance(indices, list) or not all(type(i) is int for i in indices):
            raise ValueError(
                f"{path} has a corrupt 'meta' entry: param group {g}'s 'params' must be a list of parameter "
                f"numbers, got {reprlib.repr(indices)}"
            )
        for k, v in group.items():
            listed = isinstance(v, list) and all(_scalar(x) for x in v)
            recorded = k == "state_format" and isinstance(v, dict) and all(_scalar(x) for x in v.values())
            if k != "params" and not (_scalar(v) or listed or recorded):
                raise ValueError(
                    f"{path} has a corrupt 'meta' entry: param group {g}'s {k!r} is {reprlib.repr(v)}; a "
                    f"hyperparameter is a number, a text, true, false, null or a list of those"
                )
    for i, entry in meta["scalar_state"].items():
        if not _INDEX.fullmatch(i) or not isinstance(entry, dict):
            raise ValueError(
                f"{path} has a corrupt 'meta' entry: 'scalar_state' must map parameter numbers to dicts, "
                f"got {reprlib.repr(i)}: {reprlib.repr(entry)}"
            )
        for k, v in entry.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(
                    f"{path} has a corrupt 'meta' entry: scalar state {k!r} of parameter {i} is {reprlib.repr(v)}; "
                    f"it must be a number"
                )
    return meta


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _state_of(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> dict[str, Any]:
    """The state_dict the checkpoint holds, from its arrays (or their placeholders) and its scalar state."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in arrays.items():
        if key.startswith("state/"):
            _, i, slot = key.split("/", 2)
            state.setdefault(int(i), {})[slot] = value
    for i, entry in meta["scalar_state"].items():
        state.setdefault(int(i), {}).update(entry)
    return {"state": state, "param_groups": meta["param_groups"]}


def _read(path: Path, optimizer: Optimizer) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The checkpoint's meta and arrays, every header and the whole state checked against ``optimizer`` first."""
    if path.is_dir():
        raise _unreadable(path, "it is a folder")
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise _unreadable(path, exc.strerror or str(exc)) from None
    with f, _open_archive(path, f) as archive:
        members = _entries(path, archive)
        meta = _meta(path, archive, members.pop("meta"))
        if meta["algorithm"] != optimizer.algorithm:
            raise ValueError(
                f"{path} holds a {reprlib.repr(meta['algorithm'])} checkpoint; it cannot be loaded into "
                f"{type(optimizer).__name__}"
            )
        params = optimizer.params
        saved = sorted(int(k.split("/")[1]) for k in members if k.startswith("param/"))
        if saved != list(range(len(params))):
            raise ValueError(f"{path} holds {len(saved)} parameters; the optimizer has {len(params)}")
        headers = {key: _header(path, archive, info, key) for key, info in members.items()}
        for i, p in enumerate(params):
            h = headers[f"param/{i}"]
            if h.shape != p.shape or h.dtype != p.dtype:
                raise ValueError(
                    f"parameter {i} in {path} has shape {h.shape} and dtype {h.dtype}; "
                    f"the optimizer's has shape {p.shape} and dtype {p.dtype}"
                )
        # The state as the file describes it, checked whole with placeholders: nothing is read until it fits.
        _check_state(path, optimizer, _state_of({k: h.placeholder() for k, h in headers.items()}, meta))
        arrays = {key: _data(path, archive, h, key) for key, h in headers.items()}
    return meta, arrays


def _check_state(path: Path, optimizer: Optimizer, state_dict: dict[str, Any]) -> None:
    try:
        optimizer.check_state_dict(state_dict)
    except (ValueError, TypeError):
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a corrupt file provokes is reported as what it is
        raise ValueError(
            f"{path} has a corrupt 'meta' entry: its param groups or state do not fit {type(optimizer).__name__} "
            f"({type(exc).__name__}: {exc})"
        ) from None


def load(path: str | os.PathLike[str], optimizer: Optimizer) -> dict[str, Any]:
    """Restore parameters and state saved by :func:`save` into ``optimizer``, in place.

    Everything is checked before anything changes, and before any array data is read: the entries' names, array
    headers and declared sizes, the algorithm, the number, shapes and dtypes of the parameters, the param groups and
    the state slots. A file that does not fit costs no more memory than the optimizer's own arrays.

    Returns:
        The ``extra`` values given to :func:`save`, as a dict.

    Raises:
        FileNotFoundError: there is no file at ``path``.
        TypeError: ``optimizer`` is not a NumPy optimizer, or a saved hyperparameter has the wrong type.
        ValueError: the file is not a descend checkpoint, is damaged, or does not fit the optimizer; the message
            says what differs, and the optimizer and its arrays are untouched.
    """
    _check_optimizer(optimizer)
    path = Path(path)
    meta, arrays = _read(path, optimizer)
    optimizer.load_state_dict(_state_of(arrays, meta))  # checks, then changes
    for i, p in enumerate(optimizer.params):
        p[...] = arrays[f"param/{i}"]
    return dict(meta["extra"])
