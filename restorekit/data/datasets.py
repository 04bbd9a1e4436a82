"""Datasets of image files, kept for code written against earlier versions.

The training dataset is :class:`~restorekit.data.crops.PairedCrops` (both tasks); whole evaluation
images come from a task's :meth:`~restorekit.tasks.base.Task.benchmark`. :class:`CropDataset` is the
earlier name and argument list of the crop dataset (lists of target and source files).
"""

from __future__ import annotations

from pathlib import Path

from restorekit.data.crops import PairedCrops
from restorekit.data.sources import ImagePair, check_readable

__all__ = ["CropDataset", "check_readable"]


class CropDataset(PairedCrops):
    """Random aligned crops of *targets* and, optionally, their *sources* (same order).

    Items are ``{"target", "input"?}``; see :class:`~restorekit.data.crops.PairedCrops`.

    Raises:
        ValueError: *targets* and *sources* differ in length.
    """

    def __init__(
        self,
        targets: list[Path],
        sources: list[Path] | None = None,
        *,
        crop: int,
        scale: int = 1,
        flip: bool = True,
        rot90: bool = True,
        cache: bool = False,
        skip_bad: bool = False,
        max_pixels: int | None = None,
    ):
        if sources is not None and len(sources) != len(targets):
            raise ValueError("targets and sources differ in length")
        pairs = [ImagePair(t.stem, t, None if sources is None else sources[i]) for i, t in enumerate(targets)]
        super().__init__(
            pairs, crop=crop, scale=scale, hflip=flip, vflip=flip, rot90=rot90,
            cache=cache, skip_bad=skip_bad, max_pixels=max_pixels, target_label="HR",
        )  # fmt: skip
        self.targets, self.sources = targets, sources
