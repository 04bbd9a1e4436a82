"""What an evaluation produces: per-image scores and their plain mean, as in the papers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ImageScore:
    """The metrics of one evaluated image.

    Attributes:
        name: The image's name (path below the data folder, without suffix).
        metrics: Metric name to value, as the task computes them (``psnr_y``, ``ssim_y``, ...).
    """

    name: str
    metrics: dict[str, float]


def mean_metrics(images: Sequence[ImageScore], names: Sequence[str]) -> dict[str, float]:
    """The plain average of each metric over *images* (NaN when there are none).

    Validation and ``restore eval`` both average with this one function, summing in image order and
    dividing once, so the two report the same floats bit for bit.
    """
    count = len(images)
    return {key: (sum(image.metrics[key] for image in images) / count if count else math.nan) for key in names}


@dataclass
class EvaluationResult:
    """Per-image metrics of one evaluation run and how they were obtained.

    Attributes:
        task: The registered task's name (``super_resolution``, ``deblurring``, or a plugin's).
        model: The model's name (the baseline's name for a baseline).
        scale: The upscaling factor (1 when the task keeps the size).
        data: The folder of reference images.
        images: One :class:`ImageScore` per image, in file order.
        settings: The protocol and inference settings (LR source, border, tiling, device, ...).
        metric_order: The task's metrics in table order; empty: the first image's keys.
        metric_info: For each registered metric, its direction, whether it needs a reference, its colour
            space and protocol (:meth:`restorekit.metrics.registry.MetricSpec.to_dict`).
    """

    task: str
    model: str
    scale: int
    data: str
    images: list[ImageScore]
    settings: dict[str, Any] = field(default_factory=dict)
    metric_order: tuple[str, ...] = ()
    metric_info: list[dict[str, Any]] = field(default_factory=list)

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The metrics of this task, in table order."""
        if self.metric_order:
            return self.metric_order
        return tuple(self.images[0].metrics) if self.images else ()

    @property
    def mean(self) -> dict[str, float]:
        """The average of every metric over the images (NaN when there are none)."""
        return mean_metrics(self.images, self.metric_names)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary; non-finite values (identical images give infinite PSNR) become None."""
        return {
            "task": self.task,
            "model": self.model,
            "scale": self.scale,
            "data": self.data,
            "settings": dict(self.settings),
            "count": len(self.images),
            "images": [{"name": im.name, **{k: _finite(v) for k, v in im.metrics.items()}} for im in self.images],
            "mean": {k: _finite(v) for k, v in self.mean.items()},
            "metrics": [dict(info) for info in self.metric_info],
        }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
