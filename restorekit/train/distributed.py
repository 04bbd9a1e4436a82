"""Distributed training through ``torch.distributed``, configured from what ``torchrun`` sets, and the
stop requests (Ctrl-C, SIGTERM) that every process must agree on.

``torchrun --nproc-per-node 4 -m restorekit.cli run recipes/esrgan.toml`` starts four processes with
``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` in their environment; a plain ``restore run`` sees none of
them and trains in one process. Each process then uses ``cuda:LOCAL_RANK`` with the NCCL backend, or the
CPU with Gloo when there is no GPU.

Example:
    >>> env = dist_env()  # one process unless torchrun started us
    >>> env.world_size, env.is_main
    (1, True)
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass
from types import FrameType
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the run: rank, rank on this machine, number of processes."""

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
    """``auto`` → this process's GPU (``cuda:LOCAL_RANK``) when there is one, else the CPU.

    Raises:
        RuntimeError: ``train.device`` asks for CUDA and there is none.
    """
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
    """Leave the process group (safe to call when none was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    """Wait for every process (nothing to wait for in a one-process run)."""
    if env.enabled and dist.is_initialized():
        dist.barrier()


def sync_step(env: DistEnv, logs: dict[str, Tensor], stop: bool, device: torch.device) -> tuple[dict[str, float], bool]:
    """The step's loss values averaged over the processes, and whether any process asked to stop.

    Every process calls this once per step, so all of them see the same numbers and take the same
    decisions: stop on a NaN, or on Ctrl-C, at the same step (a process that left the loop alone would
    leave the others waiting in a collective forever).

    Args:
        env: the processes of the run.
        logs: this process's loss values (scalar tensors), in the same order on every process.
        stop: this process was asked to stop.
        device: where the collective runs (the GPU under NCCL).

    Returns:
        The averaged values as floats, and the combined stop request.
    """
    if not env.enabled:
        return {k: float(v) for k, v in logs.items()}, stop
    keys = list(logs)
    parts = [torch.as_tensor(logs[k]).detach().float().reshape(1).to(device) for k in keys]
    values = torch.cat([*parts, torch.tensor([float(stop)], device=device)])
    dist.all_reduce(values)
    flat = values.tolist()
    return {k: v / env.world_size for k, v in zip(keys, flat)}, flat[-1] > 0


class StopRequest:
    """Turn the first Ctrl-C or SIGTERM into a request to stop after the current step.

    Stopping between steps keeps the checkpoint written on the way out consistent (a step is never
    half applied), and lets all processes of a distributed run stop at the same step. A second signal
    raises :class:`KeyboardInterrupt` at once, for a run that cannot reach the end of its step.
    Outside the main thread signals cannot be caught, and the request never comes.

    Example:
        >>> with StopRequest() as stop:
        ...     stop.requested
        False
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def ignore_interrupt(worker_id: int) -> None:
    """``worker_init_fn`` for data-loader workers: let Ctrl-C reach only the training process.

    A terminal sends Ctrl-C to every process of its group; a worker would die of it, and the training
    process could not finish the step it stops after.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
