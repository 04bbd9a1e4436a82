"""Prepared sub-image folders (``restore prepare``): their manifest, their store, and fast 8-bit reads.

A prepared folder ``OUT`` holds the sub-images of large HR images (and of their aligned LR images) in
BasicSR's naming, and a manifest that says how each was made::

    OUT/manifest.jsonl            a header line, then one line per source image
    OUT/HR/0001_s001.png          format "png": one file per sub-image
    OUT/X4/0001_s001.png          the aligned x4 LR sub-image (when LR folders were given)
    OUT/store/HR/0001.npy         format "npy": all sub-images of one source, raw uint8 rows, back to back
    OUT/store/X4/0001.npy

The training loader reads the manifest (:class:`PreparedSet`) instead of listing and opening every file:
a DF2K folder holds well over 100,000 sub-images. A store's sub-images are read through ``numpy``'s memory
map (:class:`StoredImage`): no decoding, and only the pages of the crop are touched.

:func:`decode_8bit` decodes an 8-bit file to ``uint8`` samples without the float conversion of
:func:`~restorekit.data.images.load_rgb`, so a training crop is cut before it is converted; it declines
(returns None) every file whose pixels ``load_rgb`` would transform (16 bits, alpha, palette, CMYK, an
EXIF rotation), and the caller then uses ``load_rgb``.

Nothing in this module imports torch at import time: ``restore prepare`` workers need numpy and Pillow.
"""

from __future__ import annotations

import json
import math
import os
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "FORMATS",
    "MANIFEST",
    "PreparedSet",
    "StoredImage",
    "SubImage",
    "decode_8bit",
    "find_prepared",
    "level_folder",
    "window_starts",
]

MANIFEST = "manifest.jsonl"
"""The manifest's file name inside a prepared folder."""

HEADER_KEY = "restorekit_subimages"
"""The header line's marker; its value is the manifest version."""

MANIFEST_VERSION = 1

FORMATS = ("png", "npy")
"""How sub-images are kept: one PNG file each (BasicSR's layout), or raw uint8 shards read by memory map."""


def level_folder(scale: int) -> str:
    """The folder of a resolution level: ``HR`` for the targets, ``X4`` for the x4 LR images."""
    return "HR" if scale == 1 else f"X{scale}"


def window_starts(length: int, crop: int, step: int, thresh: int = 0, multiple: int = 1) -> list[int]:
    """Start positions of the sub-images along one side, BasicSR's ``extract_subimages`` convention.

    Windows of *crop* pixels every *step* pixels; when the windows leave a remainder at the end larger
    than *thresh*, one more window is added flush with the end (so it overlaps its neighbour), otherwise
    the remainder is dropped. A side shorter than *crop* gives one window from 0 (the sub-image is then
    shorter than *crop*; BasicSR fails on such images). With *multiple* > 1 (aligned LR levels) every
    start is a multiple of it, the flush window is moved back to the nearest one.

    Args:
        length: the side, in pixels (for aligned LR levels: the part of the side every level covers).
        crop: sub-image side; a multiple of *multiple*.
        step: distance between window starts; a multiple of *multiple*.
        thresh: remainders up to this many pixels are dropped.
        multiple: every start (and *crop*, *step*) is a multiple of this (the LR scales' common multiple).

    Returns:
        The start positions, increasing.

    Example:
        >>> window_starts(1356, 480, 240)
        [0, 240, 480, 720, 876]
        >>> window_starts(1356, 480, 240, thresh=200)
        [0, 240, 480, 720]
    """
    if length <= crop:
        return [0]
    starts = list(range(0, length - crop + 1, step))
    last = (length - crop) // multiple * multiple
    if length - (starts[-1] + crop) > thresh and last > starts[-1]:
        starts.append(last)
    return starts


def common_multiple(scales: Iterable[int]) -> int:
    """The least common multiple of the LR scales (1 without LR levels)."""
    value = 1
    for scale in scales:
        value = value * scale // math.gcd(value, scale)
    return value


# --- 8-bit decoding ---------------------------------------------------------------------------------

_FAST_FORMATS = frozenset({"PNG", "JPEG", "MPO", "BMP", "TIFF", "WEBP"})


def decode_8bit(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> np.ndarray | None:
    """The ``(H, W, 3)`` or ``(H, W, 1)`` uint8 samples of an 8-bit RGB or gray file; None for other files.

    Exactly the values :func:`~restorekit.data.images.load_rgb` gives, times 255, for every file it
    accepts: 8-bit RGB or gray without transparency and without an EXIF rotation. For everything else
    (16-bit colour, alpha, palette, CMYK, a rotated photo) it returns None and the caller reads the file
    with ``load_rgb``, which knows those cases.

    Args:
        path: the image file.
        max_pixels: the decompression-bomb limit (None: Pillow's), as for ``load_rgb``.

    Raises:
        ImageReadError: the file is missing, empty, not an image, too large, truncated or corrupt (the
            same one-line messages as ``load_rgb``).

    Example:
        >>> samples = decode_8bit("0001_s001.png")  # doctest: +SKIP
        >>> samples.shape, samples.dtype  # doctest: +SKIP
        ((480, 480, 3), dtype('uint8'))
    """
    import struct
    import zlib

    # The reader's own checks, so that messages and the bomb limit are the same as load_rgb's.
    from restorekit.data.image_read import _TiffForTifffile, _check_file, _open_image, _sixteen_bit_colour
    from restorekit.data.picture import _ORIENTATION, ImageReadError

    path = Path(path)
    _check_file(path)
    try:
        im = _open_image(path, max_pixels)
    except _TiffForTifffile:
        return None
    with im:
        if im.format not in _FAST_FORMATS or im.mode not in ("RGB", "L") or "transparency" in im.info:
            return None
        if _sixteen_bit_colour(path, im) is not None:
            return None
        try:
            orientation = int(im.getexif().get(_ORIENTATION, 1))
        except Exception:  # load_rgb ignores a malformed EXIF block too
            orientation = 1
        if orientation in range(2, 9):
            return None
        try:
            im.load()
            samples = np.array(im)  # writable (np.asarray's view of Pillow's bytes is not): torch needs that
        except MemoryError as exc:
            raise ImageReadError(path, "not enough memory to decode the image") from exc
        except (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error) as exc:
            raise ImageReadError(path, f"truncated or corrupt image ({exc})") from exc
    return samples[:, :, None] if samples.ndim == 2 else samples


def read_rgb8(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> np.ndarray:
    """Any image as ``(H, W, 3)`` uint8 RGB: :func:`decode_8bit`, else ``load_rgb`` rounded to 8 bits.

    Raises:
        ImageReadError: the file cannot be read.
    """
    samples = decode_8bit(path, max_pixels=max_pixels)
    if samples is None:
        from restorekit.data.images import load_rgb

        rgb = load_rgb(path, max_pixels=max_pixels)
        samples = (rgb * 255.0).round_().clamp_(0, 255).byte().permute(1, 2, 0).numpy()
    if samples.shape[2] == 1:
        samples = np.repeat(samples, 3, axis=2)
    return np.ascontiguousarray(samples)


# --- the store ------------------------------------------------------------------------------------

# Open shard maps of this process (a DataLoader worker opens its own). Bounded: each map holds a file
# descriptor, and a DF2K store has ~3,500 shards.
_MAPS: OrderedDict[Path, np.ndarray] = OrderedDict()
_MAX_MAPS = 128


def _shard(path: Path) -> np.ndarray:
    array = _MAPS.get(path)
    if array is not None:
        _MAPS.move_to_end(path)
        return array
    from restorekit.data.picture import ImageReadError

    try:
        # Copy-on-write: writable for torch.from_numpy (no warning, no copy), never written back.
        array = np.load(path, mmap_mode="c", allow_pickle=False)
    except FileNotFoundError as exc:
        raise ImageReadError(path, "no such file (the sub-image store is incomplete; run restore prepare again)") from exc
    except (OSError, ValueError) as exc:
        raise ImageReadError(path, f"not a sub-image store shard ({exc})") from exc
    if array.dtype != np.uint8 or array.ndim != 1:
        raise ImageReadError(path, f"not a sub-image store shard (holds {array.dtype} of shape {array.shape})")
    _MAPS[path] = array
    while len(_MAPS) > _MAX_MAPS:
        _MAPS.popitem(last=False)
    return array


@dataclass(frozen=True)
class StoredImage:
    """One sub-image in a store shard: ``height × width × 3`` uint8 samples from byte *offset*.

    Attributes:
        shard: the ``.npy`` file (a 1-D uint8 array).
        offset: index of the sub-image's first sample in the shard's array.
        height: rows.
        width: columns.
    """

    shard: Path
    offset: int
    height: int
    width: int

    def array(self) -> np.ndarray:
        """The ``(H, W, 3)`` uint8 samples, memory-mapped (only the pages read are loaded).

        Raises:
            ImageReadError: the shard is missing, not a shard, or shorter than the manifest says.
        """
        data = _shard(self.shard)
        end = self.offset + self.height * self.width * 3
        if end > data.shape[0]:
            from restorekit.data.picture import ImageReadError

            raise ImageReadError(self.shard, f"shorter than the manifest says ({data.shape[0]} < {end} samples)")
        return data[self.offset : end].reshape(self.height, self.width, 3)


# --- the manifest ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubImage:
    """One sub-image of a prepared folder, at every resolution level it was prepared at.

    Attributes:
        name: ``SOURCE_sNNN`` (BasicSR's naming; ``SOURCE`` keeps sub-folders).
        source: the source image's name.
        files: level (1 for HR, else the LR scale) → the sub-image's file; for a store, the path the
            ``png`` format would have used (it names the sub-image in messages; nothing is read there).
        stored: level → where the store keeps it; empty for the ``png`` format.
    """

    name: str
    source: str
    files: dict[int, Path]
    stored: dict[int, StoredImage]


class PreparedSet:
    """A prepared folder as its manifest describes it.

    Args:
        root: the folder holding ``manifest.jsonl``.
        header: the manifest's first line (settings).
        records: one per source image, by name.

    Attributes:
        root, header, records: as given.
    """

    def __init__(self, root: Path, header: dict[str, Any], records: dict[str, dict[str, Any]]):
        self.root, self.header, self.records = root, header, records

    # -- reading ------------------------------------------------------------------------------------

    @classmethod
    def read(cls, root: str | os.PathLike[str]) -> PreparedSet:
        """Read ``root/manifest.jsonl``; a truncated last line (a killed writer) is ignored.

        Raises:
            DataError: no manifest, or not a restorekit sub-image manifest.
        """
        from restorekit.data.folders import DataError

        root = Path(root)
        path = root / MANIFEST
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise DataError(f"{root}: no {MANIFEST}; not a folder written by restore prepare") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: cannot be read ({exc})") from None
        header = _parse_line(lines[0]) if lines else None
        if not isinstance(header, dict) or header.get(HEADER_KEY) is None:
            raise DataError(f"{path}: not a restorekit sub-image manifest (its first line has no {HEADER_KEY!r})")
        if header[HEADER_KEY] > MANIFEST_VERSION:
            raise DataError(
                f"{path}: manifest version {header[HEADER_KEY]} is newer than this restorekit reads "
                f"({MANIFEST_VERSION}); upgrade restorekit"
            )
        records: dict[str, dict[str, Any]] = {}
        for number, line in enumerate(lines[1:], start=2):
            record = _parse_line(line)
            if record is None:
                if number == len(lines):  # the line a killed writer was appending
                    break
                raise DataError(f"{path}: line {number} is damaged; run restore prepare again to rebuild it")
            records[record["name"]] = record  # a later line for the same source replaces an earlier one
        return cls(root, header, records)

    @property
    def format(self) -> str:
        """``"png"`` or ``"npy"``."""
        return str(self.header["format"])

    @property
    def scales(self) -> list[int]:
        """The LR scales prepared beside HR (empty: HR only)."""
        return [int(s) for s in self.header.get("scales", [])]

    @property
    def complete(self) -> bool:
        """Whether the run that wrote it finished (every source prepared, or reported as failed)."""
        return bool(self.header.get("complete"))

    @property
    def failed(self) -> list[str]:
        """Sources that could not be read when it was written."""
        return list(self.header.get("failed", []))

    def subimages(self) -> list[SubImage]:
        """Every sub-image, sources in name order, each source's sub-images in row-major window order."""
        found: list[SubImage] = []
        levels = [1, *self.scales]
        for name in sorted(self.records):
            record = self.records[name]
            windows = record["windows"]
            outputs = record["outputs"]
            per_level: dict[int, list[Any]] = {s: outputs[level_folder(s)] for s in levels}
            offsets = {s: 0 for s in levels}
            for index, (_top, _left, height, width) in enumerate(windows):
                sub = subimage_name(name, index)
                files = {s: self.root / level_folder(s) / f"{sub}.png" for s in levels}
                stored: dict[int, StoredImage] = {}
                if self.format == "png":
                    files = {s: self.root / per_level[s][index][0] for s in levels}
                else:
                    for s in levels:
                        h, w = height // s, width // s
                        stored[s] = StoredImage(self.root / per_level[s][0][0], offsets[s], h, w)
                        offsets[s] += h * w * 3
                found.append(SubImage(sub, name, files, stored))
        return found

    def output_sizes(self) -> dict[Path, int]:
        """Every file the manifest records, with its size in bytes."""
        sizes: dict[Path, int] = {}
        for record in self.records.values():
            for files in record["outputs"].values():
                for relative, size in files:
                    sizes[self.root / relative] = int(size)
        return sizes

    def check_usable(self) -> None:
        """Raise DataError unless the folder can be trained on (finished, outputs present)."""
        from restorekit.data.folders import DataError

        if not self.complete:
            done = len(self.records)
            raise DataError(
                f"{self.root}: restore prepare did not finish ({done} source image(s) done); run it again "
                "with the same arguments to finish"
            )
        if not self.records:
            raise DataError(f"{self.root}: the manifest lists no sub-images")
        if self.format == "npy":
            # A few thousand shards: checking their sizes costs one stat each and catches a copy cut short.
            for path, size in self.output_sizes().items():
                try:
                    actual = path.stat().st_size
                except FileNotFoundError:
                    raise DataError(f"{path}: missing from the prepared folder; run restore prepare again") from None
                if actual != size:
                    raise DataError(
                        f"{path}: {actual} bytes, the manifest says {size}; run restore prepare again to rewrite it"
                    )


def subimage_name(source: str, index: int) -> str:
    """``SOURCE_sNNN`` with NNN counted from 1, as BasicSR names sub-images."""
    return f"{source}_s{index + 1:03d}"


def _parse_line(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def find_prepared(path: str | os.PathLike[str]) -> PreparedSet | None:
    """The prepared set at *path* (its root, or its ``HR`` / ``XN`` folder), or None for a plain folder.

    Raises:
        DataError: the manifest is there but damaged or of a newer version.
    """
    path = Path(path)
    for root in (path, path.parent):
        if (root / MANIFEST).is_file() and (root == path or path.name in _level_names(root)):
            return PreparedSet.read(root)
    return None


def _level_names(root: Path) -> set[str]:
    return {"HR"} | {p.name for p in root.glob("X*") if p.is_dir()}


def trusted_files(files: Sequence[Path]) -> set[Path]:
    """The *files* that a prepared folder's manifest vouches for: recorded with this size (or in a store).

    ``restore prepare`` writes every file atomically and records its size, so opening each of >100,000
    headers at every start (what :func:`~restorekit.data.sources.check_readable` does for plain folders)
    is not needed; a file replaced or cut short since has another size and is opened as usual.
    """
    sets: dict[Path, PreparedSet | None] = {}
    known: dict[Path, dict[Path, int]] = {}
    virtual: dict[Path, set[Path]] = {}
    trusted: set[Path] = set()
    for path in files:
        folder = path.parent
        if folder not in sets:
            sets[folder] = _prepared_above(folder, sets)
        prepared = sets[folder]
        if prepared is None or not prepared.complete:
            continue
        root = prepared.root
        if prepared.format == "npy":
            if root not in virtual:
                virtual[root] = {f for sub in prepared.subimages() for f in sub.files.values()}
            if path in virtual[root]:
                trusted.add(path)
            continue
        if root not in known:
            known[root] = prepared.output_sizes()
        size = known[root].get(path)
        if size is not None:
            try:
                if path.stat().st_size == size:
                    trusted.add(path)
            except OSError:
                pass
    return trusted


def _prepared_above(folder: Path, seen: dict[Path, PreparedSet | None]) -> PreparedSet | None:
    """The prepared set whose root is *folder* or one of its parents (sub-images keep sub-folders)."""
    for candidate in (folder, *folder.parents):
        if candidate in seen and candidate != folder:
            return seen[candidate]
        if (candidate / MANIFEST).is_file():
            try:
                return PreparedSet.read(candidate)
            except Exception:  # a damaged manifest: the files are opened one by one as for any folder
                return None
    return None
