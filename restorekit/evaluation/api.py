"""Benchmark evaluation: PSNR/SSIM of a model (or a baseline) on a folder, under the published protocols.

Super-resolution follows the protocol behind the published tables (Set5, Set14, BSD100, ...):

- the HR image is cropped to a multiple of the scale;
- the LR input is the shipped LR file when an LR folder is given (EDSR layout ``LR_bicubic/X4/NAMEx4.png``
  understood), otherwise MATLAB's bicubic ``imresize(hr, 1/scale)`` of the 8-bit HR, in MATLAB's ``uint8``
  arithmetic (which reproduces the shipped files bit for bit);
- the output (the model's, or MATLAB's bicubic upscale for the ``bicubic`` baseline) is rounded to 8 bits;
- PSNR and SSIM on the BT.601 luma with ``scale`` border pixels shaved, and PSNR over RGB.

Deblurring follows the GoPro protocol: RGB PSNR and SSIM of the 8-bit output against the sharp image, no
border shaved. The ``identity`` baseline scores the blurred input itself.

Models run through :class:`~restorekit.inference.model.RestorationModel` (tiled, any size), so a network
from a third-party plugin is evaluated exactly like a built-in one. The mean is the plain average of the
per-image values, as in the papers.

Example:
    >>> from restorekit.evaluation import evaluate
    >>> result = evaluate("bicubic", "../shared/data/sr-bench/Set5/HR", scale=4)  # doctest: +SKIP
    >>> round(result.mean["psnr_y"], 2), round(result.mean["ssim_y"], 3)  # doctest: +SKIP
    (28.43, 0.811)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

    from restorekit.inference.model import RestorationModel

__all__ = [
    "BASELINES",
    "METRICS",
    "TASKS",
    "EvaluationError",
    "EvaluationResult",
    "ImageScore",
    "evaluate",
    "evaluate_deblurring",
    "evaluate_super_resolution",
]

#: Names that stand for a baseline instead of a model, with the task each belongs to.
BASELINES: dict[str, str] = {"bicubic": "super_resolution", "identity": "deblurring", "none": "deblurring"}

TASKS = ("super_resolution", "deblurring")

#: The metrics reported per task, in table order.
METRICS: dict[str, tuple[str, ...]] = {
    "super_resolution": ("psnr_y", "ssim_y", "psnr_rgb"),
    "deblurring": ("psnr", "ssim"),
}

Progress = Callable[[int, int], None]


class EvaluationError(ValueError):
    """Evaluation settings that do not fit together (task, scale, model, folders); one-line message."""


@dataclass
class ImageScore:
    """The metrics of one evaluated image.

    Attributes:
        name: The image's name (path below the data folder, without suffix).
        metrics: Metric name to value (``psnr_y``, ``ssim_y``, ``psnr_rgb`` or ``psnr``, ``ssim``).
    """

    name: str
    metrics: dict[str, float]


@dataclass
class EvaluationResult:
    """Per-image metrics of one evaluation run and how they were obtained.

    Attributes:
        task: ``super_resolution`` or ``deblurring``.
        model: The model's name (``bicubic``/``identity`` for the baselines).
        scale: The upscaling factor (1 for deblurring).
        data: The folder of reference (HR or sharp) images.
        images: One :class:`ImageScore` per image, in file order.
        settings: The protocol and inference settings (LR source, border, tiling, device, ...).
    """

    task: str
    model: str
    scale: int
    data: str
    images: list[ImageScore]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The metrics of this task, in table order."""
        return METRICS[self.task]

    @property
    def mean(self) -> dict[str, float]:
        """The average of every metric over the images (NaN when there are none)."""
        count = len(self.images)
        return {
            key: (sum(image.metrics[key] for image in self.images) / count if count else math.nan)
            for key in self.metric_names
        }

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
        }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


# --- choosing what to evaluate -------------------------------------------------------------------


def _resolve_model(model: RestorationModel | str, name: str | None = None) -> tuple[str, RestorationModel | None]:
    """``(name, model)``; the model is None for a baseline name."""
    if isinstance(model, str):
        key = model.strip().lower()
        if key in BASELINES and not Path(model).is_file():
            return key, None
        from restorekit.inference.model import RestorationModel

        label, net = name or model, RestorationModel.load(model)
    else:
        label, net = name or model.name, model
    if net.info.kind != "generator":
        raise EvaluationError(f"'{label}' holds a {net.info.kind}, not a generator; evaluate the generator's weights")
    return label, net


def _task_of(name: str, model: RestorationModel | None, task: str | None) -> str:
    if task is not None:
        if task not in TASKS:
            raise EvaluationError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
        if model is None and BASELINES[name] != task:
            raise EvaluationError(_baseline_mismatch(name))
        return task
    if model is None:
        return BASELINES[name]
    if model.task in TASKS:
        return model.task
    if model.scale > 1:
        return "super_resolution"
    raise EvaluationError(
        f"model '{name}' does not say its task (weights without task metadata); give the task "
        f"({' or '.join(TASKS)})"
    )


def _baseline_mismatch(name: str) -> str:
    if BASELINES[name] == "super_resolution":
        return f"'{name}' is the super-resolution baseline; for deblurring use 'identity'"
    return f"'{name}' is the deblurring baseline (the blurred input itself); for super-resolution use 'bicubic'"


def evaluate(
    model: RestorationModel | str,
    data: str | Path,
    *,
    task: str | None = None,
    lr_dir: str | Path | None = None,
    blur_dir: str | Path | None = None,
    scale: int | None = None,
    max_pixels: int | None = None,
    progress: Progress | None = None,
    name: str | None = None,
) -> EvaluationResult:
    """Evaluate a model or a baseline on a benchmark folder, with the task's published protocol.

    Args:
        model: A loaded :class:`~restorekit.inference.model.RestorationModel`, a model-store name or weight
            file (loaded with default settings), or a baseline: ``"bicubic"`` (super-resolution),
            ``"identity"`` / ``"none"`` (deblurring: the blurred input itself).
        data: HR folder (or an EDSR root holding ``HR/``) for super-resolution; the sharp folder, or a
            GoPro root with ``blur/`` and ``sharp/``, for deblurring.
        task: ``"super_resolution"`` or ``"deblurring"``; default: the model's (the baseline's) task.
        lr_dir: Folder of LR inputs matched by name (``NAMExS`` and an ``XS`` sub-folder understood); None
            makes them with MATLAB bicubic. Super-resolution only.
        blur_dir: Folder of blurred inputs matched by name. Deblurring only.
        scale: Needed for ``bicubic``; for a model, if given, it must be the model's scale.
        max_pixels: Raise the decompression-bomb limit for large images.
        progress: Called as ``progress(done_images, total_images)`` after every image.
        name: What to call the model in the result and in messages; default: the name it was given by, or
            its network's name.

    Returns:
        The per-image metrics and their mean.

    Raises:
        EvaluationError: Settings that contradict each other (task, scale, folders, baseline).
        restorekit.data.folders.DataError: Missing folders, unmatched names, or images that do not fit.
        restorekit.data.images.ImageReadError: An image cannot be read.
        FileNotFoundError: No model of that name or file.

    Example:
        >>> result = evaluate("identity", "../shared/data/deblur/gopro-avg8")  # doctest: +SKIP
        >>> sorted(result.mean)  # doctest: +SKIP
        ['psnr', 'ssim']
    """
    name, net = _resolve_model(model, name)
    chosen = _task_of(name, net, task)
    if chosen == "super_resolution":
        if blur_dir is not None:
            raise EvaluationError("a blurred-image folder (--blur-dir) is for deblurring; use --lr-dir for LR images")
        return _evaluate_sr(name, net, data, lr_dir=lr_dir, scale=scale, max_pixels=max_pixels, progress=progress)
    if lr_dir is not None:
        raise EvaluationError("an LR folder (--lr-dir) is for super-resolution; use --blur-dir for blurred images")
    if scale not in (None, 1):
        raise EvaluationError(f"deblurring keeps the image size; scale {scale} does not apply")
    return _evaluate_deblur(name, net, data, blur_dir=blur_dir, max_pixels=max_pixels, progress=progress)


def _model_settings(model: RestorationModel) -> dict[str, Any]:
    return {
        "tile": model.tile,
        "overlap": model.overlap,
        "batch_size": model.batch_size,
        "device": str(model.device),
        "dtype": str(model.dtype).removeprefix("torch."),
    }


# --- super-resolution ----------------------------------------------------------------------------


def _to_uint8(x: Tensor) -> Tensor:
    """[0, 1] float to uint8 levels; exact for images read from 8-bit files."""
    import torch

    return (x * 255.0).round_().clamp_(0, 255).to(torch.uint8)


def _sr_scale(name: str, model: RestorationModel | None, scale: int | None) -> int:
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, int) or scale < 1):
        raise EvaluationError(f"scale must be a positive integer, got {scale!r}")
    if model is None:
        if name != "bicubic":
            raise EvaluationError(_baseline_mismatch(name))
        if scale is None:
            raise EvaluationError("the bicubic baseline needs a scale (--scale 2, 3, 4, ...)")
        if scale < 2:
            raise EvaluationError(f"the bicubic baseline needs a scale of 2 or more, got {scale}")
        return scale
    if model.scale < 2:
        raise EvaluationError(
            f"model '{name}' keeps the image size (scale 1): evaluate it as deblurring (--task deblurring)"
        )
    if scale is not None and scale != model.scale:
        raise EvaluationError(f"scale {scale} was asked, but model '{name}' upscales x{model.scale}")
    return model.scale


def _hr_folder(data: Path) -> Path:
    # An EDSR benchmark root (HR/ beside LR_bicubic/) is understood: its LR files must not count as HR.
    return data / "HR" if (data / "HR").is_dir() else data


def evaluate_super_resolution(
    model: RestorationModel | str,
    hr_dir: str | Path,
    *,
    lr_dir: str | Path | None = None,
    scale: int | None = None,
    max_pixels: int | None = None,
    progress: Progress | None = None,
    name: str | None = None,
) -> EvaluationResult:
    """PSNR-Y, SSIM-Y (``scale`` border pixels shaved) and PSNR-RGB of super-resolved HR images.

    Args:
        model: A loaded model, a model-store name or weight file, or ``"bicubic"`` (MATLAB bicubic upscale).
        hr_dir: Folder of HR images, or an EDSR root holding ``HR/``.
        lr_dir: Shipped LR images (``LR_bicubic`` with ``X4/NAMEx4.png`` understood); None: MATLAB bicubic
            downscale of the 8-bit HR.
        scale: Required for ``bicubic``; for a model, if given, it must match.
        max_pixels: Raise the decompression-bomb limit.
        progress: ``progress(done_images, total_images)`` after every image.
        name: What to call the model in the result and in messages.

    Returns:
        The evaluation (metrics ``psnr_y``, ``ssim_y``, ``psnr_rgb``).

    Raises:
        EvaluationError: Scale missing or different from the model's, or a model that does not upscale.
        restorekit.data.folders.DataError: Missing folders, LR files missing or of the wrong size.
        restorekit.data.images.ImageReadError: An image cannot be read.

    Example:
        >>> r = evaluate_super_resolution("bicubic", "Set5/HR", lr_dir="Set5/LR_bicubic", scale=4)  # doctest: +SKIP
        >>> len(r.images), round(r.mean["psnr_y"], 2)  # doctest: +SKIP
        (5, 28.43)
    """
    name, net = _resolve_model(model, name)
    return _evaluate_sr(name, net, hr_dir, lr_dir=lr_dir, scale=scale, max_pixels=max_pixels, progress=progress)


def _evaluate_sr(
    name: str,
    net: RestorationModel | None,
    hr_dir: str | Path,
    *,
    lr_dir: str | Path | None,
    scale: int | None,
    max_pixels: int | None,
    progress: Progress | None,
) -> EvaluationResult:
    from restorekit.data.folders import DataError, list_images
    from restorekit.data.images import load_rgb
    from restorekit.data.pairs import find_pairs, lr_folder
    from restorekit.data.resize import imresize
    from restorekit.metrics import psnr, ssim

    s = _sr_scale(name, net, scale)
    hr_root = _hr_folder(Path(hr_dir).expanduser())
    lr_root = None if lr_dir is None else _lr_folder(Path(lr_dir).expanduser())
    if lr_root is not None:
        pairs: list[tuple[Path, Path | None]] = list(find_pairs(hr_root, lr_root, scale=s))
    else:
        pairs = [(path, None) for path in list_images(hr_root)]

    images: list[ImageScore] = []
    for index, (hr_path, lr_path) in enumerate(pairs):
        hr = load_rgb(hr_path, max_pixels=max_pixels)
        height, width = hr.shape[-2] // s * s, hr.shape[-1] // s * s
        if height < 1 or width < 1:
            raise DataError(f"{hr_path}: {hr.shape[-1]}x{hr.shape[-2]} is smaller than the scale x{s}")
        hr = hr[:, :height, :width]
        if lr_path is None:
            lr8 = imresize(_to_uint8(hr), 1 / s)
        else:
            lr8 = _to_uint8(load_rgb(lr_path, max_pixels=max_pixels))
            if tuple(lr8.shape[-2:]) != (height // s, width // s):
                raise DataError(
                    f"{lr_path}: LR image is {lr8.shape[-1]}x{lr8.shape[-2]}, expected "
                    f"{width // s}x{height // s} for {hr_path.name} at x{s}"
                )
        if net is None:
            output = imresize(lr8, float(s)).float() / 255.0
        else:
            output = net.restore_tensor(lr8.float() / 255.0)
        try:
            scores = {
                "psnr_y": float(psnr(output, hr, border=s, channel="y")),
                "ssim_y": float(ssim(output, hr, border=s, channel="y")),
                "psnr_rgb": float(psnr(output, hr, border=s, channel="rgb")),
            }
        except ValueError as exc:  # too small to measure, or a model whose output has the wrong size
            raise DataError(f"{hr_path}: {exc}") from None
        images.append(ImageScore(_image_name(hr_path, hr_root), scores))
        if progress is not None:
            progress(index + 1, len(pairs))

    settings: dict[str, Any] = {
        "protocol": f"Y (BT.601) PSNR/SSIM with {s} border pixels shaved, RGB PSNR; output rounded to 8 bits",
        "border": s,
        "lr_source": "files" if lr_root is not None else "matlab_bicubic",
        "lr_dir": str(lr_folder(lr_root, s)) if lr_root is not None else None,
    }
    if net is not None:
        settings.update(_model_settings(net))
    return EvaluationResult("super_resolution", name, s, str(hr_root), images, settings)


def _lr_folder(path: Path) -> Path:
    # An EDSR benchmark root given as the LR folder: its LR images are under LR_bicubic/.
    return path / "LR_bicubic" if (path / "LR_bicubic").is_dir() else path


def _image_name(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).with_suffix("").as_posix()
    except ValueError:  # a single file given as the folder
        return path.stem


# --- deblurring ----------------------------------------------------------------------------------


def _blur_pairs(data: Path, blur_dir: Path | None) -> list[tuple[str, Path, Path]]:
    """``(name, blurred, sharp)`` for every image pair."""
    from restorekit.data.folders import DataError
    from restorekit.tasks.deblurring import find_blur_pairs

    if blur_dir is not None:
        found = find_blur_pairs(blur=blur_dir, sharp=data, layout="folders")
    else:
        try:
            found = find_blur_pairs(root=data, layout="gopro")
        except DataError as exc:
            raise DataError(f"{exc}; or give the blurred images with --blur-dir") from None
    pairs = []
    for pair in found:
        assert pair.blur is not None  # the folder and GoPro layouts always pair
        pairs.append((pair.name, pair.blur, pair.sharp))
    return pairs


def evaluate_deblurring(
    model: RestorationModel | str,
    data: str | Path,
    *,
    blur_dir: str | Path | None = None,
    max_pixels: int | None = None,
    progress: Progress | None = None,
    name: str | None = None,
) -> EvaluationResult:
    """RGB PSNR and SSIM of deblurred images against the sharp ones (8-bit output, no border).

    Args:
        model: A loaded model, a model-store name or weight file, or ``"identity"`` / ``"none"`` (score
            the blurred input itself: the floor a deblurring model must beat).
        data: The sharp folder (with *blur_dir*), or a GoPro root: ``blur/`` and ``sharp/`` side by side,
            or sequence folders holding them.
        blur_dir: Folder of blurred images matched to the sharp ones by file name.
        max_pixels: Raise the decompression-bomb limit.
        progress: ``progress(done_images, total_images)`` after every image.
        name: What to call the model in the result and in messages.

    Returns:
        The evaluation (metrics ``psnr``, ``ssim``).

    Raises:
        EvaluationError: A model that changes the image size, or ``bicubic``.
        restorekit.data.folders.DataError: Missing folders, unmatched names, or pairs of different sizes.
        restorekit.data.images.ImageReadError: An image cannot be read.

    Example:
        >>> r = evaluate_deblurring("identity", "gopro-avg8/sharp", blur_dir="gopro-avg8/blur")  # doctest: +SKIP
        >>> sorted(r.mean)  # doctest: +SKIP
        ['psnr', 'ssim']
    """
    name, net = _resolve_model(model, name)
    return _evaluate_deblur(name, net, data, blur_dir=blur_dir, max_pixels=max_pixels, progress=progress)


def _evaluate_deblur(
    name: str,
    net: RestorationModel | None,
    data: str | Path,
    *,
    blur_dir: str | Path | None,
    max_pixels: int | None,
    progress: Progress | None,
) -> EvaluationResult:
    from restorekit.data.folders import DataError
    from restorekit.data.images import load_rgb
    from restorekit.metrics import psnr, ssim

    if net is None and BASELINES[name] != "deblurring":
        raise EvaluationError(_baseline_mismatch(name))
    if net is not None and net.scale != 1:
        raise EvaluationError(
            f"model '{name}' upscales x{net.scale}; deblurring evaluation needs a model that keeps the size "
            "(evaluate it with --task super_resolution)"
        )
    root = Path(data).expanduser()
    pairs = _blur_pairs(root, None if blur_dir is None else Path(blur_dir).expanduser())

    images: list[ImageScore] = []
    for index, (image_name, blur_path, sharp_path) in enumerate(pairs):
        sharp = load_rgb(sharp_path, max_pixels=max_pixels)
        blurred = load_rgb(blur_path, max_pixels=max_pixels)
        if blurred.shape != sharp.shape:
            raise DataError(
                f"{blur_path}: {blurred.shape[-1]}x{blurred.shape[-2]} does not match the sharp image "
                f"{sharp_path} ({sharp.shape[-1]}x{sharp.shape[-2]})"
            )
        output = blurred if net is None else net.restore_tensor(blurred)
        try:
            scores = {
                "psnr": float(psnr(output, sharp, channel="rgb")),
                "ssim": float(ssim(output, sharp, channel="rgb")),
            }
        except ValueError as exc:
            raise DataError(f"{sharp_path}: {exc}") from None
        images.append(ImageScore(image_name, scores))
        if progress is not None:
            progress(index + 1, len(pairs))

    settings: dict[str, Any] = {
        "protocol": "RGB PSNR/SSIM, output rounded to 8 bits, no border shaved",
        "border": 0,
        "blur_dir": None if blur_dir is None else str(Path(blur_dir).expanduser()),
    }
    if net is not None:
        settings.update(_model_settings(net))
    return EvaluationResult("deblurring", "identity" if net is None else name, 1, str(root), images, settings)
