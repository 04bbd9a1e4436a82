"""The one training dataset: aligned random crops of paired images, with an optional on-device degradation.

Every item is a function of its :class:`~restorekit.data.sampling.SampleKey` alone (crop position,
flips, degradation parameters), so the stream is reproducible across resumes, workers and processes.
Both built-in tasks train on :class:`PairedCrops`: super-resolution on HR images (LR made on the device)
or EDSR pairs, deblurring on blurred/sharp pairs or on sharp images blurred on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import Dataset

from restorekit.data.augment import pad_to, random_flip_rotate
from restorekit.data.folders import DataError
from restorekit.data.sampling import SampleKey, key_index, sample_generator
from restorekit.data.sources import ImagePair, PairLoader, as_float

__all__ = ["PairedCrops", "SampleDegradation", "crop_with_margin", "degrade_batch"]


class SampleDegradation(Protocol):
    """A degradation made on the device from a target crop with context (e.g. camera shake).

    Attributes:
        margin: target pixels of context each side of the crop that :meth:`apply` consumes.
    """

    @property
    def margin(self) -> int: ...

    def draw(self, generator: torch.Generator) -> dict[str, Tensor]:
        """This sample's parameters, drawn from its key's generator (collated into the batch)."""
        ...

    def apply(self, context: Tensor, params: dict[str, Tensor]) -> Tensor:
        """The degraded inputs of a batch of contexts, on the device."""
        ...


def crop_with_margin(image: Tensor, top: int, left: int, size: int, margin: int) -> Tensor:
    """``image[:, top - margin : top + size + margin, ...]``, reflecting where it leaves the image."""
    _, h, w = image.shape
    t0, l0 = top - margin, left - margin
    t1, l1 = top + size + margin, left + size + margin
    region = image[:, max(t0, 0) : min(t1, h), max(l0, 0) : min(l1, w)]
    pads = (max(0, -l0), max(0, l1 - w), max(0, -t0), max(0, t1 - h))
    if any(pads):
        rh, rw = region.shape[-2:]
        mode = "reflect" if max(pads[:2]) < rw and max(pads[2:]) < rh else "replicate"
        region = F.pad(as_float(region)[None], pads, mode=mode)[0]
    return region


class PairedCrops(Dataset):
    """Random aligned crops: ``target``, ``input`` (paired data) and, with a degradation, ``context`` and
    its parameters.

    Items (CPU tensors; images float in [0, 1]):

    * ``target``: the target crop ``(3, crop, crop)``;
    * ``input``: the aligned input crop ``(3, crop/scale, crop/scale)`` when the pair has an input file;
    * with *degradation*: ``context`` (the target crop with ``degradation.margin`` pixels each side) and
      the values of ``degradation.draw``; for paired data also ``synthetic`` (bool), which says whether
      the degraded context replaces ``input`` (see :func:`degrade_batch`);
    * with *sample_seed*: ``sample_seed`` (int64), drawn from the sample's key, for degradations made on
      the device from the whole batch (super-resolution's pipeline seeds its generator with them).

    Args:
        pairs: the images (all paired, or all target-only).
        crop: crop side on the target side (a multiple of *scale*).
        scale: target size / input size.
        hflip: random horizontal flips.
        vflip: random vertical flips.
        rot90: random 90° rotations (transpositions).
        degradation: made on the device from the context; required for target-only data unless the task
            makes its inputs otherwise (super-resolution's bicubic downscale).
        degrade_prob: with paired data, the fraction of samples whose input is replaced by the degradation.
        cache: keep decoded images in memory as 8-bit.
        skip_bad: replace an unreadable pair by the next one, with a warning, instead of stopping.
        max_pixels: Pillow's decompression-bomb limit for these files.
        target_label: what the target is called in size-mismatch messages.
        sample_seed: add a ``sample_seed`` to every item.

    Raises:
        DataError: no images.
    """

    def __init__(
        self,
        pairs: Sequence[ImagePair],
        *,
        crop: int,
        scale: int = 1,
        hflip: bool = True,
        vflip: bool = True,
        rot90: bool = True,
        degradation: SampleDegradation | None = None,
        degrade_prob: float = 1.0,
        cache: bool = False,
        skip_bad: bool = False,
        max_pixels: int | None = None,
        target_label: str = "sharp",
        sample_seed: bool = False,
    ):
        if not pairs:
            raise DataError("no training images")
        self.pairs = list(pairs)
        self.crop, self.scale = crop, scale
        self.hflip, self.vflip, self.rot90 = hflip, vflip, rot90
        self.paired = self.pairs[0].paired
        self.degradation = degradation
        self.degrade_prob = 1.0 if not self.paired else float(degrade_prob)
        self.skip_bad = skip_bad
        self.sample_seed = sample_seed
        self.loader = PairLoader(self.pairs, scale=scale, cache=cache, max_pixels=max_pixels, target_label=target_label)

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def paths(self) -> list:
        """The target (or side-by-side) file of each item."""
        return [p.target for p in self.pairs]

    def __getitem__(self, key: SampleKey | int) -> dict[str, Tensor]:
        _, source, target = self.loader.load_or_substitute(key_index(key) % len(self), self.skip_bad)
        generator = sample_generator(key)
        crop, scale = self.crop, self.scale
        small = crop // scale
        too_small = target.shape[1] < crop or target.shape[2] < crop
        if source is not None:
            too_small = too_small or source.shape[1] < small or source.shape[2] < small
        if too_small:  # reflect padding needs floats
            target, source = as_float(target), None if source is None else as_float(source)
        if source is None:
            target = pad_to(target, crop, crop)
            _, h, w = target.shape
            top = int(torch.randint(0, h - crop + 1, (1,), generator=generator)) // scale * scale
            left = int(torch.randint(0, w - crop + 1, (1,), generator=generator)) // scale * scale
            views = [target[:, top : top + crop, left : left + crop]]
        else:
            source = pad_to(source, small, small)
            target = pad_to(target, source.shape[1] * scale, source.shape[2] * scale)
            _, h, w = source.shape
            top_s = int(torch.randint(0, h - small + 1, (1,), generator=generator))
            left_s = int(torch.randint(0, w - small + 1, (1,), generator=generator))
            top, left = top_s * scale, left_s * scale
            views = [target[:, top : top + crop, left : left + crop], source[:, top_s : top_s + small, left_s : left_s + small]]
        if self.degradation is not None:
            views.append(crop_with_margin(target, top, left, crop, self.degradation.margin))
        # The same flips for all views; the margin is symmetric, so the context stays centred on the target.
        views = [as_float(v) for v in views]
        views = random_flip_rotate(views, generator, hflip=self.hflip, vflip=self.vflip, rot90=self.rot90)
        item = {"target": views[0]}
        if source is not None:
            item["input"] = views[1]
        if self.degradation is not None:
            item["context"] = views[-1]
            if self.paired:
                item["synthetic"] = torch.rand((), generator=generator) < self.degrade_prob
            item.update(self.degradation.draw(generator))
        if self.sample_seed:  # drawn last: the draws above are the same with or without it
            item["sample_seed"] = torch.randint(0, 2**62, (), generator=generator)
        return item


def degrade_batch(
    batch: dict[str, Tensor], device: torch.device, degradation: SampleDegradation
) -> Tensor:
    """The model inputs of a :class:`PairedCrops` batch with a degradation, on *device*.

    Target-only batches are degraded whole; paired batches keep their ``input`` except where
    ``synthetic`` is set.
    """
    context = batch["context"].to(device, non_blocking=True)
    if "synthetic" in batch:
        inputs = batch["input"].to(device, non_blocking=True).clone()
        chosen = batch["synthetic"].to(torch.bool).flatten().nonzero().flatten()
    else:
        inputs = None
        chosen = torch.arange(context.shape[0])
    if inputs is not None and len(chosen) == 0:
        return inputs
    skip = {"context", "synthetic", "input", "target", "sample_seed"}
    params = {k: v.index_select(0, chosen).to(device, non_blocking=True) for k, v in batch.items() if k not in skip}
    degraded = degradation.apply(context.index_select(0, chosen.to(device)), params)
    if inputs is None:
        return degraded
    inputs.index_copy_(0, chosen.to(device), degraded.to(inputs.dtype))
    return inputs
