"""descend.torch.Adam inside ZeroRedundancyOptimizer with DistributedDataParallel: two processes on loopback (gloo)
end where one process running torch.optim.Adam on the same global batches ends. And descend.torch's classes on a
model wrapped by FSDP (its first API, on the CPU) end where torch.optim's do under the same wrapping."""

from __future__ import annotations

import socket
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

import torch.multiprocessing as mp  # noqa: E402
from torch.distributed.fsdp import FullyShardedDataParallel  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402

with warnings.catch_warnings():  # torch.distributed.optim's own use of torch.jit warns at import
    warnings.simplefilter("ignore", DeprecationWarning)
    from torch.distributed.optim import ZeroRedundancyOptimizer

import descend.torch as dt  # noqa: E402
from tests.tolerances import TORCH_FLOAT32, assert_close  # noqa: E402

WORLD = 2
STEPS = 12
BATCH = 16  # global batch, split evenly between the processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(step)
    return torch.randn(BATCH, 8, generator=gen), torch.randint(0, 3, (BATCH,), generator=gen)


def worker(rank: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        torch.set_num_threads(1)
        model = DistributedDataParallel(make_model())
        opt = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=dt.Adam, lr=0.05, weight_decay=0.01)
        assert isinstance(opt.optim, dt.Adam)
        share = BATCH // WORLD
        for step in range(STEPS):
            x, y = batch(step)
            x, y = x[rank * share : (rank + 1) * share], y[rank * share : (rank + 1) * share]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        opt.consolidate_state_dict(to=0)
        if rank == 0:
            torch.save({"params": [p.detach() for p in model.module.parameters()], "optim": opt.state_dict()}, out)
    finally:
        dist.destroy_process_group()


def test_zero_with_ddp_matches_one_process(tmp_path: Path) -> None:
    out = str(tmp_path / "result.pt")
    mp.spawn(worker, args=(free_port(), out), nprocs=WORLD, join=True)
    result = torch.load(out)

    model = make_model()
    start = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.Adam(model.parameters(), lr=0.05, weight_decay=0.01)
    for step in range(STEPS):
        x, y = batch(step)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    for i, (mine, ref, s) in enumerate(zip(result["params"], model.parameters(), start)):
        assert not torch.equal(mine, s), f"param {i} did not move"
        assert_close(mine, ref, TORCH_FLOAT32, f"param {i}")
    # The consolidated state covers every parameter, sharded across both processes, with torch's layout.
    state = result["optim"]["state"]
    assert sorted(state) == list(range(len(start)))
    assert all(entry["step"].item() == STEPS for entry in state.values())


# FSDP's first API: (descend.torch class, torch.optim class, arguments, use_orig_params). With use_orig_params=False
# the optimizer sees one flat parameter per wrapped module, each process its own shard of it.
FSDP_CASES = [
    ("Adam", {"lr": 0.05, "weight_decay": 0.01}, False),
    ("AdamW", {"lr": 0.05}, True),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}, False),
    ("RMSprop", {"lr": 0.01, "centered": True}, True),
]


def fsdp_worker(rank: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        torch.set_num_threads(1)
        share = BATCH // WORLD
        results = {}
        for name, kwargs, orig in FSDP_CASES:
            for label, cls in (("descend", getattr(dt, name)), ("torch", getattr(torch.optim, name))):
                model = FullyShardedDataParallel(make_model(), device_id=torch.device("cpu"), use_orig_params=orig)
                opt = cls(model.parameters(), **kwargs)
                for step in range(STEPS):
                    x, y = batch(step)
                    x, y = x[rank * share : (rank + 1) * share], y[rank * share : (rank + 1) * share]
                    opt.zero_grad()
                    torch.nn.functional.cross_entropy(model(x), y).backward()
                    opt.step()
                with FullyShardedDataParallel.summon_full_params(model):
                    results[name, label] = [p.detach().clone() for p in model.parameters()]
        if rank == 0:
            torch.save(results, out)
    finally:
        dist.destroy_process_group()


def test_fsdp_matches_torch_optim(tmp_path: Path) -> None:
    out = str(tmp_path / "fsdp.pt")
    mp.spawn(fsdp_worker, args=(free_port(), out), nprocs=WORLD, join=True)
    results = torch.load(out)
    start = [p.detach() for p in make_model().parameters()]
    for name, _, _ in FSDP_CASES:
        ours, theirs = results[name, "descend"], results[name, "torch"]
        assert len(ours) == len(theirs) > 0
        for i, (mine, ref) in enumerate(zip(ours, theirs)):
            assert_close(mine, ref, TORCH_FLOAT32, f"{name}: param {i}")
        moved, initial = torch.cat([p.reshape(-1) for p in ours]), torch.cat([p.reshape(-1) for p in start])
        assert moved.numel() == initial.numel() and not torch.equal(moved, initial), f"{name} did not move"
