"""Writing image files atomically, keeping depth, grayscale, alpha, ICC profile and EXIF."""

from __future__ import annotations

import dataclasses
import os
import struct
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from restorekit.data.picture import FORMAT_BY_SUFFIX, ImageWriteError, Picture, _ALPHA_FORMATS, _EXIF_PREFIX, _PNG_SIGNATURE, _SIXTEEN_BIT_FORMATS
from restorekit.fileio import atomic_path


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

    The file is written to a temporary ``.<name>.XXXXXXXX.tmp`` beside ``path``, flushed to disk and then
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
    """Write through :func:`~restorekit.fileio.atomic_path`, whose temporary names ``remove_temporaries`` knows."""
    if path.is_dir():
        raise ImageWriteError(path, "is a directory")
    directory = path.parent if str(path.parent) else Path(".")
    try:
        # Outputs are for sharing: 0666 less the umask like any written file, and a durable rename.
        with atomic_path(path, make_parents=False, shared_permissions=True, sync_directory=True) as temp:
            with open(temp, "wb") as f:  # by name: some writers (tifffile) want a file object with a path
                writer(f)
    except ImageWriteError:
        raise
    except FileNotFoundError as exc:
        if not directory.is_dir():
            raise ImageWriteError(path, f"cannot create a file in {directory} ({exc.strerror or exc})") from exc
        raise ImageWriteError(path, f"cannot write image ({exc})") from exc
    except (OSError, ValueError, TypeError, KeyError, struct.error) as exc:
        raise ImageWriteError(path, f"cannot write image ({exc})") from exc
