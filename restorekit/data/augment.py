"""Aligned random crops, flips and 90° rotations for image pairs (CHW tensors)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def pad_to(image: Tensor, height: int, width: int) -> Tensor:
    """Reflect-pad (replicate where the image is too small to reflect) up to at least height×width."""
    _, h, w = image.shape
    ph, pw = max(0, height - h), max(0, width - w)
    if ph == 0 and pw == 0:
        return image
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(image[None], (0, pw, 0, ph), mode=mode)[0]


def paired_random_crop(
    target: Tensor, source: Tensor | None, crop: int, scale: int, generator: torch.Generator
) -> tuple[Tensor, Tensor | None]:
    """Crop a ``crop``×``crop`` patch of *target* and the aligned ``crop/scale`` patch of *source*.

    Args:
        target: the high-resolution (or sharp) image, (C, H, W).
        source: the low-resolution (or blurred) image aligned with it, (C, H/scale, W/scale), or None.
        crop: patch size on the target side; must be a multiple of *scale*.
        scale: target size / source size.
        generator: where the crop position comes from.
    """
    small = crop // scale
    if source is None:
        target = pad_to(target, crop, crop)
        _, h, w = target.shape
        top = int(torch.randint(0, h - crop + 1, (1,), generator=generator)) // scale * scale
        left = int(torch.randint(0, w - crop + 1, (1,), generator=generator)) // scale * scale
        return target[:, top : top + crop, left : left + crop], None
    source = pad_to(source, small, small)
    target = pad_to(target, source.shape[1] * scale, source.shape[2] * scale)
    _, h, w = source.shape
    top = int(torch.randint(0, h - small + 1, (1,), generator=generator))
    left = int(torch.randint(0, w - small + 1, (1,), generator=generator))
    patch = source[:, top : top + small, left : left + small]
    target = target[:, top * scale : top * scale + crop, left * scale : left * scale + crop]
    return target, patch


def random_flip_rotate(
    images: list[Tensor], generator: torch.Generator, *, hflip: bool = True, vflip: bool = True, rot90: bool = True
) -> list[Tensor]:
    """Apply one random choice of flips and 90° rotation to every image alike (the 8 dihedral views)."""
    draws = torch.rand(3, generator=generator)
    out = []
    for image in images:
        if hflip and draws[0] < 0.5:
            image = image.flip(-1)
        if vflip and draws[1] < 0.5:
            image = image.flip(-2)
        if rot90 and draws[2] < 0.5:
            image = image.transpose(-1, -2)
        out.append(image.contiguous())
    return out
