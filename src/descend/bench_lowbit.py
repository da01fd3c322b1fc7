"""Contestants of ``descend bench`` with low-precision optimizer state: descend's fronts under each state format, and
the peers that keep 8-bit Adam state on the CPU (bitsandbytes, torchao) as anchors.

Each is opt-in: ``--state-dtypes bfloat16 blockwise8`` adds descend's rows for those formats, and
``--contestants bitsandbytes torchao`` adds the peers where they are installed (the ``bench`` extra). Every row counts
the bytes its own format moves: params and grads in float32, and per state slot its stored bytes read and written
(2 for bfloat16, 1 plus a float32 scale per 256 for the 8-bit formats).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import descend
from descend.kernels._layout import KERNELS

__all__ = ["FORMATS", "PEERS", "contestants", "state_bytes"]

FORMATS = ("float32", "bfloat16", "blockwise8")
PEERS = ("bitsandbytes", "torchao")

# Bytes per element of each state slot as stored; the 8-bit peers keep one float32 scale per block of 256 too.
_SLOT_BYTES = {"float32": 4.0, "bfloat16": 2.0, "blockwise8": 1.0 + 4 / 256, "8-bit": 1.0 + 4 / 256}


def state_bytes(label: str) -> float:
    """Bytes per element of one state slot for a contestant's label (float32 unless the label names a format)."""
    for name, size in _SLOT_BYTES.items():
        if label.endswith(f"[{name}]"):
            return size
    return 4.0


def _import(module: str) -> Any:
    if importlib.util.find_spec(module.split(".")[0]) is None:
        return None
    try:
        return importlib.import_module(module)
    except Exception:  # noqa: BLE001 - a peer that fails to import is left out of the table
        return None


def contestants(
    name: str,
    params: list[np.ndarray],
    grads: list[np.ndarray],
    tparams: list[Any] | None,
    which: Sequence[str],
    formats: Sequence[str],
) -> dict[str, Callable[[], None]]:
    """label -> one step, for the low-bit formats and the peers asked for.

    Args:
        name: the registry name of the algorithm.
        params, grads: the shared NumPy parameters and their gradients.
        tparams: the same parameters as torch tensors with ``.grad`` set, or None without torch.
        which: the contestants asked for (``"descend"``, ``"descend.torch"``, and the peers by name).
        formats: the state formats asked for, besides float32; an algorithm that keeps no low-bit state (Muon, with
            no fused kernel; Adafactor, whose kernel reduces over whole tensors) gets no rows for them.
    """
    out: dict[str, Callable[[], None]] = {}
    kwargs = {"momentum": 0.9} if name == "sgd" else {}
    layout = KERNELS.get(name)
    for fmt in formats:
        if fmt == "float32" or layout is None or layout.shaped:
            continue
        if "descend" in which:
            opt = descend.OPTIMIZERS[name](params, backend="fused", state_dtype=fmt, **kwargs)
            out[f"descend (NumPy) [{fmt}]"] = lambda opt=opt: opt.step(grads)
        if "descend.torch" in which and tparams is not None:
            dt = _import("descend.torch")
            if dt is not None:
                out[f"descend.torch [{fmt}]"] = dt.OPTIMIZERS[name](tparams, state_dtype=fmt, **kwargs).step
    if tparams is not None and name in ("adam", "adamw"):
        wide = name == "adamw"
        bnb = _import("bitsandbytes") if "bitsandbytes" in which else None
        if bnb is not None:
            cls = bnb.optim.AdamW8bit if wide else bnb.optim.Adam8bit
            out["bitsandbytes [8-bit]"] = cls(tparams, lr=1e-3).step
        ao = _import("torchao.optim") if "torchao" in which else None
        if ao is not None:
            cls = ao.AdamW8bit if wide else getattr(ao, "Adam8bit", None)
            if cls is not None:
                out["torchao [8-bit]"] = cls(tparams, lr=1e-3).step
    return out
