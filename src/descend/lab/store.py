"""Atomic file writes: every file is written to a temporary name in the same folder, flushed, then renamed over the
target, so an interrupted run leaves either the old file or the new one, never half of one."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write", "check_writable", "write_bytes", "write_json", "write_text"]


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write`` with a binary file object, then move the result to ``path`` in one rename."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates the file private to its owner; results are meant to be shared
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda handle: handle.write(data))


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, data: Any, compact: bool = False) -> Path:
    """Write ``data`` as JSON to ``path`` atomically (NaN is not allowed: use None): indented, or with ``compact``
    on one line without spaces (for the long arrays of saved runs, a third of the size)."""
    text = (
        json.dumps(data, separators=(",", ":"), allow_nan=False)
        if compact
        else json.dumps(data, indent=1, allow_nan=False)
    )
    return write_text(path, text + "\n")


def check_writable(folder: str | Path) -> Path:
    """Check that ``folder`` can be created (if missing) and written to, without leaving anything behind.

    Raises:
        ValueError: the folder is a file, or cannot be created or written; the message names it.
    """
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise ValueError(f"the output folder {str(path)!r} exists and is not a folder")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(
            f"the output folder {str(path)!r} cannot be written: {str(probe)!r} is in the way, and it is "
            "a file, not a folder"
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"the output folder {str(path)!r} cannot be written (no write permission on {str(probe)!r})")
    return path
