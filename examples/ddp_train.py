"""Data-parallel training with descend.torch.Adam, sharded by ZeroRedundancyOptimizer.

A small MLP learns scikit-learn's bundled handwritten digits (8x8 images, no download). Each process sees its share of
every batch; DistributedDataParallel averages the gradients; ZeroRedundancyOptimizer keeps each parameter's Adam state
on one process only and broadcasts the updated parameters. Run it on the CPU with two processes::

    torchrun --nproc-per-node 2 examples/ddp_train.py

It prints the training loss every few epochs and the test accuracy at the end.
"""

from __future__ import annotations

import argparse

import torch
import torch.distributed as dist
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.distributed.optim import ZeroRedundancyOptimizer
from torch.nn.parallel import DistributedDataParallel

import descend.torch


def load_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The digits, pixels scaled to [0, 1], split 80/20 the same way in every process."""
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x / 16.0, y, test_size=0.2, random_state=0, stratify=y)
    x_train, x_test = (torch.tensor(a, dtype=torch.float32) for a in (x_train, x_test))
    return x_train, torch.tensor(y_train), x_test, torch.tensor(y_test)


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)  # the same initial weights in every process (DDP also broadcasts rank 0's)
    return torch.nn.Sequential(
        torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64, help="global batch, split between the processes")
    parser.add_argument("--lr", type=float, default=3e-3)
    args = parser.parse_args()
    if not dist.is_torchelastic_launched():
        parser.error("launch it with torchrun, e.g. torchrun --nproc-per-node 2 examples/ddp_train.py")

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(1)
    x_train, y_train, x_test, y_test = load_data()
    model = DistributedDataParallel(make_model())
    opt = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=descend.torch.Adam, lr=args.lr)
    if rank == 0:
        print(f"{world} processes, {len(x_train)} training and {len(x_test)} test images")
        print(opt.optim.describe())

    share = args.batch_size // world
    generator = torch.Generator().manual_seed(0)  # the same shuffle everywhere; each process takes its slice
    for epoch in range(1, args.epochs + 1):
        order = torch.randperm(len(x_train), generator=generator)
        total, count = torch.zeros(2), 0
        for start in range(0, len(order) - args.batch_size + 1, args.batch_size):
            idx = order[start + rank * share : start + (rank + 1) * share]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
            loss.backward()
            opt.step()
            total += torch.tensor([loss.item() * len(idx), len(idx)])
            count += 1
        dist.all_reduce(total)
        if rank == 0 and (epoch == 1 or epoch % 5 == 0):
            print(f"epoch {epoch:3d}  loss {total[0] / total[1]:.4f}")

    with torch.no_grad():
        accuracy = (model(x_test).argmax(dim=1) == y_test).float().mean().item()
    if rank == 0:
        print(f"test accuracy {accuracy:.3f}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
