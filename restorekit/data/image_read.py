"""Reading image files: :func:`load_rgb` (a plain float tensor) and :func:`read_picture` (everything kept).

Pillow decodes everything except 16-bit *colour* images, which it silently truncates to 8 bits: 16-bit
RGB(A) and gray+alpha PNGs are decoded with ``torchvision.io.decode_png`` and 16-bit colour TIFFs with
``tifffile``. Every failure is an :class:`ImageReadError` whose one-line message starts with the path.

Files with several frames — animated GIF, APNG and WebP, multi-page TIFF — are refused rather than
reduced to their first frame without a word (reduced-resolution TIFF pages, which are previews of the
main page, do not count; nor do the extra images of an MPO camera file, which are previews or the other
eye of a stereo pair).
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from restorekit.data.picture import ImageReadError, Picture, _EXIF_PREFIX, _GRAY_MODES, _ORIENTATION, _PILLOW_LIMIT_LOCK, _PNG_SIGNATURE


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
    try:
        # Here, where every reader opens its files (the fast 8-bit decoder of training data too).
        _check_single_frame(path, im)
    except BaseException:
        im.close()
        raise
    return im


def _bomb_reason(width: int, height: int, limit: int) -> str:
    return (
        f"image has {width}×{height} = {width * height} pixels, over the decompression-bomb limit of {limit} "
        "(raise it with --max-pixels)"
    )


def _check_single_frame(path: Path, im: Image.Image) -> None:
    """Refuse files whose other frames would be dropped: only still images are restored."""
    if im.format == "MPO" or not getattr(im, "is_animated", False):
        return
    if im.format == "TIFF":
        frames = _full_resolution_pages(im)
        kind = "a multi-page TIFF"
    else:
        frames = int(getattr(im, "n_frames", 2))
        kind = {"GIF": "an animated GIF", "PNG": "an animated PNG (APNG)", "WEBP": "an animated WebP"}.get(
            im.format or "", f"an animated {im.format} file"
        )
    if frames > 1:
        raise ImageReadError(
            path,
            f"has {frames} frames ({kind}); only still images are restored and the other frames would be "
            "lost: extract the frames (e.g. ffmpeg -i INPUT frame_%04d.png) and restore those",
        )


def _full_resolution_pages(im: Image.Image) -> int:
    """TIFF pages that are images of their own (not reduced-resolution previews or masks of another)."""
    count = 0
    try:
        for index in range(int(getattr(im, "n_frames", 1))):
            im.seek(index)
            subfile = int(getattr(im, "tag_v2", {}).get(254, 0) or 0)
            if not subfile & 0b101:  # bit 0: reduced-resolution version, bit 2: transparency mask
                count += 1
    finally:
        im.seek(0)
    return count


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
            pages = [p for p in tif.pages if not (p.is_reduced or getattr(p, "is_mask", False))]
            if len(pages) > 1:
                raise ImageReadError(
                    path,
                    f"has {len(pages)} frames (a multi-page TIFF); only still images are restored and the other "
                    "frames would be lost: extract the pages and restore those",
                )
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


