"""Checkpoints of a NumPy optimizer and its parameters in one ``.npz`` file that loads without pickle.

The file holds ``param/<i>`` (each parameter), ``state/<i>/<slot>`` (each state array) and ``meta``, a JSON text with
the algorithm, the param groups, the scalar state (``step``, ``mu_product``) and the caller's ``extra`` values.
Writing goes to a temporary file in the same folder, then a rename, so a crash or a kill never leaves a
half-written checkpoint in place of the previous one.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from descend.optim import Optimizer

FORMAT = "descend-checkpoint"
VERSION = 1


def save(path: str | os.PathLike[str], optimizer: Optimizer, **extra: Any) -> Path:
    """Write the optimizer's parameters and state to ``path`` atomically.

    Args:
        path: the file to write (any name; ``.npz`` is customary).
        optimizer: a NumPy optimizer (``descend.Adam``, ...).
        **extra: JSON-serialisable values to keep with the checkpoint (for example ``step=137``).

    Returns:
        The path written.
    """
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a descend NumPy optimizer, got {type(optimizer).__name__}")
    try:
        extra_json = json.dumps(extra)
    except TypeError as exc:
        raise TypeError(f"extra values must be JSON-serialisable: {exc}") from None
    sd = optimizer.state_dict()
    arrays: dict[str, np.ndarray] = {f"param/{i}": p for i, p in enumerate(optimizer.params)}
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
        "algorithm": optimizer.spec.name,
        "param_groups": sd["param_groups"],
        "scalar_state": scalars,
        "extra": json.loads(extra_json),
    }
    arrays["meta"] = np.array(json.dumps(meta))
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
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


def _read(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    try:
        with open(path, "rb") as f:
            data = np.load(f, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise ValueError("it holds a single array, not a .npz archive")
            with data:
                arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise ValueError(f"{path} is not a readable descend checkpoint: {exc}") from None
    if "meta" not in arrays:
        raise ValueError(f"{path} is not a descend checkpoint: it has no 'meta' entry")
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} has a corrupt 'meta' entry: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(
            f"{path} is not a descend checkpoint (format {meta.get('format') if isinstance(meta, dict) else None!r})"
        )
    if meta.get("version") != VERSION:
        raise ValueError(
            f"{path} is a version {meta.get('version')!r} checkpoint; this descend reads version {VERSION}"
        )
    for key, kind in {"algorithm": str, "param_groups": list, "scalar_state": dict, "extra": dict}.items():
        if not isinstance(meta.get(key), kind):
            raise ValueError(
                f"{path} has a corrupt 'meta' entry: {key!r} must be a {kind.__name__}, got {meta.get(key)!r}"
            )
    if not all(str(k).isdigit() and isinstance(v, dict) for k, v in meta["scalar_state"].items()):
        raise ValueError(f"{path} has a corrupt 'meta' entry: 'scalar_state' must map parameter numbers to dicts")
    for name in arrays:
        parts = name.split("/")
        known = (len(parts) == 2 and parts[0] == "param") or (len(parts) == 3 and parts[0] == "state")
        if not (known and parts[1].isdigit()):
            raise ValueError(
                f"{path} has an entry {name!r}; a descend checkpoint holds only param/<i>, state/<i>/<slot> and meta"
            )
    return meta, arrays


def load(path: str | os.PathLike[str], optimizer: Optimizer) -> dict[str, Any]:
    """Restore parameters and state saved by :func:`save` into ``optimizer``, in place.

    Everything is checked before anything changes: the algorithm, the number and shapes of the parameters, the
    state slots. On a mismatch a ValueError says what differs and the optimizer and its arrays are untouched.

    Returns:
        The ``extra`` values given to :func:`save`, as a dict.
    """
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a descend NumPy optimizer, got {type(optimizer).__name__}")
    path = Path(path)
    meta, arrays = _read(path)
    if meta["algorithm"] != optimizer.spec.name:
        raise ValueError(
            f"{path} holds a {meta['algorithm']!r} checkpoint; it cannot be loaded into {optimizer.spec.title}"
        )
    params = optimizer.params
    saved = sorted(int(k.split("/")[1]) for k in arrays if k.startswith("param/"))
    if saved != list(range(len(params))):
        raise ValueError(f"{path} holds {len(saved)} parameters; the optimizer has {len(params)}")
    new_values = []
    for i, p in enumerate(params):
        value = arrays[f"param/{i}"]
        if value.shape != p.shape or value.dtype != p.dtype:
            raise ValueError(
                f"parameter {i} in {path} has shape {value.shape} and dtype {value.dtype}; "
                f"the optimizer's has shape {p.shape} and dtype {p.dtype}"
            )
        new_values.append(value)
    state: dict[int, dict[str, Any]] = {}
    for key, value in arrays.items():
        if key.startswith("state/"):
            _, i, slot = key.split("/", 2)
            state.setdefault(int(i), {})[slot] = value
    for i, entry in meta.get("scalar_state", {}).items():
        state.setdefault(int(i), {}).update(entry)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})  # checks, then changes
    for p, value in zip(params, new_values):
        p[...] = value
    return dict(meta.get("extra", {}))
