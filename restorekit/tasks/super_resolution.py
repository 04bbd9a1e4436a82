"""Single-image super-resolution.

Training reads HR image folders (random crops, flips, 90° rotations); the LR input is made on the
device with the MATLAB-compatible bicubic downscale — the protocol behind every published SR table —
rounded to 8 bits like the benchmark files, then optionally degraded further (blur, noise, JPEG).
Paired LR/HR folders (EDSR layout understood) work too. Validation reports PSNR and SSIM on the Y
channel with ``scale`` border pixels shaved and the output rounded to 8 bits first, plus RGB PSNR; the
``metrics`` argument chooses other registered metrics (LPIPS, NIQE, ...), under the same protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from restorekit.data.crops import PairedCrops
from restorekit.data.degradations import DegradationPipeline
from restorekit.data.realesrgan_degradation import usm_sharpen
from restorekit.data.folders import DataError
from restorekit.data.images import load_rgb
from restorekit.data.pairs import lr_folder
from restorekit.data.resize import imresize
from restorekit.data.sources import check_readable, edsr_hr_root, edsr_lr_root, sr_pairs, to_uint8
from restorekit.tasks.base import EvalSet, PreviewPanel, Task


def round_to_8bit(x: Tensor) -> Tensor:
    """Clamp to [0, 1] and round to 1/255 steps, as an 8-bit LR file would be."""
    return torch.round(x.clamp(0, 1) * 255) / 255


def _batch_generator(batch: dict[str, Tensor], device: torch.device) -> torch.Generator | None:
    """A generator for the batch's degradations, seeded from its samples' seeds (None without them).

    The samples' seeds are a function of the run's seed and position alone, so the degradations are too:
    a resumed run, or one with other data-loader workers, degrades exactly as an uninterrupted one. (The
    global generator would not do: ``DataLoader`` draws its base seed from it when a resumed run starts.)
    """
    seeds = batch.get("sample_seed")
    if seeds is None:
        return None
    mixed = 0
    for seed in seeds.flatten().tolist():
        mixed = (mixed * 0x9E3779B97F4A7C15 + int(seed)) % (2**63)
    return torch.Generator(device=device).manual_seed(mixed)


class SuperResolution(Task):
    """Super-resolution by an integer factor.

    Args:
        scale: upscaling factor (2, 3, 4, 8, ...).
        degradations: extra training degradations applied to the bicubic LR, e.g.
            ``[{type = "blur", sigma = [0.2, 2.0], prob = 0.5}, {type = "noise", sigma = [0, 0.02]},
            {type = "jpeg", quality = [40, 95], prob = 0.3}]``; or a chain that ends with
            ``{type = "resize", size = "output"}`` (Real-ESRGAN's second-order model, see the
            ``realesrgan_*`` recipes), which makes the LR from the HR crop instead of the bicubic
            downscale (:class:`~restorekit.data.degradations.DegradationPipeline` lists the steps).
        sharpen_target: train against the unsharp-masked HR, as Real-ESRGAN does (weight 0.5, a 51-pixel
            window, threshold 10 levels; :func:`~restorekit.data.realesrgan_degradation.usm_sharpen`); a
            degradation chain that starts from the HR starts from the sharpened one.
        metrics: registered metrics to validate with, in table order (``["psnr_y", "ssim_y", "lpips"]``;
            ``psnr`` and ``ssim`` mean ``psnr_y`` and ``ssim_y``); ``scale`` border pixels are shaved
            for every one. ``psnr_y`` is always measured (put first when left out): the trainer ranks
            validations by it. Default: ``psnr_y``, ``ssim_y``, ``psnr_rgb``.

    Example:
        >>> task = SuperResolution(scale=4)
        >>> lr, hr = task.make_batch({"target": torch.rand(2, 3, 96, 96)}, torch.device("cpu"))
        >>> tuple(lr.shape)
        (2, 3, 24, 24)
    """

    name = "super_resolution"
    primary_metric = "psnr_y"
    metric_names = ("psnr_y", "ssim_y", "psnr_rgb")
    metric_aliases = MappingProxyType({"psnr": "psnr_y", "ssim": "ssim_y"})
    baselines = ("bicubic",)

    def __init__(
        self,
        *,
        scale: int | None = None,
        degradations: list[dict[str, Any]] | None = None,
        sharpen_target: bool = False,
        metrics: list[str] | None = None,
    ):
        self.scale = scale
        self.degradations = DegradationPipeline(degradations or [])
        if not isinstance(sharpen_target, bool):
            raise ValueError(f"sharpen_target must be true or false, got {sharpen_target!r}")
        self.sharpen_target = sharpen_target
        # A subclass that clears the class attribute (tasks of earlier versions) still gets the defaults.
        default = type(self).metric_names or SuperResolution.metric_names
        self.metric_names = default if metrics is None else self.choose_metrics(metrics, keep_primary=True)

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
        if lr is not None and self.degradations.resizes_to_output:
            raise DataError(
                "data.train.lr: task.args.degradations makes the LR from the HR (it ends with a resize to the "
                "output size); leave data.train.lr out, or use first-order steps only"
            )
        pairs = sr_pairs(hr, lr, scale=s, include=include, key="data.train")
        if lr is None:
            readable = set(check_readable([p.target for p in pairs], skip_bad=skip_bad))
            pairs = [p for p in pairs if p.target in readable]
        return PairedCrops(
            pairs, crop=crop, scale=s, hflip=flip, vflip=flip, rot90=rot90,
            cache=cache, skip_bad=skip_bad, max_pixels=max_pixels, target_label="HR",
            sample_seed=len(self.degradations) > 0,
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
        if training and self.sharpen_target:
            hr = usm_sharpen(hr)
        generator = _batch_generator(batch, device) if training else None
        given = batch.get("input", batch.get("source"))  # "source": datasets of earlier versions
        if given is not None:
            lr = given.to(device, non_blocking=True)
        elif training and self.degradations.resizes_to_output:
            s = self._need_scale()
            size = (hr.shape[-2] // s, hr.shape[-1] // s)
            return round_to_8bit(self.degradations(hr, output_size=size, generator=generator)), hr
        else:
            lr = self.downscale(hr)
        if training and len(self.degradations) and not self.degradations.resizes_to_output:
            lr = round_to_8bit(self.degradations(lr, generator=generator))
        return lr, hr

    def metric_border(self) -> int:
        """The SR protocol shaves ``scale`` pixels from each side."""
        return self._need_scale()

    def metrics(self, output: Tensor, target: Tensor) -> dict[str, float]:
        """The chosen metrics (default PSNR-Y, SSIM-Y, RGB PSNR), ``scale`` border pixels shaved, output 8-bit."""
        return self.metric_set()(output, target)

    def preview(self, model_input: Tensor, output: Tensor, target: Tensor) -> Tensor:
        """LR (nearest-neighbour enlarged) | output | HR, one (3, H, 3W) image."""
        lr_big = F.interpolate(model_input[:1].float(), scale_factor=self._need_scale(), mode="nearest")[0]
        h, w = target.shape[-2], target.shape[-1]
        parts = [lr_big[:, :h, :w], output[0].float()[:, :h, :w], target[0].float()]
        return torch.cat([p.clamp(0, 1).cpu() for p in parts], dim=-1)

    def preview_panels(self, model_input: Tensor, output: Tensor, target: Tensor) -> list[PreviewPanel]:
        """LR (nearest-neighbour enlarged, so its pixels show) | bicubic | output | HR."""
        s = self._need_scale()
        lr = model_input[:1].float()
        h, w = target.shape[-2], target.shape[-1]
        lr_big = F.interpolate(lr, scale_factor=s, mode="nearest")[0]
        bicubic = self.baseline("bicubic", lr[0].clamp(0, 1).cpu())
        return [
            PreviewPanel(f"LR (x{s} nearest)", lr_big[:, :h, :w].clamp(0, 1).cpu(), scored=False),
            PreviewPanel("bicubic", bicubic[:, :h, :w].clamp(0, 1).cpu()),
            PreviewPanel("output", output[0].float()[:, :h, :w].clamp(0, 1).cpu()),
            PreviewPanel("HR", target[0].float().clamp(0, 1).cpu(), scored=False),
        ]
