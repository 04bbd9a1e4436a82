"""Validation during training: the task's benchmark samples scored by the evaluation loop.

A task's ``val_data`` returns the same :class:`~restorekit.tasks.base.EvalSet` its ``benchmark`` builds for
``restore eval``, and the scores come from the same :func:`~restorekit.evaluation.loop.run_benchmark` and
the same mean, so the last validation numbers of a run equal ``restore eval`` on its weights, bit for bit.

Tasks written for earlier versions, whose ``val_data`` yields dicts of tensors, still validate through
their ``make_batch(..., training=False)`` and ``metrics`` (:func:`_validate_legacy`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from restorekit.evaluation.loop import Restore, run_benchmark
from restorekit.evaluation.result import mean_metrics
from restorekit.tasks.base import EvalSet, PreviewPanel, Task


@dataclass
class Validation:
    """One validation pass.

    Attributes:
        metrics: Mean of each metric over the images, in the task's table order.
        baseline: The first baseline's means (only when asked for), else empty.
        preview: The labelled panels (input, baseline, output, target) of a crop of the first image,
            when asked for.
        preview_target: The target crop the scored panels are compared with.
    """

    metrics: dict[str, float]
    baseline: dict[str, float] = field(default_factory=dict)
    preview: list[PreviewPanel] | None = None
    preview_target: Tensor | None = None


def network_restorer(net: nn.Module, device: torch.device, memory_format: torch.memory_format) -> Restore:
    """``restore(image)`` with *net*: the whole image in one fp32 pass on *device*, back on the CPU."""

    def restore(image: Tensor) -> Tensor:
        x = image[None].to(device).contiguous(memory_format=memory_format)
        return net(x).float()[0].clamp(0, 1).cpu()

    return restore


def validate_network(
    task: Task,
    data: Sequence[Any],
    net: nn.Module,
    *,
    device: torch.device,
    memory_format: torch.memory_format,
    baseline: bool,
    preview_size: int | None,
) -> Validation:
    """Score *net* (in eval mode, no gradients) on the validation data *data* of *task*.

    Args:
        task: The run's task.
        data: ``task.val_data(...)``: an EvalSet, or a legacy dataset of dicts.
        net: The network to judge (the EMA copy when the run keeps one).
        device: Where it runs.
        memory_format: The run's memory format (it changes the convolutions' float rounding).
        baseline: Also score the task's first baseline (logged once per run).
        preview_size: Side of the preview crop of the first image; None for no preview.
    """
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            if not isinstance(data, EvalSet):
                return _validate_legacy(task, data, net, device, memory_format, baseline, preview_size)
            # restore eval runs the saved weights in the default memory format, and the format changes the
            # convolutions' float rounding: validation judges a contiguous copy, so its numbers equal
            # restore eval's bit for bit whatever train.channels_last says.
            judged = net
            if memory_format != torch.contiguous_format:
                judged = copy.deepcopy(net).to(memory_format=torch.contiguous_format)
            scores = run_benchmark(task, data, network_restorer(judged, device, torch.contiguous_format))
            names = task.metric_names or (tuple(scores[0].metrics) if scores else ())
            result = Validation(mean_metrics(scores, names))
            if baseline and task.baselines:
                result.baseline = mean_metrics(run_benchmark(task, data, None, baseline=task.baselines[0]), names)
            if preview_size is not None and len(data):
                first = data[0]
                result.preview, result.preview_target = preview_crop(
                    task, net, first.input[None].to(device), first.target[None].to(device), preview_size, memory_format
                )
            return result
    finally:
        net.train(was_training)


def _validate_legacy(
    task: Task,
    dataset: Sequence[Any],
    net: nn.Module,
    device: torch.device,
    memory_format: torch.memory_format,
    baseline: bool,
    preview_size: int | None,
) -> Validation:
    """Validation of a task whose ``val_data`` yields dicts (tasks written before EvalSet)."""
    result = Validation({})
    count = len(dataset)
    for index in range(count):
        inp, target = legacy_pair(task, dataset[index], device)
        out = net(inp.contiguous(memory_format=memory_format)).float().clamp(0, 1)
        for key, value in task.metrics(out, target).items():
            result.metrics[key] = result.metrics.get(key, 0.0) + value / count
        if baseline:
            for key, value in task.baseline_metrics(inp, target).items():
                result.baseline[key] = result.baseline.get(key, 0.0) + value / count
        if index == 0 and preview_size is not None:
            result.preview, result.preview_target = preview_crop(task, net, inp, target, preview_size, memory_format)
    return result


def legacy_pair(task: Task, item: dict[str, Any], device: torch.device) -> tuple[Tensor, Tensor]:
    """``(input, target)`` batches of one legacy validation item, made by the task's ``make_batch``."""
    batch = {k: v[None] for k, v in item.items() if isinstance(v, Tensor)}
    return task.make_batch(batch, device, training=False)


def preview_crop(
    task: Task, net: nn.Module, inp: Tensor, target: Tensor, size: int, memory_format: torch.memory_format
) -> tuple[list[PreviewPanel], Tensor]:
    """The task's labelled panels of the central ``size`` x ``size`` input crop, and the target crop."""
    h, w = inp.shape[-2:]
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    crop = inp[..., top : top + size, left : left + size]
    s = task.scale or 1
    tgt = target[..., top * s : (top + crop.shape[-2]) * s, left * s : (left + crop.shape[-1]) * s]
    out = net(crop.contiguous(memory_format=memory_format)).float().clamp(0, 1)
    return task.preview_panels(crop, out, tgt), tgt[0].float().clamp(0, 1).cpu()


@torch.no_grad()
def before_after(task: Task, data: Sequence[Any], net: nn.Module, device: torch.device) -> Tensor | None:
    """Baseline | restored of the first validation image, one ``(3, H, 2W)`` CPU image (None: no images)."""
    parts = before_after_parts(task, data, net, device)
    if parts is None:
        return None
    base, out, _target, _name = parts
    return torch.cat([base, out], dim=-1)


@torch.no_grad()
def before_after_parts(
    task: Task, data: Sequence[Any], net: nn.Module, device: torch.device
) -> tuple[Tensor, Tensor, Tensor | None, str] | None:
    """``(baseline, restored, target, baseline name)`` of the first validation image (None: no images).

    The baseline is the task's first (bicubic for super-resolution, the blurred input for deblurring);
    images are ``(3, H, W)`` CPU tensors in [0, 1].
    """
    if len(data) == 0:
        return None
    net.eval()
    name = task.baselines[0] if task.baselines else "input"
    target = None
    if isinstance(data, EvalSet):
        inp, target = data[0].input, data[0].target
        base = task.baseline(task.baselines[0], inp) if task.baselines else inp
    else:
        batch, tgt = legacy_pair(task, data[0], torch.device("cpu"))
        inp, target = batch[0], tgt[0]
        base = inp
        if (task.scale or 1) > 1:  # a legacy task has no baseline(): MATLAB bicubic, as before
            from restorekit.data.resize import imresize

            base = imresize(inp.float(), float(task.scale)).clamp(0, 1)
            name = "bicubic"
    out = net(inp[None].to(device)).float()[0].clamp(0, 1).cpu()
    base = base.float().clamp(0, 1).cpu()
    if target is not None:
        target = target.float().clamp(0, 1).cpu()
        if target.shape[0] == 1:
            target = target.expand(3, -1, -1)
    if base.shape[0] == 1:
        base, out = base.expand(3, -1, -1), out.expand(3, -1, -1)
    return base, out, target, name
