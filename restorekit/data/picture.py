"""What an image file carries, and the errors of reading and writing one (shared by the reader and the writer)."""

from __future__ import annotations

import dataclasses
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})

#: Output format chosen from a file suffix.
FORMAT_BY_SUFFIX: dict[str, str] = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".bmp": "BMP",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}

_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N"})
_ALPHA_FORMATS = frozenset({"PNG", "WEBP", "TIFF", "BMP"})
_SIXTEEN_BIT_FORMATS = frozenset({"PNG", "TIFF"})
_ORIENTATION = 0x0112
_EXIF_PREFIX = b"Exif\x00\x00"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Image.MAX_IMAGE_PIXELS is Pillow's only knob for the decompression-bomb check and it is global; it is
# switched off only around Image.open (which parses the header, nothing more) and restored at once, and
# restorekit then applies its own limit to the size the header declares.
_PILLOW_LIMIT_LOCK = threading.Lock()



class ImageReadError(Exception):
    """An image file that cannot be read; ``str(error)`` is ``"<path>: <reason>"``.

    Attributes:
        path: The file.
        reason: What is wrong with it, without the path.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class ImageWriteError(Exception):
    """An image that cannot be written; ``str(error)`` is ``"<path>: <reason>"``.

    Attributes:
        path: The file that was to be written (it is left untouched).
        reason: What went wrong, without the path.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclass
class Picture:
    """A decoded image plus what is needed to write the restored one back faithfully.

    Attributes:
        rgb: ``(C, H, W)`` float32 in ``[0, 1]``; ``C == 1`` for grayscale sources, 3 otherwise. EXIF
            orientation has been applied.
        alpha: ``(1, H, W)`` float32 in ``[0, 1]``, or None when the source has no transparency.
        bit_depth: 8 or 16 (bits per sample of the source).
        mode: The source's Pillow mode (``"RGB"``, ``"L"``, ``"P"``, ``"I;16"``, ...). For 16-bit colour
            files, which Pillow would misreport, the mode of their channels: ``"RGB"``, ``"RGBA"``, ``"LA"``.
        format: The source's format as Pillow names it (``"PNG"``, ``"JPEG"``, ``"TIFF"``, ...).
        icc_profile: The embedded ICC profile, or None.
        exif: EXIF as ``b"Exif\\0\\0"``-prefixed bytes with the orientation tag reset to 1 (the pixels are
            already upright), or None.
        palette: Whether the source was a palette image (such sources are written back as RGB(A)).
    """

    rgb: torch.Tensor
    alpha: torch.Tensor | None = None
    bit_depth: int = 8
    mode: str = "RGB"
    format: str = "PNG"
    icc_profile: bytes | None = None
    exif: bytes | None = None
    palette: bool = False

    @property
    def grayscale(self) -> bool:
        """Whether the source is grayscale (written back as grayscale even if ``rgb`` now has 3 channels)."""
        return self.rgb.shape[0] == 1 or self.mode in _GRAY_MODES

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of ``rgb``."""
        return int(self.rgb.shape[-1]), int(self.rgb.shape[-2])

    def replace(self, **changes: Any) -> Picture:
        """A copy with some fields changed, e.g. ``picture.replace(rgb=restored)``."""
        return dataclasses.replace(self, **changes)


