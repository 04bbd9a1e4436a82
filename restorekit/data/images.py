"""Reading and writing image files without losing what the photograph carries.

Two levels:

* :func:`load_rgb` gives training and evaluation code a plain float32 ``(3, H, W)`` tensor in ``[0, 1]``,
  whatever the file holds (grayscale, palette, alpha, 16 bits, CMYK, rotated by EXIF).
* :func:`read_picture` / :func:`write_picture` keep what ``restore apply`` must give back: the alpha
  channel, 16-bit depth, grayscale, the ICC profile and EXIF, so a restored photograph replaces the
  original without surprises.

Pillow decodes everything except 16-bit *colour* images, which it silently truncates to 8 bits (still so
in Pillow 13): 16-bit RGB(A) and gray+alpha PNGs are decoded with ``torchvision.io.decode_png`` and 16-bit
colour TIFFs with ``tifffile``. Every failure is an :class:`ImageReadError` or :class:`ImageWriteError`
whose one-line message starts with the file's path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import struct
import tempfile
import threading
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageReadError",
    "ImageWriteError",
    "Picture",
    "load_rgb",
    "read_picture",
    "save_rgb",
    "write_picture",
]

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


# ---------------------------------------------------------------------------------------------------
# Reading


def load_rgb(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> torch.Tensor:
    """Read any supported image as a float32 ``(3, H, W)`` tensor in ``[0, 1]``.

    Grayscale is replicated to three channels, palette and CMYK images are converted to RGB, the alpha
    channel is dropped (not composited onto a background: the colour values are kept as stored), 16-bit
    samples are divided by 65535 at full precision and the EXIF orientation is applied.

    Args:
        path: The image file.
        max_pixels: Largest width × height accepted (decompression-bomb guard); None uses Pillow's
            ``Image.MAX_IMAGE_PIXELS``. Applies to this call only.

    Returns:
        A float32 tensor of shape ``(3, H, W)``.

    Raises:
        ImageReadError: The file is missing, empty, not an image, truncated or corrupt, or too large.

    Example:
        >>> img = load_rgb("photo.png")  # doctest: +SKIP
        >>> img.shape, img.dtype  # doctest: +SKIP
        (torch.Size([3, 480, 640]), torch.float32)
    """
    rgb = read_picture(path, max_pixels=max_pixels).rgb
    if rgb.shape[0] == 1:
        rgb = rgb.expand(3, -1, -1).contiguous()
    return rgb


def read_picture(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> Picture:
    """Read an image with everything :func:`write_picture` needs to write its restored version back.

    Args:
        path: The image file.
        max_pixels: Largest width × height accepted; None uses Pillow's ``Image.MAX_IMAGE_PIXELS``.

    Returns:
        The decoded :class:`Picture`, upright (EXIF orientation applied).

    Raises:
        ImageReadError: The file is missing, empty, not an image, truncated or corrupt, too large, or
            of an unsupported kind (e.g. 32-bit floating point).

    Example:
        >>> pic = read_picture("scan.tif")  # doctest: +SKIP
        >>> pic.bit_depth, pic.alpha is None  # doctest: +SKIP
        (16, True)
    """
    path = Path(path)
    _check_file(path)
    try:
        try:
            im = _open_image(path, max_pixels)
        except _TiffForTifffile:
            return _read_tiff_with_tifffile(path, max_pixels)
        with im:
            return _picture_from_pillow(path, im)
    except ImageReadError:
        raise
    except MemoryError as exc:
        raise ImageReadError(path, "not enough memory to decode the image") from exc
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error, RuntimeError) as exc:
        raise ImageReadError(path, f"truncated or corrupt image ({exc})") from exc


def _check_file(path: Path) -> None:
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        raise ImageReadError(path, "no such file") from exc
    except OSError as exc:
        raise ImageReadError(path, f"cannot access file ({exc.strerror or exc})") from exc
    if path.is_dir():
        raise ImageReadError(path, "is a directory, not an image file")
    if st.st_size == 0:
        raise ImageReadError(path, "empty file")


def _open_image(path: Path, max_pixels: int | None) -> Image.Image:
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    try:
        with _PILLOW_LIMIT_LOCK:
            saved = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
            try:
                im = Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except UnidentifiedImageError as exc:
        with open(path, "rb") as f:
            if f.read(4) in (b"II*\x00", b"MM\x00*"):
                raise _TiffForTifffile from exc
        raise ImageReadError(path, "not an image file (format not recognised)") from exc
    except Image.DecompressionBombError as exc:  # raised by some plugins for huge metadata chunks
        raise ImageReadError(path, f"decompression bomb ({exc})") from exc
    except PermissionError as exc:
        raise ImageReadError(path, "permission denied") from exc
    except OSError as exc:
        raise ImageReadError(path, f"cannot open image ({exc})") from exc
    width, height = im.size
    if limit is not None and width * height > limit:
        im.close()
        raise ImageReadError(path, _bomb_reason(width, height, limit))
    return im


def _bomb_reason(width: int, height: int, limit: int) -> str:
    return (
        f"image has {width}×{height} = {width * height} pixels, over the decompression-bomb limit of {limit} "
        "(raise it with --max-pixels)"
    )


def _picture_from_pillow(path: Path, im: Image.Image) -> Picture:
    fmt = "JPEG" if im.format == "MPO" else (im.format or "")
    palette = im.mode in ("P", "PA")
    array, alpha, bit_depth, mode = None, None, 8, im.mode

    # 16-bit colour goes to another decoder; Pillow then never decodes the pixels (it would truncate).
    sixteen = _sixteen_bit_colour(path, im)
    if sixteen is not None:
        decoded = _decode_sixteen_bit_colour(path, im, sixteen)
        if decoded is not None:
            array, mode = decoded
            bit_depth = 16
            if array.shape[0] in (2, 4):
                array, alpha = array[:-1], array[-1:]
    if array is None:
        try:
            im.load()  # decode everything now, so a truncated file fails here and not in a training step
        except (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error) as exc:
            raise ImageReadError(path, f"truncated or corrupt image ({exc})") from exc
        array, alpha, bit_depth = _decode_with_pillow(path, im)
    # Metadata last: PNG may keep eXIf after the pixel data, where Pillow finds it only by decoding.
    # Not worth a second decode of a 16-bit PNG: there, only an eXIf chunk before the pixels is used.
    icc = im.info.get("icc_profile") or None
    if bit_depth == 16 and fmt == "PNG" and "exif" not in im.info:
        exif_bytes, orientation = None, 1
    else:
        exif_bytes, orientation = _exif_of(im)

    rgb = _orient(_to_unit_float(array, bit_depth), orientation)
    if alpha is not None:
        alpha = _orient(_to_unit_float(alpha, bit_depth), orientation)
    return Picture(
        rgb=rgb.contiguous(),
        alpha=None if alpha is None else alpha.contiguous(),
        bit_depth=bit_depth,
        mode=mode,
        format=fmt,
        icc_profile=icc if mode != "CMYK" else None,  # the pixels are RGB now; a CMYK profile would lie
        exif=exif_bytes,
        palette=palette,
    )


def _to_unit_float(samples: np.ndarray, bit_depth: int) -> torch.Tensor:
    # float32 division is correctly rounded: every one of the 65536 levels maps to a distinct value.
    # astype copies straight into float32 (Pillow's buffers are read-only; torch wants writable memory).
    return torch.from_numpy(samples.astype(np.float32)).div_(65535.0 if bit_depth == 16 else 255.0)


def _exif_of(im: Image.Image) -> tuple[bytes | None, int]:
    """The EXIF bytes to carry (orientation reset to 1) and the orientation to apply."""
    try:
        exif = im.getexif()
        orientation = int(exif.get(_ORIENTATION, 1))
    except Exception:  # a malformed EXIF block must not make the pixels unreadable
        return None, 1
    raw = im.info.get("exif")
    if not raw:
        # TIFF keeps its tags in the image's own IFD rather than an EXIF block: nothing to carry.
        return None, orientation if orientation in range(1, 9) else 1
    if orientation != 1:
        exif[_ORIENTATION] = 1
        raw = exif.tobytes()
    if not raw.startswith(_EXIF_PREFIX):
        raw = _EXIF_PREFIX + raw
    return raw, orientation if orientation in range(1, 9) else 1


def _orient(x: torch.Tensor, orientation: int) -> torch.Tensor:
    """Apply an EXIF orientation to ``(C, H, W)`` the way ``ImageOps.exif_transpose`` does."""
    if orientation == 2:
        return x.flip(-1)
    if orientation == 3:
        return x.flip(-1, -2)
    if orientation == 4:
        return x.flip(-2)
    if orientation == 5:
        return x.transpose(-1, -2)
    if orientation == 6:
        return torch.rot90(x, -1, dims=(-2, -1))
    if orientation == 7:
        return x.transpose(-1, -2).flip(-1, -2)
    if orientation == 8:
        return torch.rot90(x, 1, dims=(-2, -1))
    return x


def _decode_with_pillow(path: Path, im: Image.Image) -> tuple[np.ndarray, np.ndarray | None, int]:
    """``(C, H, W)`` samples, ``(1, H, W)`` alpha or None, and the bit depth, for what Pillow reads fully."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(im).astype(np.uint16)[None], None, 16
    if mode == "I":
        # 32-bit integer mode holds 16-bit sources in older decoders; larger values are clipped.
        return np.clip(np.asarray(im), 0, 65535).astype(np.uint16)[None], None, 16
    if mode == "F":
        raise ImageReadError(path, "32-bit floating-point images are not supported")
    if mode == "1":
        im = im.convert("L")
    elif mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        im = im.convert("RGBA" if has_alpha else "RGB")
    elif mode in ("L", "RGB") and "transparency" in im.info:
        im = im.convert("LA" if mode == "L" else "RGBA")
    elif mode == "La":
        im = im.convert("LA")
    elif mode == "RGBa":
        im = im.convert("RGBA")
    elif mode == "CMYK":
        im = _cmyk_to_rgb(im)
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        try:
            im = im.convert("RGBA" if "A" in mode else "RGB")
        except (ValueError, OSError) as exc:
            raise ImageReadError(path, f"unsupported image mode {mode!r}") from exc
    array = np.asarray(im)
    if array.ndim == 2:
        array = array[:, :, None]
    array = array.transpose(2, 0, 1)
    if array.shape[0] in (2, 4):
        return array[:-1], array[-1:], 8
    return array, None, 8


def _cmyk_to_rgb(im: Image.Image) -> Image.Image:
    icc = im.info.get("icc_profile")
    if icc:
        # A colour-managed conversion is far closer to what viewers show than Pillow's naive formula.
        try:
            from PIL import ImageCms

            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(im, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except Exception:
            pass
    return im.convert("RGB")


def _sixteen_bit_colour(path: Path, im: Image.Image) -> str | None:
    """``"png"``/``"tiff"`` when the file holds 16-bit samples with more than one channel."""
    if im.format == "PNG":
        with open(path, "rb") as f:
            head = f.read(26)
        # IHDR is always the first chunk: bit depth at byte 24, colour type at 25.
        if len(head) == 26 and head.startswith(_PNG_SIGNATURE) and head[24] == 16 and head[25] in (2, 4, 6):
            return "png"
    elif im.format == "TIFF" and im.mode not in _GRAY_MODES:
        bits = getattr(im, "tag_v2", {}).get(258)
        if isinstance(bits, int):
            bits = (bits,)
        if bits and any(b == 16 for b in bits) and len(bits) > 1:
            return "tiff"
    return None


def _decode_sixteen_bit_colour(path: Path, im: Image.Image, kind: str) -> tuple[np.ndarray, str] | None:
    """``(C, H, W)`` uint16 samples and their mode, or None (with a warning) to fall back to 8 bits."""
    if kind == "png":
        with warnings.catch_warnings():
            # torchvision 0.29 marks its image codecs deprecated (in favour of TorchCodec); still the only
            # installed libpng binding that keeps 16-bit colour.
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                from torchvision.io import ImageReadMode, decode_png
            except ImportError:
                reason = "torchvision.io.decode_png unavailable"
                warnings.warn(f"{path}: 16-bit PNG read at 8 bits ({reason})", stacklevel=4)
                return None
            data = torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)
            try:
                samples = decode_png(data, mode=ImageReadMode.UNCHANGED)
            except RuntimeError as exc:
                raise ImageReadError(path, f"truncated or corrupt image ({exc})") from exc
        array = samples.numpy().astype(np.uint16, copy=False)
        return array, _MODE_BY_CHANNELS[array.shape[0]]

    try:
        import tifffile
    except ImportError:
        warnings.warn(f"{path}: 16-bit TIFF read at 8 bits: install 'tifffile' for full depth", stacklevel=4)
        return None
    try:
        with tifffile.TiffFile(path) as tif:
            return _tiff_samples(tif.pages[0])
    except Exception as exc:  # e.g. LZW or JPEG compression needs the optional 'imagecodecs'
        warnings.warn(f"{path}: 16-bit TIFF read at 8 bits ({exc})", stacklevel=4)
        return None


_MODE_BY_CHANNELS = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def _tiff_samples(page: Any) -> tuple[np.ndarray, str]:
    """``(C, H, W)`` uint8/uint16 samples of a gray or RGB TIFF page (tifffile), alpha un-premultiplied."""
    photometric = int(page.photometric)
    if photometric not in (1, 2):  # min-is-black, RGB
        raise ValueError(f"TIFF photometric interpretation {photometric} is not supported")
    array = page.asarray()
    if array.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"TIFF samples of type {array.dtype} are not supported")
    if array.ndim == 2:
        array = array[None]
    elif array.ndim == 3 and page.axes.startswith("S"):  # planar configuration "separate"
        pass
    elif array.ndim == 3:
        array = array.transpose(2, 0, 1)
    else:
        raise ValueError(f"TIFF page of shape {array.shape} is not a single image")
    array = array[:2] if photometric == 1 else array[:4]
    if array.shape[0] not in _MODE_BY_CHANNELS or (photometric == 2 and array.shape[0] < 3):
        raise ValueError(f"TIFF with {array.shape[0]} samples per pixel is not supported")
    associated = any(int(e) == 1 for e in (page.extrasamples or ()))
    if associated and array.shape[0] in (2, 4):
        # Premultiplied alpha: divide it out so the colour values are the real ones.
        top = float(np.iinfo(array.dtype).max)
        alpha = array[-1:].astype(np.float64)
        colour = np.where(alpha > 0, array[:-1] * top / np.maximum(alpha, 1), 0)
        array = np.concatenate([np.clip(np.rint(colour), 0, top), alpha]).astype(array.dtype)
    return np.ascontiguousarray(array), _MODE_BY_CHANNELS[array.shape[0]]


class _TiffForTifffile(Exception):
    """A TIFF Pillow has no decoder for (e.g. 16-bit gray + alpha); tifffile may read it."""


def _read_tiff_with_tifffile(path: Path, max_pixels: int | None) -> Picture:
    try:
        import tifffile
    except ImportError as exc:
        raise ImageReadError(path, "TIFF layout not supported by Pillow; install 'tifffile' to read it") from exc
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            height, width = page.imagelength, page.imagewidth
            if limit is not None and width * height > limit:
                raise ImageReadError(path, _bomb_reason(width, height, limit))
            array, mode = _tiff_samples(page)
            icc = page.tags["InterColorProfile"].value if "InterColorProfile" in page.tags else None
            orientation = int(page.tags["Orientation"].value) if "Orientation" in page.tags else 1
    except ImageReadError:
        raise
    except Exception as exc:
        raise ImageReadError(path, f"unsupported or corrupt TIFF ({exc})") from exc
    alpha = None
    if array.shape[0] in (2, 4):
        array, alpha = array[:-1], array[-1:]
    bit_depth = 16 if array.dtype == np.uint16 else 8
    rgb = _orient(_to_unit_float(array, bit_depth), orientation)
    if alpha is not None:
        alpha = _orient(_to_unit_float(alpha, bit_depth), orientation).contiguous()
    return Picture(
        rgb=rgb.contiguous(),
        alpha=alpha,
        bit_depth=bit_depth,
        mode=mode,
        format="TIFF",
        icc_profile=bytes(icc) if icc else None,
    )


# ---------------------------------------------------------------------------------------------------
# Writing


def write_picture(
    picture_like: Picture,
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    quality: int = 95,
) -> None:
    """Write a (restored) picture, keeping its depth, grayscale, alpha, ICC profile and EXIF.

    The format is ``format`` if given, else the one ``path``'s suffix names, else the source's. 16-bit
    sources stay 16-bit in PNG and TIFF; grayscale sources stay grayscale (a 3-channel ``rgb`` is turned
    back into luma with the ITU-R BT.601 weights); an alpha channel whose size differs from ``rgb`` (the
    model upscaled the colour) is resized bicubically and re-attached for PNG, WEBP, TIFF and BMP and
    dropped with a warning for JPEG. Palette sources are written as RGB(A): the restored colours no
    longer fit a palette. Values are clamped to ``[0, 1]`` and rounded to the nearest integer level.

    The file is written to a temporary ``.<name>.tmp-XXXX`` beside ``path``, flushed to disk and then
    renamed over ``path``: readers never see a partial image, and after an error neither a partial file nor
    the temporary file remains (an existing ``path`` is left as it was).

    Args:
        picture_like: The picture; usually ``read_picture(src).replace(rgb=restored)``.
        path: Output file.
        format: ``"PNG"``, ``"JPEG"``, ``"TIFF"``, ``"WEBP"`` or ``"BMP"`` (case-insensitive).
        quality: JPEG/WEBP quality, 1-100 (JPEG is written with 4:4:4 chroma so restored detail is kept).

    Raises:
        ImageWriteError: Unknown format, bad tensor shapes, or the file could not be written.

    Example:
        >>> pic = read_picture("in.png")  # doctest: +SKIP
        >>> write_picture(pic.replace(rgb=model_output), "out.png")  # doctest: +SKIP
    """
    path = Path(path)
    fmt = _output_format(path, format, picture_like.format)
    if not 1 <= quality <= 100:
        raise ImageWriteError(path, f"quality must be between 1 and 100, got {quality}")
    rgb = picture_like.rgb
    if rgb.ndim != 3 or rgb.shape[0] not in (1, 3):
        raise ImageWriteError(path, f"rgb must have shape (1|3, H, W), got {tuple(rgb.shape)}")
    rgb = rgb.detach().to("cpu", torch.float32)
    height, width = rgb.shape[-2:]

    gray = picture_like.grayscale
    if gray and rgb.shape[0] == 3:
        luma = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
        rgb = (rgb * luma).sum(0, keepdim=True)

    alpha = picture_like.alpha
    if alpha is not None:
        if fmt not in _ALPHA_FORMATS:
            warnings.warn(f"{path}: {fmt} has no alpha channel; the transparency is dropped", stacklevel=2)
            alpha = None
        else:
            alpha = _fit_alpha(path, alpha.detach().to("cpu", torch.float32), height, width)

    # Formats without a grayscale(+alpha) flavour get the gray replicated.
    if rgb.shape[0] == 1 and (fmt == "WEBP" or (fmt == "BMP" and alpha is not None)):
        rgb = rgb.expand(3, -1, -1)

    channels = rgb if alpha is None else torch.cat([rgb, alpha])
    sixteen = picture_like.bit_depth == 16 and fmt in _SIXTEEN_BIT_FORMATS
    levels = 65535.0 if sixteen else 255.0
    quantised = channels.clamp(0.0, 1.0).mul(levels).round_()
    array = quantised.numpy().astype(np.uint16 if sixteen else np.uint8).transpose(1, 2, 0)
    icc, exif = picture_like.icc_profile or None, picture_like.exif or None

    if sixteen and fmt == "PNG":
        writer = _png16_writer(array, icc=icc, exif=exif)
    elif sixteen:
        writer = _tiff16_writer(path, array, icc=icc, exif=exif)
    else:
        writer = _pillow_writer(array, fmt, icc=icc, exif=exif, quality=quality)
    _write_atomically(path, writer)


def save_rgb(tensor: torch.Tensor, path: str | os.PathLike[str]) -> None:
    """Write a ``(3, H, W)`` (or ``(1, H, W)``) float tensor in ``[0, 1]`` as an 8-bit PNG, atomically.

    Args:
        tensor: The image; values outside ``[0, 1]`` are clamped.
        path: Output file (written as PNG whatever its suffix).

    Raises:
        ImageWriteError: Bad shape or the file could not be written.
    """
    if tensor.ndim != 3 or tensor.shape[0] not in (1, 3):
        raise ImageWriteError(path, f"expected a (3, H, W) tensor, got shape {tuple(tensor.shape)}")
    mode = "L" if tensor.shape[0] == 1 else "RGB"
    write_picture(Picture(rgb=tensor, mode=mode, format="PNG"), path, format="PNG")


def _output_format(path: Path, format: str | None, source_format: str) -> str:
    if format is not None:
        fmt = format.upper()
        fmt = {"JPG": "JPEG", "TIF": "TIFF"}.get(fmt, fmt)
    else:
        fmt = FORMAT_BY_SUFFIX.get(path.suffix.lower(), "")
        if not fmt:
            fmt = "JPEG" if source_format == "MPO" else source_format
    if fmt not in set(FORMAT_BY_SUFFIX.values()):
        known = ", ".join(sorted(set(FORMAT_BY_SUFFIX.values())))
        raise ImageWriteError(path, f"cannot write format {fmt or '(none)'!r}; use one of {known}")
    return fmt


def _fit_alpha(path: Path, alpha: torch.Tensor, height: int, width: int) -> torch.Tensor:
    if alpha.ndim == 2:
        alpha = alpha[None]
    if alpha.ndim != 3 or alpha.shape[0] != 1:
        raise ImageWriteError(path, f"alpha must have shape (1, H, W), got {tuple(alpha.shape)}")
    if tuple(alpha.shape[-2:]) != (height, width):
        shrinking = alpha.shape[-2] > height or alpha.shape[-1] > width
        alpha = F.interpolate(
            alpha[None], size=(height, width), mode="bicubic", align_corners=False, antialias=shrinking
        )[0]
    return alpha.clamp(0.0, 1.0)


Writer = Callable[[IO[bytes]], None]


def _pillow_writer(array: np.ndarray, fmt: str, *, icc: bytes | None, exif: bytes | None, quality: int) -> Writer:
    image = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    options: dict[str, Any] = {}
    if fmt != "BMP":  # BMP carries neither
        if icc:
            options["icc_profile"] = icc
        if exif:
            options["exif"] = exif
    if fmt == "JPEG":
        options.update(quality=quality, subsampling=0)
    elif fmt == "WEBP":
        options.update(quality=quality)
    elif fmt == "TIFF":
        options.update(compression="tiff_deflate")

    def write(f: IO[bytes]) -> None:
        image.save(f, format=fmt, **options)

    return write


def _png16_writer(array: np.ndarray, *, icc: bytes | None, exif: bytes | None) -> Writer:
    """A 16-bit PNG encoder (Pillow has no 16-bit colour mode; for grayscale it works the same way)."""
    height, width, channels = array.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]

    def chunk(f: IO[bytes], kind: bytes, data: bytes) -> None:
        f.write(struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    def write(f: IO[bytes]) -> None:
        f.write(_PNG_SIGNATURE)
        chunk(f, b"IHDR", struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0))
        if icc:
            chunk(f, b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc))
        if exif:
            chunk(f, b"eXIf", exif[len(_EXIF_PREFIX) :] if exif.startswith(_EXIF_PREFIX) else exif)
        rows = np.ascontiguousarray(array, dtype=">u2").view(np.uint8).reshape(height, width * channels * 2)
        compressor = zlib.compressobj(6)
        block = max(1, (4 << 20) // max(1, rows.shape[1]))  # bounded memory for large images
        for top in range(0, height, block):
            above = rows[top - 1] if top > 0 else None
            data = compressor.compress(_png_filter_rows(rows[top : top + block], above, channels * 2))
            if data:
                chunk(f, b"IDAT", data)
        chunk(f, b"IDAT", compressor.flush())
        chunk(f, b"IEND", b"")

    return write


def _png_filter_rows(rows: np.ndarray, above: np.ndarray | None, bpp: int) -> bytes:
    """Filter scanlines with the per-row heuristic libpng uses: the filter giving the least sum |byte|."""
    x = rows.astype(np.int16)
    b = np.empty_like(x)
    b[0] = 0 if above is None else above
    b[1:] = x[:-1]
    a = np.zeros_like(x)
    a[:, bpp:] = x[:, :-bpp]
    c = np.zeros_like(x)
    c[:, bpp:] = b[:, :-bpp]
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    candidates = np.stack([x, x - a, x - b, x - (a + b) // 2, x - paeth]).astype(np.uint8)
    cost = np.abs(candidates.view(np.int8).astype(np.int32)).sum(axis=2)
    best = cost.argmin(axis=0)
    chosen = candidates[best, np.arange(x.shape[0])]
    return np.concatenate([best.astype(np.uint8)[:, None], chosen], axis=1).tobytes()


def _tiff16_writer(path: Path, array: np.ndarray, *, icc: bytes | None, exif: bytes | None) -> Writer:
    try:
        import tifffile
    except ImportError as exc:
        raise ImageWriteError(path, "writing a 16-bit TIFF needs the 'tifffile' package") from exc
    channels = array.shape[2]
    if exif:
        warnings.warn(f"{path}: EXIF is not carried into 16-bit TIFF files", stacklevel=3)

    def write(f: IO[bytes]) -> None:
        tifffile.imwrite(
            f,
            array[:, :, 0] if channels == 1 else array,
            photometric="minisblack" if channels <= 2 else "rgb",
            extrasamples=["unassalpha"] if channels in (2, 4) else None,
            planarconfig="contig",
            compression="zlib",
            predictor=True,
            iccprofile=icc,
            metadata=None,
        )

    return write


def _write_atomically(path: Path, writer: Writer) -> None:
    directory = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ImageWriteError(path, "is a directory")
    try:
        fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=directory)
    except OSError as exc:
        raise ImageWriteError(path, f"cannot create a file in {directory} ({exc.strerror or exc})") from exc
    temp = Path(temp_name)
    try:
        os.close(fd)
        with open(temp, "wb") as f:  # by name: some writers (tifffile) want a file object with a path
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temp, 0o666 & ~_umask())  # mkstemp's 0600 would surprise whoever shares the folder
        os.replace(temp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        if isinstance(exc, ImageWriteError):
            raise
        if isinstance(exc, (OSError, ValueError, TypeError, KeyError, struct.error)):
            raise ImageWriteError(path, f"cannot write image ({exc})") from exc
        raise
    _fsync_directory(directory)


_UMASK: int | None = None


def _umask() -> int:
    global _UMASK
    if _UMASK is None:
        # os.umask can only be read by setting it; do it once.
        current = os.umask(0o022)
        os.umask(current)
        _UMASK = current
    return _UMASK


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not possible on every platform/filesystem, so best effort.
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
