"""Single-image super-resolution.

Training reads HR image folders (random crops, flips, 90° rotations); the LR input is made on the
device with the MATLAB-compatible bicubic downscale — the protocol behind every published SR table —
rounded to 8 bits like the benchmark files, then optionally degraded further (blur, noise, JPEG).
Paired LR/HR folders (EDSR layout understood) work too. Validation reports PSNR and SSIM on the Y
channel with ``scale`` border pixels shaved and the output rounded to 8 bits first.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from restorekit.data.crops import PairedCrops
from restorekit.data.degradations import DegradationPipeline
from restorekit.data.folders import DataError
from restorekit.data.images import load_rgb
from restorekit.data.pairs import lr_folder
from restorekit.data.resize import imresize
from restorekit.metrics import psnr, ssim
from restorekit.data.sources import check_readable, edsr_hr_root, edsr_lr_root, sr_pairs, to_uint8
from restorekit.tasks.base import EvalSet, Task


def round_to_8bit(x: Tensor) -> Tensor:
    """Clamp to [0, 1] and round to 1/255 steps, as an 8-bit LR file would be."""
    return torch.round(x.clamp(0, 1) * 255) / 255


class SuperResolution(Task):
    """Super-resolution by an integer factor.

    Args:
        scale: upscaling factor (2, 3, 4, 8, ...).
        degradations: extra training degradations applied to the bicubic LR, e.g.
            ``[{type = "blur", sigma = [0.2, 2.0], prob = 0.5}, {type = "noise", sigma = [0, 0.02]},
            {type = "jpeg", quality = [40, 95], prob = 0.3}]``.

    Example:
        >>> task = SuperResolution(scale=4)
        >>> lr, hr = task.make_batch({"target": torch.rand(2, 3, 96, 96)}, torch.device("cpu"))
        >>> tuple(lr.shape)
        (2, 3, 24, 24)
    """

    name = "super_resolution"
    primary_metric = "psnr_y"
    metric_names = ("psnr_y", "ssim_y", "psnr_rgb")
    baselines = ("bicubic",)

    def __init__(self, *, scale: int | None = None, degradations: list[dict[str, Any]] | None = None):
        self.scale = scale
        self.degradations = DegradationPipeline(degradations or [])

    @property
    def scale(self) -> int | None:  # type: ignore[override]
        """The upscaling factor; None until the recipe's generator (or the caller) sets it."""
        return self._scale

    @scale.setter
    def scale(self, value: int | None) -> None:
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 16):
            raise ValueError(f"scale must be an integer from 1 to 16, got {value!r}")
        self._scale = value

    def _need_scale(self) -> int:
        if self._scale is None:
            raise ValueError(
                "super_resolution: the scale is not set; give the generator a scale (the task takes it from "
                "there) or SuperResolution(scale=...)"
            )
        return self._scale

    def train_data(
        self,
        *,
        hr: str | list[str],
        lr: str | list[str] | None = None,
        include: list[str] | None = None,
        crop: int = 96,
        flip: bool = True,
        rot90: bool = True,
        cache: bool = False,
        skip_bad: bool = False,
        max_pixels: int | None = None,
    ) -> PairedCrops:
        """Random HR crops (and aligned LR crops when *lr* is given).

        Args:
            hr: HR image folder(s); ``pkg:PACKAGE/folder`` points inside an installed package.
            lr: paired LR folder (``NAME.png`` or ``NAMExS.png``; an ``XS`` sub-folder is found).
            include: only these file names (or stems) from the folders.
            crop: HR crop side; a multiple of the scale.
            flip: random horizontal/vertical flips.
            rot90: random 90° rotations.
            cache: keep decoded images in memory (8-bit).
            skip_bad: skip images that cannot be read (with a warning) instead of stopping.
            max_pixels: raise Pillow's decompression-bomb limit.
        """
        s = self._need_scale()
        if crop % s or crop < s:
            raise DataError(f"data.train.crop: {crop} is not a positive multiple of the scale {s}")
        pairs = sr_pairs(hr, lr, scale=s, include=include, key="data.train")
        if lr is None:
            readable = set(check_readable([p.target for p in pairs], skip_bad=skip_bad))
            pairs = [p for p in pairs if p.target in readable]
        return PairedCrops(
            pairs, crop=crop, scale=s, hflip=flip, vflip=flip, rot90=rot90,
            cache=cache, skip_bad=skip_bad, max_pixels=max_pixels, target_label="HR",
        )  # fmt: skip

    def val_data(
        self,
        *,
        hr: str | list[str],
        lr: str | None = None,
        include: list[str] | None = None,
        limit: int | None = None,
        max_pixels: int | None = None,
    ) -> EvalSet:
        """Whole validation images, made exactly as ``restore eval`` makes them (see :meth:`benchmark`).

        Args:
            hr: HR folder(s), or an EDSR root holding ``HR/``.
            lr: paired LR folder (EDSR layout understood); None: MATLAB bicubic of the 8-bit HR.
            include: only these file names (or stems).
            limit: use only the first N images.
            max_pixels: raise Pillow's decompression-bomb limit.
        """
        return self.benchmark(hr, inputs=lr, include=include, limit=limit, max_pixels=max_pixels)

    def benchmark(
        self,
        data: str | Path | list[str],
        *,
        inputs: str | Path | None = None,
        include: Sequence[str] | None = None,
        limit: int | None = None,
        max_pixels: int | None = None,
    ) -> EvalSet:
        """The published SR protocol's images: HR cropped to a multiple of the scale, and its LR input.

        The LR input is the shipped file when *inputs* is given (``LR_bicubic/X4/NAMEx4.png`` understood;
        an EDSR root means its ``LR_bicubic``), otherwise MATLAB's ``imresize(hr, 1/scale)`` of the 8-bit
        HR in ``uint8`` arithmetic, which reproduces the shipped files bit for bit.

        Args:
            data: HR folder(s), or an EDSR benchmark root holding ``HR/``.
            inputs: LR folder matched by name (``NAME.png`` or ``NAMExS.png``).
            include: only these file names (or stems).
            limit: only the first N images.
            max_pixels: raise Pillow's decompression-bomb limit.

        Raises:
            DataError: missing folders, LR files missing or of the wrong size, an HR image smaller than
                the scale.
            ValueError: the scale is not set.

        Example:
            >>> images = SuperResolution(scale=4).benchmark("Set5/HR")  # doctest: +SKIP
            >>> images[0].name, tuple(images[0].input.shape)  # doctest: +SKIP
            ('baby', (3, 128, 128))
        """
        s = self._need_scale()
        pairs = sr_pairs(data, inputs, scale=s, include=include, key="data.val")
        if limit is not None:
            pairs = pairs[:limit]
        hr_root = edsr_hr_root(data if isinstance(data, (str, Path)) else data[0])
        lr_root = None if inputs is None else edsr_lr_root(inputs)

        def load(index: int) -> tuple[Tensor, Tensor]:
            pair = pairs[index]
            hr = load_rgb(pair.target, max_pixels=max_pixels)
            height, width = hr.shape[-2] // s * s, hr.shape[-1] // s * s
            if height < 1 or width < 1:
                raise DataError(f"{pair.target}: {hr.shape[-1]}x{hr.shape[-2]} is smaller than the scale x{s}")
            hr = hr[:, :height, :width]
            if pair.source is None:
                lr8 = imresize(to_uint8(hr), 1 / s)
            else:
                lr8 = to_uint8(load_rgb(pair.source, max_pixels=max_pixels))
                if tuple(lr8.shape[-2:]) != (height // s, width // s):
                    raise DataError(
                        f"{pair.source}: LR image is {lr8.shape[-1]}x{lr8.shape[-2]}, expected "
                        f"{width // s}x{height // s} for {pair.target.name} at x{s}"
                    )
            return lr8.float() / 255.0, hr

        settings = {
            "protocol": f"Y (BT.601) PSNR/SSIM with {s} border pixels shaved, RGB PSNR; output rounded to 8 bits",
            "border": s,
            "lr_source": "files" if lr_root is not None else "matlab_bicubic",
            "lr_dir": str(lr_folder(lr_root, s)) if lr_root is not None else None,
        }
        return EvalSet(hr_root, [p.name for p in pairs], [p.target for p in pairs], load, settings)

    def baseline(self, name: str, model_input: Tensor) -> Tensor:
        """``bicubic``: MATLAB's bicubic upscale of the 8-bit LR, in ``uint8`` arithmetic as the tables do."""
        if name != "bicubic":
            raise ValueError(f"super_resolution has no baseline {name!r}; use 'bicubic'")
        return imresize(to_uint8(model_input), float(self._need_scale())).float() / 255.0

    def downscale(self, hr: Tensor) -> Tensor:
        """MATLAB-bicubic LR of *hr*, rounded to 8 bits (HR sides must be multiples of the scale)."""
        s = self._need_scale()
        return hr if s == 1 else round_to_8bit(imresize(hr, 1 / s))

    def make_batch(
        self, batch: dict[str, Tensor], device: torch.device, *, training: bool = True
    ) -> tuple[Tensor, Tensor]:
        hr = batch["target"].to(device, non_blocking=True)
        given = batch.get("input", batch.get("source"))  # "source": datasets of earlier versions
        if given is not None:
            lr = given.to(device, non_blocking=True)
        else:
            lr = self.downscale(hr)
        if training and len(self.degradations):
            lr = round_to_8bit(self.degradations(lr))
        return lr, hr

    def metrics(self, output: Tensor, target: Tensor) -> dict[str, float]:
        """PSNR-Y, SSIM-Y with ``scale`` border pixels shaved, and RGB PSNR (output rounded to 8 bits)."""
        border = self._need_scale()
        return {
            "psnr_y": float(psnr(output, target, border=border, channel="y").mean()),
            "ssim_y": float(ssim(output, target, border=border, channel="y").mean()),
            "psnr_rgb": float(psnr(output, target, border=border, channel="rgb").mean()),
        }

    def preview(self, model_input: Tensor, output: Tensor, target: Tensor) -> Tensor:
        """LR (nearest-neighbour enlarged) | output | HR, one (3, H, 3W) image."""
        lr_big = F.interpolate(model_input[:1].float(), scale_factor=self._need_scale(), mode="nearest")[0]
        h, w = target.shape[-2], target.shape[-1]
        parts = [lr_big[:, :h, :w], output[0].float()[:, :h, :w], target[0].float()]
        return torch.cat([p.clamp(0, 1).cpu() for p in parts], dim=-1)
