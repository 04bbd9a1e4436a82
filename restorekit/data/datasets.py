"""Datasets of image files: random aligned crops for training, whole images for validation.

Training items are derived from a :class:`~restorekit.data.sampling.SampleKey` alone (crop position,
flips), so that the stream is reproducible across resumes, workers and processes.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from restorekit.data.augment import paired_random_crop, random_flip_rotate
from restorekit.data.folders import DataError
from restorekit.data.images import ImageReadError, load_rgb
from restorekit.data.sampling import SampleKey, key_index, sample_generator


def check_readable(files: list[Path], *, skip_bad: bool) -> list[Path]:
    """Open every file's header before training starts; report all unreadable ones at once.

    Returns the readable files (all of them unless *skip_bad*).

    Raises:
        DataError: some files cannot be read and *skip_bad* is off.
    """
    from PIL import Image, UnidentifiedImageError

    bad: list[str] = []
    good: list[Path] = []
    for path in files:
        try:
            if path.stat().st_size == 0:
                raise ValueError("empty file")
            with Image.open(path) as img:
                img.size  # noqa: B018 - the header is parsed on open
            good.append(path)
        except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
            reason = "not an image file" if isinstance(exc, UnidentifiedImageError) else str(exc)
            bad.append(f"{path}: {reason}")
    if bad and not skip_bad:
        more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
        raise DataError("; ".join(bad[:3]) + more + " — fix or remove them, or set data.train.skip_bad = true")
    for line in bad:
        warnings.warn(f"skipping unreadable image {line}", stacklevel=2)
    if not good:
        raise DataError(f"{files[0].parent if files else '?'}: no readable images")
    return good


def _as_float(image: Tensor) -> Tensor:
    return image.float() / 255 if image.dtype == torch.uint8 else image


class CropDataset(Dataset):
    """Random aligned crops of target images and, optionally, their paired source images.

    Args:
        targets: target files (HR or sharp).
        sources: aligned source files (LR or blurred), same order, or None to make sources on the fly.
        crop: crop side on the target side (a multiple of *scale*).
        scale: target size / source size.
        flip: random horizontal and vertical flips.
        rot90: random 90° rotations.
        cache: keep decoded images in memory as 8-bit (small datasets such as T91).
        skip_bad: replace an image that fails to decode by another one (with a warning) instead of
            stopping the run.
        max_pixels: raise Pillow's decompression-bomb limit for these files.
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
        self.targets, self.sources = targets, sources
        self.crop, self.scale, self.flip, self.rot90 = crop, scale, flip, rot90
        self.cache, self.skip_bad, self.max_pixels = cache, skip_bad, max_pixels
        self._cache: dict[int, tuple[Tensor, Tensor | None]] = {}

    def __len__(self) -> int:
        return len(self.targets)

    def _load(self, index: int) -> tuple[Tensor, Tensor | None]:
        if index in self._cache:
            return self._cache[index]  # 8-bit; converted to float after cropping
        tgt = load_rgb(self.targets[index], max_pixels=self.max_pixels)
        src = None if self.sources is None else load_rgb(self.sources[index], max_pixels=self.max_pixels)
        if self.sources is not None and src is not None:
            expect = (src.shape[1] * self.scale, src.shape[2] * self.scale)
            if tgt.shape[1] < expect[0] or tgt.shape[2] < expect[1]:
                raise DataError(
                    f"{self.sources[index]}: size {src.shape[2]}x{src.shape[1]} does not match "
                    f"{self.targets[index].name} ({tgt.shape[2]}x{tgt.shape[1]}) at scale {self.scale}"
                )
        if self.cache:
            self._cache[index] = (
                (tgt * 255).round().to(torch.uint8),
                None if src is None else (src * 255).round().to(torch.uint8),
            )
        return tgt, src

    def __getitem__(self, key: SampleKey | int) -> dict[str, Tensor]:
        index = key_index(key)
        for attempt in range(len(self)):
            try:
                tgt, src = self._load((index + attempt) % len(self))
                break
            except ImageReadError as exc:
                if not self.skip_bad:
                    raise
                warnings.warn(f"skipping unreadable image {exc}", stacklevel=2)
        else:
            raise DataError("no readable image left in the dataset")
        generator = sample_generator(key)
        if tgt.dtype == torch.uint8 and (tgt.shape[1] < self.crop or tgt.shape[2] < self.crop):
            tgt, src = _as_float(tgt), None if src is None else _as_float(src)  # padding needs floats
        tgt, src = paired_random_crop(tgt, src, self.crop, self.scale, generator)
        tgt, src = _as_float(tgt), None if src is None else _as_float(src)
        views = random_flip_rotate(
            [tgt] if src is None else [tgt, src], generator, hflip=self.flip, vflip=self.flip, rot90=self.rot90
        )
        item = {"target": views[0]}
        if src is not None:
            item["source"] = views[1]
        return item


class WholeImageDataset(Dataset):
    """Whole images for validation: ``{"target", "source"?, "name"}``, target cropped to a multiple of scale."""

    def __init__(
        self,
        targets: list[Path],
        sources: list[Path] | None = None,
        *,
        scale: int = 1,
        max_pixels: int | None = None,
    ):
        self.targets, self.sources, self.scale, self.max_pixels = targets, sources, scale, max_pixels

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> dict[str, Tensor | str]:
        tgt = load_rgb(self.targets[index], max_pixels=self.max_pixels)
        h, w = tgt.shape[1] - tgt.shape[1] % self.scale, tgt.shape[2] - tgt.shape[2] % self.scale
        item: dict[str, Tensor | str] = {"target": tgt[:, :h, :w], "name": self.targets[index].stem}
        if self.sources is not None:
            src = load_rgb(self.sources[index], max_pixels=self.max_pixels)
            if src.shape[1] * self.scale != h or src.shape[2] * self.scale != w:
                raise DataError(
                    f"{self.sources[index]}: size {src.shape[2]}x{src.shape[1]} does not match "
                    f"{self.targets[index].name} ({w}x{h} after cropping to a multiple of {self.scale})"
                )
            item["source"] = src
        return item
