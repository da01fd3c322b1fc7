"""descend.torch under FSDP2 (``fully_shard``: DTensor parameters), two processes on loopback (gloo).

Each rank updates its local shard with the fused kernel. For every algorithm torch has, a small transformer-like model
trained with descend.torch ends where the same model under the same FSDP2 setup trained with torch.optim ends, and
the optimizer state dict of torch.distributed.checkpoint (``get_optimizer_state_dict`` /
``set_optimizer_state_dict``) resumes bit for bit.
"""

from __future__ import annotations

import copy
import socket
import warnings

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)
try:
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor
except ImportError:  # pragma: no cover - an older torch
    pytest.skip("this torch has no FSDP2", allow_module_level=True)

import torch.multiprocessing as mp  # noqa: E402

import descend.torch as dt  # noqa: E402
from tests.tolerances import assert_close, torch_tolerance  # noqa: E402

WORLD = 2
STEPS = 6
SETTINGS = {
    "sgd": {"lr": 0.05, "momentum": 0.9},
    "rmsprop": {"lr": 0.01, "momentum": 0.5, "centered": True},
    "adagrad": {"lr": 0.05},
    "adadelta": {"lr": 1.0},
    "adam": {"lr": 0.01, "amsgrad": True},
    "adamw": {"lr": 0.01},
    "adamax": {"lr": 0.01},
    "nadam": {"lr": 0.01},
    "radam": {"lr": 0.01},
    "asgd": {"lr": 0.01, "t0": 2},
}  # not Rprop: torch.optim.Rprop itself fails on sharded DTensors (its index_put_ has no sharding strategy)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Block(torch.nn.Module):
    """An embedding, a norm, an MLP and a head: the shapes of a transformer in miniature."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(32, 16)
        self.norm = torch.nn.LayerNorm(16)
        self.up = torch.nn.Linear(16, 48)
        self.down = torch.nn.Linear(48, 16)
        self.head = torch.nn.Linear(16, 32)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens)
        h = h + self.down(torch.nn.functional.gelu(self.up(self.norm(h))))
        return self.head(h)


def sharded_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = Block()
    for layer in (model.up, model.down, model.head):
        fully_shard(layer)
    fully_shard(model)
    return model


def train(model: torch.nn.Module, opt: torch.optim.Optimizer, steps: range, rank: int) -> None:
    for step in steps:
        gen = torch.Generator().manual_seed(1000 * step + rank)  # each rank its own share of the batch
        tokens = torch.randint(0, 32, (4, 6), generator=gen)
        opt.zero_grad()
        logits = model(tokens)
        torch.nn.functional.cross_entropy(logits.reshape(-1, 32), tokens.roll(1, dims=1).reshape(-1)).backward()
        opt.step()


def local(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.to_local().detach().clone() for p in model.parameters()]


def worker(rank: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    results = {}
    try:
        torch.set_num_threads(1)
        warnings.simplefilter("ignore")
        for name, kwargs in SETTINGS.items():
            ours_model, theirs_model = sharded_model(), sharded_model()
            assert all(isinstance(p, DTensor) for p in ours_model.parameters())
            ours = dt.OPTIMIZERS[name](ours_model.parameters(), **kwargs)
            theirs = getattr(torch.optim, ours.spec.torch_name)(theirs_model.parameters(), **kwargs)
            train(ours_model, ours, range(STEPS), rank)
            train(theirs_model, theirs, range(STEPS), rank)
            # the DCP state dict round trip: a fresh model and optimizer resume where these stopped, bit for bit (the
            # state dict shares the optimizer's tensors, so it is copied, as writing it to disk would)
            saved = copy.deepcopy(get_optimizer_state_dict(ours_model, ours))
            resumed_model = sharded_model()
            with torch.no_grad():
                for p, q in zip(resumed_model.parameters(), ours_model.parameters()):
                    p.to_local().copy_(q.to_local())
            resumed = dt.OPTIMIZERS[name](resumed_model.parameters(), **kwargs)
            set_optimizer_state_dict(resumed_model, resumed, saved)
            train(ours_model, ours, range(STEPS, STEPS + 3), rank)
            train(resumed_model, resumed, range(STEPS, STEPS + 3), rank)
            train(theirs_model, theirs, range(STEPS, STEPS + 3), rank)
            results[name] = {"ours": local(ours_model), "theirs": local(theirs_model), "resumed": local(resumed_model)}
        torch.save(results, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = str(tmp_path_factory.mktemp("fsdp2") / "result")
    mp.spawn(worker, args=(free_port(), out), nprocs=WORLD, join=True)
    return [torch.load(f"{out}.{rank}") for rank in range(WORLD)]


@pytest.mark.parametrize("name", list(SETTINGS))
def test_fsdp2_matches_torch_optim_and_resumes_bit_for_bit(results: list[dict], name: str) -> None:
    for rank, per_rank in enumerate(results):
        got = per_rank[name]
        for i, (ours, theirs, resumed) in enumerate(zip(got["ours"], got["theirs"], got["resumed"])):
            assert_close(ours, theirs, torch_tolerance(torch.float32, name), f"{name}: rank {rank} shard {i}")
            assert torch.equal(ours, resumed), f"{name}: rank {rank} shard {i} resumed other bits"
