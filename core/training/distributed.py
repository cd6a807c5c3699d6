"""One process or many (torchrun): rank, device, a seeded shard of the data per rank, and
the seeds that make a run repeatable."""
from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


def dist_info() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    rank = dist.get_rank() if dist.is_initialized() else 0
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    return rank, world, device


def broadcast_float(value: float) -> float:
    if not dist.is_initialized():
        return value
    t = torch.tensor([value], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.broadcast(t, 0)
    return float(t.item())


def shard(n: int, epoch: int, seed: int, rank: int, world: int) -> list[int]:
    """A seeded permutation of range(n), split evenly across ranks (DistributedSampler-like)."""
    g = torch.Generator().manual_seed(seed * 1000 + epoch)
    perm = torch.randperm(n, generator=g).tolist()
    per = math.ceil(n / world)
    perm = (perm + perm[: per * world - n])[rank::world]
    return perm


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)



@dataclass(frozen=True)
class Process:
    """This process's place in the run: its rank among ``world`` processes and its device."""
    rank: int
    world: int
    device: torch.device

    @classmethod
    def current(cls) -> Process:
        return cls(*dist_info())

    @property
    def main(self) -> bool:  # rank 0 prints, logs and writes checkpoints
        return self.rank == 0

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"
