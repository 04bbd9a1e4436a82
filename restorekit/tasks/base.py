"""The contract between a task and the trainer."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset


class Task:
    """Base class for tasks; subclasses take explicit keyword arguments (the recipe's ``task.args``).

    Attributes:
        name: registry name.
        scale: output size / input size (1 for deblurring).
        primary_metric: the validation metric used to rank models (``psnr_y``, ``psnr``).
    """

    name = "task"
    scale = 1
    primary_metric = "psnr"

    def train_data(self, **settings: Any) -> Dataset:
        """Training dataset from the recipe's ``data.train`` table.

        Items are dicts of CPU float tensors in [0, 1], CHW, all of one size so that they batch.
        """
        raise NotImplementedError

    def val_data(self, **settings: Any) -> Dataset:
        """Validation dataset from the recipe's ``data.val`` table; whole images, batch size 1."""
        raise NotImplementedError

    def make_batch(
        self, batch: dict[str, Tensor], device: torch.device, *, training: bool = True
    ) -> tuple[Tensor, Tensor]:
        """Move a loaded batch to *device* and return ``(model_input, target)``.

        Degradations that can run batched on the device (bicubic downscale, blur, noise) run here;
        random ones only when *training* (validation inputs are deterministic).
        """
        raise NotImplementedError

    def metrics(self, output: Tensor, target: Tensor) -> dict[str, float]:
        """Validation metrics of one ``(1, C, H, W)`` output against its target."""
        raise NotImplementedError

    def baseline_metrics(self, model_input: Tensor, target: Tensor) -> dict[str, float]:
        """Metrics of the trivial answer (bicubic upscale, the blurred input): what a model must beat."""
        raise NotImplementedError

    def preview(self, model_input: Tensor, output: Tensor, target: Tensor) -> Tensor:
        """One ``(3, H, W)`` image showing input | output | target side by side."""
        raise NotImplementedError
