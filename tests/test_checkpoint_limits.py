"""Hostile checkpoints cost no more than the optimizer: a zip bomb, and entries whose zip sizes and array headers
disagree, are refused from their headers, before any of their data is decompressed."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

import descend

GiB = 1 << 30


def _npy_header(dtype: str, shape: tuple[int, ...]) -> bytes:
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, {"descr": dtype, "fortran_order": False, "shape": shape})
    return f.getvalue()


def _zeros_deflated(head: bytes, zeros: int) -> tuple[bytes, int]:
    """A raw deflate stream of ``head`` then ``zeros`` zero bytes (a whole number of MiB), and its CRC-32; built from
    one compressed MiB repeated, so that gigabytes cost a few milliseconds."""
    mib = 1 << 20
    assert zeros % mib == 0
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    start = c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(bytes(mib)) + c.flush(zlib.Z_FULL_FLUSH)
    assert c.compress(bytes(mib)) + c.flush(zlib.Z_FULL_FLUSH) == block  # a full flush forgets the history
    crc = zlib.crc32(head)
    one = bytes(mib)
    for _ in range(zeros // mib):
        crc = zlib.crc32(one, crc)
    return start + block * (zeros // mib) + c.flush(), crc


def _zip(members: list[tuple[str, bytes, int, int, int]]) -> bytes:
    """A zip archive written field by field: (name, stored bytes, method, size it inflates to, CRC-32) per member, so
    that a member may declare any size."""
    out, central = io.BytesIO(), io.BytesIO()
    for name, data, method, size, crc in members:
        offset = out.tell()
        raw = name.encode()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, len(data), size, len(raw), 0))
        out.write(raw + data)
        central.write(
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                20,
                20,
                0,
                method,
                0,
                0x21,
                crc,
                len(data),
                size,
                len(raw),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
            + raw
        )
    cd = central.getvalue()
    n = len(members)
    return out.getvalue() + cd + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, len(cd), out.tell(), 0)


def _members_of(path: Path) -> list[tuple[str, bytes, int, int, int]]:
    with zipfile.ZipFile(path) as z:
        return [(i.filename, z.read(i), 0, i.file_size, i.CRC) for i in z.infolist()]


def _opt() -> descend.Adam:
    rng = np.random.default_rng(0)
    opt = descend.Adam([rng.standard_normal((2, 3)), rng.standard_normal(4).astype(np.float32)], lr=0.1)
    opt.step([np.ones((2, 3)), np.ones(4, np.float32)])
    return opt


def _bomb(good: Path, name: str, dtype: str, shape: tuple[int, ...], zeros: int) -> bytes:
    """The good checkpoint with member ``name`` replaced by a deflated array header then ``zeros`` zero bytes."""
    head = _npy_header(dtype, shape)
    data, crc = _zeros_deflated(head, zeros)
    members = [m for m in _members_of(good) if m[0] != name]
    return _zip(members + [(name, data, 8, len(head) + zeros, crc)])


# The bombs: 2 GiB of zeros behind a header that fits the optimizer, one that declares them, a meta text that
# declares them, and an entry of a name no checkpoint has.
BOMBS = {
    "size lies": ("param/0.npy", "<f8", (2, 3)),
    "header declares it": ("param/0.npy", "<f8", (GiB * 2 // 8,)),
    "state declares it": ("state/1/exp_avg.npy", "<f4", (GiB * 2 // 4,)),
    "meta declares it": ("meta.npy", f"<U{GiB * 2 // 4 // 2}", ()),  # 1 GiB: the largest <U is just below 2 GiB
    "a foreign entry": ("weights.npy", "<f8", (GiB * 2 // 8,)),
}

MEASURE = r"""
import resource, sys, time
import numpy as np
import descend

rng = np.random.default_rng(0)
opt = descend.Adam([rng.standard_normal((2, 3)), rng.standard_normal(4).astype(np.float32)], lr=0.1)
opt.step([np.ones((2, 3)), np.ones(4, np.float32)])
descend.load(sys.argv[1], opt)  # the good file: warms up every code path a load takes
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for path in sys.argv[2:]:
    start = time.monotonic()
    try:
        descend.load(path, opt)
        outcome = "LOADED"
    except Exception as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
    print(f"{path}\t{grown // 1024} MiB\t{time.monotonic() - start:.2f} s\t{outcome}", flush=True)
"""


def test_a_zip_bomb_costs_no_more_than_the_optimizer(tmp_path: Path) -> None:
    good = descend.save(tmp_path / "good.npz", _opt())
    paths = []
    for what, (name, dtype, shape) in BOMBS.items():
        path = tmp_path / f"{what.replace(' ', '_')}.npz"
        path.write_bytes(_bomb(good, name, dtype, shape, GiB if name == "meta.npy" else 2 * GiB))
        assert path.stat().st_size < 3 << 20, "the bomb should be a small file"
        paths.append(str(path))
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(good), *paths],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == len(BOMBS), out.stdout
    for line in lines:
        path, grown, took, outcome = line.split("\t")
        assert outcome.startswith("ValueError: "), line
        assert int(grown.split()[0]) < 32, f"loading a bomb grew the peak resident memory by {grown}: {line}"
        assert float(took.split()[0]) < 2, line


@pytest.mark.parametrize(
    ("declared", "match"),
    [
        (48 + 8, r"entry 'param/0' declares \d+ bytes, but its header \(float64, shape \(2, 3\)\) makes it \d+"),
        (48 - 8, r"entry 'param/0' declares \d+ bytes, but its header \(float64, shape \(2, 3\)\) makes it \d+"),
    ],
    ids=["more than the header", "less than the header"],
)
def test_an_entry_whose_zip_size_and_array_header_disagree(tmp_path: Path, declared: int, match: str) -> None:
    opt = _opt()
    good = descend.save(tmp_path / "good.npz", opt)
    head = _npy_header("<f8", (2, 3))
    data = head + np.arange(declared // 8, dtype="<f8").tobytes()
    members = [m for m in _members_of(good) if m[0] != "param/0.npy"]
    bad = tmp_path / "bad.npz"
    bad.write_bytes(_zip(members + [("param/0.npy", data, 0, len(data), zlib.crc32(data))]))
    before = [p.copy() for p in opt.params]
    with pytest.raises(ValueError, match=match):
        descend.load(bad, opt)
    assert all(p.tobytes() == q.tobytes() for p, q in zip(opt.params, before))
