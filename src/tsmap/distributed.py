"""Several processes under ``torchrun``: which one this is, and the few collectives we need.

``torchrun --nproc_per_node N -m tsmap train ...`` (or ``extract``) starts N copies of
the command with RANK, WORLD_SIZE and LOCAL_RANK set. Training runs data-parallel
(DistributedDataParallel; gloo on CPU, NCCL on GPU); extraction gives every rank its
own shard of the videos, and since each map is its own file the store needs no merge.
Without torchrun, every function here is a no-op for a world of one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: str) -> tuple[World, str]:
    """Join the process group when started by torchrun; returns the world and this rank's device.

    On CUDA every rank takes the GPU of its LOCAL_RANK.
    """
    if not launched_by_torchrun():
        return World(), device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), local_rank), device


def current() -> World:
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return World()


def barrier() -> None:
    if current().size > 1:
        dist.barrier()


def sum_across(values: list[float], device: str = "cpu") -> list[float]:
    """Element-wise sum of ``values`` over all ranks (the values themselves in one process)."""
    if current().size == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def gather_objects(obj: object) -> list[object]:
    """Every rank's ``obj``, in rank order (a list of one in one process)."""
    world = current()
    if world.size == 1:
        return [obj]
    out: list[object] = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
