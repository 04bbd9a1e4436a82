"""Distributed training through ``torch.distributed``, configured from what ``torchrun`` sets.

``torchrun --nproc-per-node 4 -m restorekit.cli run recipes/esrgan.toml`` starts four processes with
``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` in their environment; a plain ``restore run`` sees none of
them and trains in one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_env() -> DistEnv:
    """Rank and world size from the environment (one process when torchrun did not start us)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv()
    return DistEnv(int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world)


def pick_device(requested: str, env: DistEnv) -> torch.device:
    """``auto`` → this process's GPU when there is one, else the CPU."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("train.device is 'cuda' but no CUDA device is available")
        if device.index is None:
            device = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(device)
    return device


def init_distributed(env: DistEnv, device: torch.device) -> None:
    """Join the process group: NCCL on GPUs, Gloo on CPUs."""
    if env.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=env.rank, world_size=env.world_size)


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    if env.enabled and dist.is_initialized():
        dist.barrier()


def broadcast_flag(env: DistEnv, value: bool, device: torch.device) -> bool:
    """Rank 0's *value* on every rank (for decisions only rank 0 can make, like stopping)."""
    if not env.enabled:
        return value
    flag = torch.tensor([1 if value else 0], device=device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())
