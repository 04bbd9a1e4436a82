"""Optimizers and learning-rate schedules from recipe tables."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from restorekit.recipe.schema import OptimizerSpec, ScheduleSpec


def build_optimizer(spec: OptimizerSpec, params: Iterable[nn.Parameter], device: torch.device) -> torch.optim.Optimizer:
    """Adam or AdamW; fused CUDA kernels when available and not turned off."""
    fused = spec.fused if spec.fused is not None else device.type == "cuda"
    cls = torch.optim.AdamW if spec.name == "adamw" else torch.optim.Adam
    kwargs = dict(lr=spec.lr, betas=tuple(spec.betas), eps=spec.eps, weight_decay=spec.weight_decay)
    if fused and device.type == "cuda":
        return cls(params, fused=True, **kwargs)
    return cls(params, foreach=device.type == "cuda", **kwargs)


def lr_factor(spec: ScheduleSpec, total_steps: int, step: int) -> float:
    """Multiplier of the base learning rate after *step* optimizer steps.

    ``multistep`` multiplies by ``gamma`` at each milestone; ``cosine`` and ``linear`` decay from
    ``decay_start`` to ``total_steps`` down to ``min_lr_ratio``; all may start with a linear warm-up.
    """
    if spec.warmup_steps and step < spec.warmup_steps:
        return (step + 1) / spec.warmup_steps
    if spec.name == "multistep":
        return spec.gamma ** sum(step >= m for m in spec.milestones)
    if spec.name in ("cosine", "linear"):
        span = max(1, total_steps - spec.decay_start)
        progress = min(1.0, max(0.0, (step - spec.decay_start) / span))
        shape = 0.5 * (1 + math.cos(math.pi * progress)) if spec.name == "cosine" else 1 - progress
        return spec.min_lr_ratio + (1 - spec.min_lr_ratio) * shape
    return 1.0


class Schedule(torch.optim.lr_scheduler.LRScheduler):
    """A recipe schedule as a torch scheduler (its state dict holds numbers only)."""

    def __init__(self, optimizer: torch.optim.Optimizer, spec: ScheduleSpec, total_steps: int):
        self.spec, self.total_steps = spec, total_steps
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        factor = lr_factor(self.spec, self.total_steps, self.last_epoch)
        return [base * factor for base in self.base_lrs]

    def state_dict(self) -> dict:
        return {k: v for k, v in super().state_dict().items() if k not in ("spec", "optimizer")}
