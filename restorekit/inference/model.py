"""A loaded restoration model: weights + metadata + tiled, precision-aware inference.

Example:
    >>> import restorekit
    >>> model = restorekit.load_model("srresnet")  # doctest: +SKIP
    >>> bigger = model(PIL.Image.open("photo.png"))  # doctest: +SKIP
    >>> model.scale, model.task  # doctest: +SKIP
    (4, 'super_resolution')
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from restorekit.data.images import Picture
from restorekit.inference.tiling import tiled_apply
from restorekit.weights import WeightInfo, WeightsError, load_network

FOREIGN_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def load_any(path: Path) -> tuple[nn.Module, WeightInfo]:
    """A network from a restorekit ``.safetensors`` file or a foreign checkpoint a plugin recognises."""
    if path.suffix.lower() in FOREIGN_SUFFIXES:
        from restorekit.convert import convert_checkpoint

        return convert_checkpoint(path)
    try:
        return load_network(path)
    except WeightsError as exc:
        if "not a restorekit weight file" not in str(exc):
            raise
        from restorekit.convert import convert_checkpoint

        return convert_checkpoint(path)


class RestorationModel:
    """Restores images of any size with a trained generator.

    Args:
        network: the generator (any device; moved to *device*).
        info: its weight-file metadata (name, task, scale, ...).
        device: ``cpu``, ``cuda``, ``cuda:1``; default: CUDA when available.
        precision: ``auto`` (bf16/fp16 on CUDA when the network supports half precision, fp32 on CPU),
            ``fp32``, ``fp16`` or ``bf16``. Half precision falls back to fp32 if it produces NaN/inf.
        tile: tile side in input pixels (None: whole image in one pass).
        overlap: context margin per tile side in input pixels; results equal a whole-image pass when
            it covers the network's receptive-field radius.
        batch_size: tiles per forward pass.
    """

    def __init__(
        self,
        network: nn.Module,
        info: WeightInfo,
        *,
        device: str | torch.device | None = None,
        precision: str = "auto",
        tile: int | None = 512,
        overlap: int = 32,
        batch_size: int = 4,
    ):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.network = network.eval().to(self.device)
        for p in self.network.parameters():
            p.requires_grad_(False)
        self.info = info
        self.tile, self.overlap, self.batch_size = tile, overlap, batch_size
        self.dtype = self._pick_dtype(precision)

    @classmethod
    def load(
        cls,
        name_or_path: str | Path,
        *,
        device: str | torch.device | None = None,
        precision: str = "auto",
        tile: int | None = 512,
        overlap: int = 32,
        batch_size: int = 4,
    ) -> RestorationModel:
        """Load a model-store name, a restorekit ``.safetensors`` file or a convertible ``.pth``."""
        from restorekit.store import resolve_weights

        path = resolve_weights(name_or_path)
        network, info = load_any(path)
        if info.kind != "generator":
            raise WeightsError(f"{path}: holds a {info.kind} ('{info.name}'), not a generator that restores images")
        return cls(network, info, device=device, precision=precision, tile=tile, overlap=overlap, batch_size=batch_size)

    # -- properties -------------------------------------------------------------------------------

    @property
    def scale(self) -> int:
        return int(getattr(self.network, "scale", self.info.scale))

    @property
    def task(self) -> str:
        return self.info.task

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def metadata(self) -> dict[str, str]:
        return self.info.to_metadata()

    @property
    def in_channels(self) -> int:
        return int(getattr(self.network, "in_channels", 3))

    def _pick_dtype(self, precision: str) -> torch.dtype:
        if self.device.type != "cuda" or precision == "fp32":
            return torch.float32
        if precision == "fp16":
            return torch.float16
        if precision == "bf16":
            return torch.bfloat16
        if not getattr(self.network, "supports_half", True):
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    # -- inference --------------------------------------------------------------------------------

    def _forward(self, batch: Tensor, *, dtype: torch.dtype) -> Tensor:
        ctx = torch.autocast(self.device.type, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()
        with torch.inference_mode(), ctx:
            return self.network(batch.float()).float()

    def _run(self, x: Tensor, dtype: torch.dtype, progress: Callable[[int, int], None] | None) -> Tensor:
        return tiled_apply(
            functools.partial(self._forward, dtype=dtype),
            x,
            scale=self.scale,
            tile=self.tile,
            overlap=self.overlap,
            batch_size=self.batch_size,
            device=self.device,
            multiple=int(getattr(self.network, "size_multiple", 1)),
            progress=progress,
        )

    def restore_tensor(self, image: Tensor, *, progress: Callable[[int, int], None] | None = None) -> Tensor:
        """Restore one (C, H, W) float image in [0, 1] (kept on the CPU; tiles go to the device)."""
        if image.ndim != 3:
            raise ValueError(f"expected a (C, H, W) image, got shape {tuple(image.shape)}")
        gray = image.shape[0] == 1 and self.in_channels == 3
        x = (image.expand(3, -1, -1) if gray else image).float().cpu()
        out = self._run(x, self.dtype, progress)
        if self.dtype != torch.float32 and not torch.isfinite(out).all():
            warnings.warn(f"{self.name}: half precision gave NaN/inf; redoing this image in fp32", stacklevel=2)
            out = self._run(x, torch.float32, progress)
        out = out.clamp(0, 1)
        if gray:
            out = (0.299 * out[0] + 0.587 * out[1] + 0.114 * out[2])[None]
        return out

    def restore_picture(
        self,
        picture: Picture,
        *,
        outscale: float | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> Picture:
        """Restore a :class:`Picture`: colour through the network, alpha restored separately.

        Args:
            picture: as read by :func:`restorekit.data.images.read_picture`.
            outscale: final size relative to the input (e.g. 3.5 with a x4 model); MATLAB bicubic.
            progress: ``(done_tiles, total_tiles)`` callback.
        """
        rgb = self.restore_tensor(picture.rgb, progress=progress)
        alpha = picture.alpha
        if alpha is not None:
            if self.scale == 1:
                alpha = alpha.clone()
            else:
                # Upscale the alpha channel with the network too (as a gray image): sharper edges than bicubic.
                alpha = self.restore_tensor(alpha)
        if outscale is not None and outscale != self.scale:
            from restorekit.data.resize import imresize

            h, w = picture.rgb.shape[-2:]
            size = (max(1, round(h * outscale)), max(1, round(w * outscale)))
            rgb = imresize(rgb, size=size).clamp(0, 1)
            alpha = None if alpha is None else imresize(alpha, size=size).clamp(0, 1)
        return picture.replace(rgb=rgb, alpha=alpha)

    def __call__(self, image: Any) -> Any:
        """Restore a PIL image (returns a PIL image) or a float tensor in [0, 1] (C,H,W or N,C,H,W)."""
        if isinstance(image, Tensor):
            if image.ndim == 4:
                return torch.stack([self.restore_tensor(im) for im in image])
            return self.restore_tensor(image)
        from PIL import Image

        if isinstance(image, Image.Image):
            return _pil_restore(self, image)
        raise TypeError(f"expected a PIL image or a tensor, got {type(image).__name__}")

    def __repr__(self) -> str:
        return (
            f"RestorationModel({self.name}, task={self.task}, x{self.scale}, device={self.device}, "
            f"dtype={str(self.dtype).removeprefix('torch.')}, tile={self.tile}, overlap={self.overlap})"
        )


def _pil_restore(model: RestorationModel, image: Any) -> Any:
    """PIL in, PIL out, keeping grayscale and alpha."""
    import numpy as np
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info
    gray = image.mode in ("1", "L", "LA", "La", "I", "I;16", "I;16B", "F")
    target_mode = ("LA" if has_alpha else "L") if gray else ("RGBA" if has_alpha else "RGB")
    array = np.asarray(image.convert(target_mode), dtype=np.float32) / 255.0
    tensor = torch.from_numpy(array.reshape(array.shape[0], array.shape[1], -1)).permute(2, 0, 1)
    colour, alpha = (tensor[:-1], tensor[-1:]) if has_alpha else (tensor, None)
    picture = Picture(colour, alpha, 8, image.mode, "PNG", None, None, False)
    restored = model.restore_picture(picture)
    parts = [restored.rgb] + ([restored.alpha] if restored.alpha is not None else [])
    out = (torch.cat(parts).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    return Image.fromarray(out[..., 0] if out.shape[-1] == 1 else out, mode=None if out.shape[-1] != 1 else "L")
