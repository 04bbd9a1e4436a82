"""Motion deblurring: paired blurred/sharp photographs or synthetic camera shake.

Data comes in the layouts DeblurGAN and its successors use (see :mod:`restorekit.data.sources`): GoPro
sequences (``blur`` or ``blur_gamma`` beside ``sharp``), two folders matched by name, side-by-side AB
images, or sharp images only, blurred on the fly with a random camera-shake kernel (Boracchi & Foi
trajectories, as DeblurGAN) or a real kernel from a file, plus optional Gaussian noise
(:class:`~restorekit.data.camera_shake.CameraShake`).

Training crops come from :class:`~restorekit.data.crops.PairedCrops`, the dataset super-resolution uses
too; synthetic blur runs batched on the device in :meth:`Deblurring.make_batch`. Validation and
``restore eval`` use :meth:`Deblurring.benchmark`: whole images, RGB PSNR/SSIM (output rounded to 8
bits, no border shaved), the usual GoPro protocol; synthetic validation blur is seeded per image.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from restorekit.data.camera_shake import CameraShake, parse_noise
from restorekit.data.crops import PairedCrops, degrade_batch
from restorekit.data.folders import DataError, resolve_data_path
from restorekit.data.motion_blur import center_kernel, load_kernels
from restorekit.data.sampling import SampleKey, sample_generator
from restorekit.data.sources import (
    LAYOUTS,
    ImagePair,
    PairLoader,
    check_blur_name,
    find_blur_pairs,
    find_sharp_images,
)
from restorekit.tasks.base import EvalSet, PreviewPanel, Task

# Moved to restorekit.data; imported from here by earlier code.
__all__ = ["LAYOUTS", "CameraShake", "Deblurring", "ImagePair", "find_blur_pairs", "find_sharp_images"]


class Deblurring(Task):
    """Blind motion deblurring (DeblurGAN and the like).

    The constructor describes the synthetic degradation; the data tables (:meth:`train_data`,
    :meth:`val_data`) say where the images are.

    Args:
        kernels: real blur kernels for synthetic blur: a ``.mat`` file (Levin et al. format), an image, or a
            folder of them (see :func:`~restorekit.data.motion_blur.load_kernels`). None (default): random
            camera-shake trajectories (Boracchi & Foi, as DeblurGAN).
        kernel_size: side of the synthetic kernels (odd). Random trajectories are at most
            ``kernel_size - 1`` pixels long; real kernels are zero-padded to it, and it grows to fit the
            largest real kernel.
        noise: Gaussian noise standard deviation added to synthetic blur, on the [0, 1] scale: one value,
            or ``[low, high]`` for a per-sample uniform draw. Real blurred images are used as they are.
        synthetic_prob: with paired data, the fraction of samples whose blurred input is replaced by
            synthetic blur of the sharp crop (DeblurGAN's mix of GoPro and synthetic blur). Sharp-only
            data (``synthetic = true``) is always blurred synthetically.
        metrics: registered metrics to validate with, in table order (``["psnr", "ssim", "lpips"]``),
            no border shaved. ``psnr`` (RGB) is always measured (put first when left out): the trainer
            ranks validations by it. Default: ``psnr``, ``ssim``.

    Raises:
        ValueError: an argument is out of range.
        restorekit.data.folders.DataError: the kernel file cannot be read.

    Example:
        >>> task = Deblurring(kernel_size=15, noise=[0.0, 0.01])
        >>> batch = {"target": torch.rand(2, 3, 32, 32), "context": torch.rand(2, 3, 46, 46),
        ...          "kernel": torch.full((2, 15, 15), 1 / 225), "noise_sigma": torch.zeros(2),
        ...          "noise_seed": torch.zeros(2, dtype=torch.int64)}
        >>> blurred, sharp = task.make_batch(batch, torch.device("cpu"))
        >>> tuple(blurred.shape)
        (2, 3, 32, 32)
    """

    name = "deblurring"
    scale = 1
    primary_metric = "psnr"
    metric_names = ("psnr", "ssim")
    baselines = ("identity", "none")

    def __init__(
        self,
        *,
        kernels: str | None = None,
        kernel_size: int = 31,
        noise: float | list[float] = 0.0,
        synthetic_prob: float = 0.0,
        metrics: list[str] | None = None,
    ):
        if not isinstance(kernel_size, int) or isinstance(kernel_size, bool) or kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be an odd integer of at least 3; got {kernel_size!r}")
        if not 0.0 <= synthetic_prob <= 1.0:
            raise ValueError(f"synthetic_prob must be in [0, 1]; got {synthetic_prob!r}")
        self.noise = parse_noise(noise)
        self.synthetic_prob = float(synthetic_prob)
        self.kernels_path = kernels
        real: tuple[Tensor, ...] | None = None
        size = kernel_size
        if kernels is not None:
            loaded = load_kernels(kernels)
            largest = max(max(k.shape) for k in loaded)
            size = max(kernel_size, largest + (1 - largest % 2))
            real = tuple(center_kernel(k, size) for k in loaded)
        self.kernel_size = size
        self.shake = CameraShake(kernel_size=size, kernels=real, noise=self.noise)
        default = type(self).metric_names or Deblurring.metric_names
        self.metric_names = default if metrics is None else self.choose_metrics(metrics, keep_primary=True)

    # -- data ---------------------------------------------------------------------------------------

    def train_data(
        self,
        *,
        root: str | None = None,
        blur: str | None = None,
        sharp: str | None = None,
        layout: str = "auto",
        gopro_blur: str = "blur",
        synthetic: bool = False,
        crop: int = 256,
        flip: bool = True,
        rotate: bool = False,
        cache: bool = False,
        skip_bad: bool = False,
        max_pixels: int | None = None,
    ) -> PairedCrops:
        """Random aligned crops of blurred/sharp pairs, or of sharp images blurred synthetically.

        Args:
            root: a GoPro root (``SEQUENCE/blur`` + ``SEQUENCE/sharp``, or ``blur``/``sharp`` directly)
                or a folder of side-by-side images (blurred A left, sharp B right); with *synthetic*, any
                folder of sharp images (a GoPro root contributes its ``sharp`` frames).
            blur: folder of blurred images, matched to *sharp* by file name.
            sharp: folder of sharp images (the only folder needed with *synthetic*).
            layout: ``"auto"`` (detect), ``"gopro"``, ``"folders"`` or ``"ab"``.
            gopro_blur: ``"blur"`` or ``"blur_gamma"``: which GoPro blurred frames to use.
            synthetic: blur the sharp images synthetically instead of reading blurred ones.
            crop: crop side (DeblurGAN: 256).
            flip: random horizontal flips (DeblurGAN's augmentation).
            rotate: also vertical flips and 90° rotations (the 8 dihedral views).
            cache: keep decoded images in memory as 8-bit (2 x 2.7 MB per GoPro pair).
            skip_bad: replace unreadable images by the next one, with a warning, instead of stopping.
            max_pixels: raise Pillow's decompression-bomb limit.

        Raises:
            DataError: missing folders, unmatched names, no images, or contradictory settings.
        """
        if not isinstance(crop, int) or crop < 1:
            raise DataError(f"data.train.crop must be a positive integer; got {crop!r}")
        pairs = self._find(root=root, blur=blur, sharp=sharp, layout=layout, gopro_blur=gopro_blur, synthetic=synthetic)
        use_shake = synthetic or self.synthetic_prob > 0
        return PairedCrops(
            pairs, crop=crop, hflip=flip, vflip=rotate, rot90=rotate, degradation=self.shake if use_shake else None,
            degrade_prob=self.synthetic_prob, cache=cache, skip_bad=skip_bad, max_pixels=max_pixels,
        )  # fmt: skip

    def val_data(
        self,
        *,
        root: str | None = None,
        blur: str | None = None,
        sharp: str | None = None,
        layout: str = "auto",
        gopro_blur: str = "blur",
        synthetic: bool = False,
        limit: int | None = None,
        seed: int = 0,
        max_pixels: int | None = None,
    ) -> EvalSet:
        """Whole validation images, in the same layouts as :meth:`train_data`, made as :meth:`benchmark` does.

        Args:
            root: GoPro root, side-by-side folder, or (with *synthetic*) a folder of sharp images.
            blur: folder of blurred images, matched to *sharp* by file name.
            sharp: folder of sharp images.
            layout: ``"auto"``, ``"gopro"``, ``"folders"`` or ``"ab"``.
            gopro_blur: ``"blur"`` or ``"blur_gamma"``.
            synthetic: blur the sharp images synthetically, seeded per image.
            limit: use only the first N images (sorted by name).
            seed: seed of the synthetic blur; keep it fixed to compare runs.
            max_pixels: raise Pillow's decompression-bomb limit.

        Raises:
            DataError: as :meth:`train_data`.
        """
        return self._eval_set(
            root=root, blur=blur, sharp=sharp, layout=layout, gopro_blur=gopro_blur, synthetic=synthetic,
            include=None, limit=limit, seed=seed, max_pixels=max_pixels,
        )  # fmt: skip

    def benchmark(
        self,
        data: str | Path,
        *,
        inputs: str | Path | None = None,
        include: Sequence[str] | None = None,
        limit: int | None = None,
        max_pixels: int | None = None,
        layout: str | None = None,
        gopro_blur: str = "blur",
        synthetic: bool = False,
        seed: int = 0,
    ) -> EvalSet:
        """The GoPro protocol's images: blurred input and sharp reference, same size.

        Args:
            data: a GoPro root (``SEQUENCE/blur`` + ``SEQUENCE/sharp``), or the sharp folder when *inputs*
                is given; with *synthetic*, any folder of sharp images.
            inputs: folder of blurred images matched to *data* by file name.
            include: only these image names (or file names, or stems).
            limit: only the first N images (sorted by name).
            max_pixels: raise Pillow's decompression-bomb limit.
            layout: ``"gopro"`` (default without *inputs*), ``"ab"`` (side by side), ``"auto"``, or
                ``"folders"`` (default with *inputs*).
            gopro_blur: ``"blur"`` or ``"blur_gamma"``.
            synthetic: blur the sharp images with camera shake seeded per image.
            seed: seed of the synthetic blur.

        Raises:
            DataError: missing folders, unmatched names, pairs of different sizes, odd side-by-side widths.

        Example:
            >>> images = Deblurring().benchmark("gopro-avg8")  # doctest: +SKIP
            >>> images.settings["protocol"]  # doctest: +SKIP
            'RGB PSNR/SSIM, output rounded to 8 bits, no border shaved'
        """
        if inputs is not None:
            where = {"blur": str(inputs), "sharp": str(data), "layout": layout or "folders"}
        elif synthetic:
            where = {"root": str(data), "layout": "auto"}
        else:
            where = {"root": str(data), "layout": layout or "gopro"}
        return self._eval_set(
            **where, gopro_blur=gopro_blur, synthetic=synthetic, include=include, limit=limit, seed=seed,
            max_pixels=max_pixels,
        )  # fmt: skip

    def _eval_set(
        self,
        *,
        root: str | None = None,
        blur: str | None = None,
        sharp: str | None = None,
        layout: str,
        gopro_blur: str,
        synthetic: bool,
        include: Sequence[str] | None,
        limit: int | None,
        seed: int,
        max_pixels: int | None,
    ) -> EvalSet:
        pairs = self._find(root=root, blur=blur, sharp=sharp, layout=layout, gopro_blur=gopro_blur, synthetic=synthetic)
        if include:
            pairs = [p for p in pairs if p.name in include or p.sharp.name in include or p.sharp.stem in include]
            if not pairs:
                raise DataError(f"{root or sharp}: none of {', '.join(include)} found")
        if limit is not None:
            if limit < 1:
                raise DataError(f"data.val.limit must be positive; got {limit}")
            pairs = pairs[:limit]
        if not pairs:
            raise DataError("no validation images")
        loader = PairLoader(pairs, max_pixels=max_pixels)
        shake = self.shake

        def load(index: int) -> tuple[Tensor, Tensor]:
            blurred, sharp_image = loader.load(index)
            if blurred is None:
                # Seeded per image, so every run (and restore eval) validates on the same inputs.
                blurred = shake.degrade_image(sharp_image, sample_generator(SampleKey(seed, 0, index)))
            return blurred, sharp_image

        settings: dict = {
            "protocol": "RGB PSNR/SSIM, output rounded to 8 bits, no border shaved",
            "border": 0,
            "blur_dir": None if blur is None else str(resolve_data_path(blur)),
        }
        if synthetic:
            settings["synthetic"] = {"seed": seed, "kernel_size": self.kernel_size, "noise": list(self.noise)}
        folder = resolve_data_path(root if root is not None else sharp)  # type: ignore[arg-type]
        return EvalSet(folder, [p.name for p in pairs], [p.sharp for p in pairs], load, settings)

    def baseline(self, name: str, model_input: Tensor) -> Tensor:
        """``identity`` (or ``none``): the blurred input itself, the floor a deblurring model must beat."""
        if name not in self.baselines:
            raise ValueError(f"deblurring has no baseline {name!r}; use 'identity'")
        return model_input

    @staticmethod
    def _find(
        *, root: str | None, blur: str | None, sharp: str | None, layout: str, gopro_blur: str, synthetic: bool
    ) -> list[ImagePair]:
        if synthetic:
            if blur is not None:
                raise DataError("synthetic blur reads only sharp images; remove blur (or set synthetic = false)")
            check_blur_name(gopro_blur)
            return find_sharp_images(root=root, sharp=sharp, gopro_blur=gopro_blur)
        return find_blur_pairs(root=root, blur=blur, sharp=sharp, layout=layout, gopro_blur=gopro_blur)

    # -- batches and metrics ------------------------------------------------------------------------

    def make_batch(
        self, batch: dict[str, Tensor], device: torch.device, *, training: bool = True
    ) -> tuple[Tensor, Tensor]:
        """``(blurred, sharp)`` on *device*; synthetic blur and noise run here, batched.

        Args:
            batch: a collated batch of :class:`~restorekit.data.crops.PairedCrops` items (or of
                validation samples: ``input`` and ``target``).
            device: where the model runs.
            training: unused (validation inputs arrive already blurred); kept for the trainer's call.
        """
        sharp = batch["target"].to(device, non_blocking=True)
        if "context" not in batch:
            return batch["input"].to(device, non_blocking=True), sharp
        return degrade_batch(batch, device, self.shake), sharp

    def metrics(self, output: Tensor, target: Tensor) -> dict[str, float]:
        """The chosen metrics (default RGB PSNR and SSIM), output rounded to 8 bits, no border (GoPro protocol)."""
        return self.metric_set()(output, target)

    def preview(self, model_input: Tensor, output: Tensor, target: Tensor) -> Tensor:
        """Blurred | output | sharp, one ``(3, H, 3W)`` image (first of the batch)."""
        parts = []
        for image in (model_input, output, target):
            image = image[0] if image.dim() == 4 else image
            image = image.detach().float().clamp(0, 1).cpu()
            parts.append(image.expand(3, -1, -1) if image.shape[0] == 1 else image)
        return torch.cat(parts, dim=-1)

    def preview_panels(self, model_input: Tensor, output: Tensor, target: Tensor) -> list[PreviewPanel]:
        """Blurred (scored: it is the identity baseline) | output | sharp."""
        parts = []
        for image in (model_input, output, target):
            image = image[0] if image.dim() == 4 else image
            image = image.detach().float().clamp(0, 1).cpu()
            parts.append(image.expand(3, -1, -1) if image.shape[0] == 1 else image)
        return [
            PreviewPanel("blurred", parts[0]),
            PreviewPanel("output", parts[1]),
            PreviewPanel("sharp", parts[2], scored=False),
        ]
