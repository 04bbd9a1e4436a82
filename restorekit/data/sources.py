"""Paired-image sources: where target images and their inputs are, in the layouts the field uses.

One record, :class:`ImagePair`, describes an image of any layout:

* **target only**: a folder of HR or sharp images; the input is made from the target (bicubic
  downscale, synthetic camera shake);
* **EDSR**: ``HR/NAME.png`` with ``LR_bicubic/X4/NAMEx4.png`` (any LR folder matched by name, ``NAMExS``
  allowed);
* **two folders** matched by relative path and stem (``blur/a.png`` with ``sharp/a.jpg``);
* **GoPro** (Nah et al. 2017): ``root/SEQUENCE/blur/NAME.png`` with ``root/SEQUENCE/sharp/NAME.png``
  (``blur_gamma`` for the gamma-corrected frames); ``root`` may hold ``blur``/``sharp`` directly;
* **side by side** (pix2pix "AB", DeblurGAN's ``aligned``): input on the left, target on the right;
* **prepared sub-images** (``restore prepare``, :mod:`restorekit.data.subimages`): the manifest lists
  the sub-images (and their aligned LR sub-images), as PNG files or in a memory-mapped store.

:class:`PairLoader` decodes a pair whatever its layout, checks that the sizes fit (one-line
:class:`DataError` naming the file), keeps 8-bit copies when caching and substitutes the next readable
pair for a broken one when asked to. For training crops it reads 8-bit files as ``uint8`` levels
(:meth:`PairLoader.load_levels`): the crop is cut before the float conversion, which costs more than
decoding for a 480×480 sub-image.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from restorekit.data.folders import DataError, list_images, resolve_data_path
from restorekit.data.images import ImageReadError, load_rgb
from restorekit.data.pairs import find_pairs
from restorekit.data.subimages import PreparedSet, StoredImage, decode_8bit, find_prepared, trusted_files

__all__ = [
    "LAYOUTS",
    "ImagePair",
    "PairLoader",
    "check_readable",
    "edsr_hr_root",
    "edsr_lr_root",
    "find_blur_pairs",
    "find_sharp_images",
    "sr_pairs",
    "to_uint8",
]

LAYOUTS = ("auto", "gopro", "folders", "ab")


@dataclass(frozen=True)
class ImagePair:
    """One image of a dataset: a target with its input file, a side-by-side file, or a target alone.

    Attributes:
        name: unique name (``SEQUENCE_FRAME`` for GoPro; path below the folder for benchmarks).
        target: the target (HR, sharp) image, or the side-by-side file.
        source: the input (LR, blurred) image; None when the input is made from the target or is the
            left half of a side-by-side file.
        side_by_side: *target* holds the input (left) and the target (right).
        stored_target: where a sub-image store keeps the target (then *target* only names it).
        stored_source: where a sub-image store keeps the input.
    """

    name: str
    target: Path
    source: Path | None = None
    side_by_side: bool = False
    stored_target: StoredImage | None = None
    stored_source: StoredImage | None = None

    @property
    def sharp(self) -> Path:
        """Deblurring's name for :attr:`target`."""
        return self.target

    @property
    def blur(self) -> Path | None:
        """Deblurring's name for :attr:`source`."""
        return self.source

    @property
    def paired(self) -> bool:
        """Whether the input is read from a file rather than made from the target."""
        return self.source is not None or self.side_by_side or self.stored_source is not None


def to_uint8(x: Tensor) -> Tensor:
    """[0, 1] float to ``uint8`` levels; exact for images read from 8-bit files."""
    return (x * 255.0).round_().clamp_(0, 255).to(torch.uint8)


def _as_float(image: Tensor) -> Tensor:
    return image.float() / 255 if image.dtype == torch.uint8 else image


def _levels(image: Tensor) -> Tensor:
    """A contiguous ``uint8`` copy to keep (a view of a decoded file or of a store would pin all of it)."""
    return image.contiguous().clone() if image.dtype == torch.uint8 else to_uint8(image)


# --- finding files --------------------------------------------------------------------------------


def _shown(names: Sequence[str]) -> str:
    return ", ".join(names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")


def _stem_key(path: Path, folder: Path) -> str:
    """The name used to match files across folders: relative path without its suffix."""
    try:
        return path.relative_to(folder).with_suffix("").as_posix()
    except ValueError:  # a single file given as the folder
        return path.stem


def _wanted(path: Path, include: Sequence[str] | None) -> bool:
    return not include or path.name in include or path.stem in include


def edsr_hr_root(path: str | Path) -> Path:
    """An EDSR benchmark root (``HR/`` beside ``LR_bicubic/``) means its ``HR`` folder."""
    path = resolve_data_path(path)
    return path / "HR" if (path / "HR").is_dir() else path


def edsr_lr_root(path: str | Path) -> Path:
    """An EDSR benchmark root given as the LR folder means its ``LR_bicubic`` folder."""
    path = resolve_data_path(path)
    return path / "LR_bicubic" if (path / "LR_bicubic").is_dir() else path


def sr_pairs(
    hr: str | Path | Sequence[str | Path],
    lr: str | Path | None = None,
    *,
    scale: int,
    include: Sequence[str] | None = None,
    key: str = "data",
) -> list[ImagePair]:
    """HR images (of one or more folders), with their LR files matched by name when *lr* is given.

    A folder written by ``restore prepare`` is read from its manifest: its sub-images, and with *lr*
    naming the same folder, their aligned LR sub-images at *scale*.

    Args:
        hr: HR folder(s); an EDSR root holding ``HR/``, or a prepared folder, is understood.
        lr: LR folder (``NAME.png`` or ``NAMExS.png``, an ``XS`` sub-folder or an EDSR root understood),
            or the prepared folder itself.
        scale: the upscaling factor.
        include: only these file names (or stems); for prepared folders also source names (all of
            that image's sub-images).
        key: the recipe table named in messages.

    Raises:
        DataError: missing folders, unmatched names, none of *include* found, or a prepared folder
            that is unfinished or has no LR sub-images at *scale*.
    """
    folders = [hr] if isinstance(hr, (str, Path)) else list(hr)
    if lr is not None and (len(folders) != 1 or not isinstance(lr, (str, Path))):
        raise DataError(f"{key}: paired lr/hr data takes one folder each")
    pairs: list[ImagePair] = []
    for folder in folders:
        prepared = find_prepared(resolve_data_path(folder))
        if prepared is not None:
            pairs += _prepared_pairs(prepared, lr, scale=scale, include=include, key=key)
            continue
        root = edsr_hr_root(folder)
        if lr is None:
            found = [ImagePair(_stem_key(p, root), p) for p in list_images(root)]
        else:
            matched = find_pairs(root, edsr_lr_root(lr), scale=scale)
            found = [ImagePair(_stem_key(t, root), t, s) for t, s in matched]
        if include:
            found = [p for p in found if _wanted(p.target, include)]
            if not found:
                raise DataError(f"{folder}: none of {', '.join(include)} found")
        pairs += found
    return pairs


def _prepared_pairs(
    prepared: PreparedSet, lr: str | Path | None, *, scale: int, include: Sequence[str] | None, key: str
) -> list[ImagePair]:
    """The sub-images of a prepared folder, with their LR sub-images when *lr* is that folder too."""
    prepared.check_usable()
    if prepared.failed:
        warnings.warn(
            f"{prepared.root}: {len(prepared.failed)} source image(s) could not be prepared and are left out "
            f"(first: {prepared.failed[0]})",
            stacklevel=3,
        )
    paired = False
    if lr is not None:
        lr_prepared = find_prepared(resolve_data_path(lr))
        if lr_prepared is None or lr_prepared.root.resolve() != prepared.root.resolve():
            raise DataError(
                f"{key}.lr: {lr} is not the prepared folder {prepared.root}; give the same folder for hr and lr "
                "(its aligned LR sub-images are used)"
            )
        if scale not in prepared.scales:
            have = ", ".join(f"x{s}" for s in prepared.scales) or "none"
            raise DataError(
                f"{prepared.root}: no x{scale} LR sub-images (prepared with: {have}); run restore prepare with "
                f"--lr {scale}=FOLDER, or leave {key}.lr out to make the LR on the fly"
            )
        paired = True
    pairs = []
    for sub in prepared.subimages():
        if include and not (sub.name in include or sub.source in include or sub.files[1].name in include):
            continue
        pairs.append(
            ImagePair(
                sub.name,
                sub.files[1],
                sub.files[scale] if paired else None,
                stored_target=sub.stored.get(1),
                stored_source=sub.stored.get(scale) if paired else None,
            )
        )
    if include and not pairs:
        raise DataError(f"{prepared.root}: none of {', '.join(include)} found")
    return pairs


def _by_key(files: list[Path], folder: Path) -> dict[str, Path]:
    table: dict[str, Path] = {}
    for path in files:
        name = _stem_key(path, folder)
        if name in table:
            raise DataError(f"{folder}: {table[name].name} and {path.name} have the same name; keep one of them")
        table[name] = path
    return table


def _match_folders(blur_dir: Path, sharp_dir: Path, prefix: str = "") -> list[ImagePair]:
    """Pair the images of two folders by relative path and stem (``a/x.png`` with ``a/x.jpg``)."""
    blurred = _by_key(list_images(blur_dir), blur_dir)
    sharp = _by_key(list_images(sharp_dir), sharp_dir)
    no_sharp = sorted(set(blurred) - set(sharp))
    no_blur = sorted(set(sharp) - set(blurred))
    if no_sharp or no_blur:
        problems = []
        if no_sharp:
            problems.append(f"{len(no_sharp)} blurred image(s) without a sharp one in {sharp_dir}: {_shown(no_sharp)}")
        if no_blur:
            problems.append(f"{len(no_blur)} sharp image(s) without a blurred one in {blur_dir}: {_shown(no_blur)}")
        raise DataError(f"{blur_dir} and {sharp_dir} do not match by file name: " + "; ".join(problems))
    return [ImagePair((prefix + k).replace("/", "_"), sharp[k], blurred[k]) for k in sorted(sharp)]


def _gopro_sequences(root: Path, blur_name: str) -> list[Path] | None:
    """The GoPro sequence folders under *root* (root itself if it holds ``blur``/``sharp``), or None."""
    if (root / "sharp").is_dir() and (root / blur_name).is_dir():
        return [root]
    subdirs = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    sequences = [p for p in subdirs if (p / "sharp").is_dir() or (p / blur_name).is_dir()]
    return sequences or None


def check_blur_name(gopro_blur: str) -> None:
    """Raise DataError unless *gopro_blur* names one of GoPro's blurred folders."""
    if gopro_blur not in ("blur", "blur_gamma"):
        raise DataError(f"gopro_blur must be 'blur' or 'blur_gamma'; got {gopro_blur!r}")


def _resolve_layout(root: Path | None, blur: Path | None, sharp: Path | None, layout: str, gopro_blur: str) -> str:
    if layout not in LAYOUTS:
        raise DataError(f"layout must be one of {', '.join(LAYOUTS)}; got {layout!r}")
    if (blur is None) != (sharp is None) and root is None:
        missing = "sharp" if sharp is None else "blur"
        raise DataError(f"paired data needs both blur and sharp folders; {missing} is missing")
    if root is not None and (blur is not None or sharp is not None):
        raise DataError("give either root (GoPro or side-by-side layout) or blur and sharp folders, not both")
    if root is None and blur is None:
        raise DataError("no data: give root (GoPro or side-by-side layout) or blur and sharp folders")
    if layout != "auto":
        if layout == "folders" and root is not None:
            raise DataError("layout 'folders' takes blur and sharp folders, not root")
        if layout in ("gopro", "ab") and root is None:
            raise DataError(f"layout '{layout}' takes root, not blur and sharp folders")
        return layout
    if root is None:
        return "folders"
    if not root.exists():
        raise DataError(f"{root}: no such folder")
    return "gopro" if _gopro_sequences(root, gopro_blur) else "ab"


def find_blur_pairs(
    *,
    root: str | Path | None = None,
    blur: str | Path | None = None,
    sharp: str | Path | None = None,
    layout: str = "auto",
    gopro_blur: str = "blur",
) -> list[ImagePair]:
    """Find blurred/sharp pairs in the GoPro, two-folder or side-by-side layout.

    Args:
        root: GoPro root (``SEQUENCE/blur``, ``SEQUENCE/sharp``) or a folder of side-by-side AB images.
        blur: folder of blurred images (with *sharp*; matched by relative path and stem).
        sharp: folder of sharp images.
        layout: ``"auto"``, ``"gopro"``, ``"folders"`` or ``"ab"``.
        gopro_blur: GoPro's blurred folder to use, ``"blur"`` or ``"blur_gamma"``.

    Returns:
        The pairs, sorted by name.

    Raises:
        DataError: missing folders, unmatched file names (listed), or no images.

    Example:
        >>> [p.name for p in find_blur_pairs(root="gopro-avg8")][:1]  # doctest: +SKIP
        ['GOPR0384_11_00_000001']
    """
    check_blur_name(gopro_blur)
    root_path, blur_path, sharp_path = (None if p is None else resolve_data_path(p) for p in (root, blur, sharp))
    kind = _resolve_layout(root_path, blur_path, sharp_path, layout, gopro_blur)
    if kind == "folders":
        assert blur_path is not None and sharp_path is not None
        return _match_folders(blur_path, sharp_path)
    assert root_path is not None
    if kind == "ab":
        return [
            ImagePair(_stem_key(p, root_path).replace("/", "_"), p, side_by_side=True) for p in list_images(root_path)
        ]
    sequences = _gopro_sequences(root_path, gopro_blur)
    if not sequences:
        raise DataError(f"{root_path}: no GoPro sequences (SEQUENCE/{gopro_blur} and SEQUENCE/sharp folders)")
    incomplete = [s.name for s in sequences if not ((s / "sharp").is_dir() and (s / gopro_blur).is_dir())]
    if incomplete:
        raise DataError(f"{root_path}: sequence(s) without both {gopro_blur}/ and sharp/: {_shown(incomplete)}")
    pairs: list[ImagePair] = []
    for seq in sequences:
        pairs += _match_folders(seq / gopro_blur, seq / "sharp", "" if seq == root_path else f"{seq.name}/")
    return pairs


def find_sharp_images(
    *, root: str | Path | None = None, sharp: str | Path | None = None, gopro_blur: str = "blur"
) -> list[ImagePair]:
    """Target-only images for synthetic blur: *sharp* (any folder), or the ``sharp`` folders of a GoPro
    *root* (every image below *root* when it is not in the GoPro layout).

    Raises:
        DataError: neither or both given, missing folders, or no images.
    """
    if (root is None) == (sharp is None):
        raise DataError("synthetic blur needs sharp images: give sharp (a folder) or root, not both")
    folder = resolve_data_path(sharp if sharp is not None else root)  # type: ignore[arg-type]
    if sharp is not None:
        return [ImagePair(_stem_key(p, folder).replace("/", "_"), p) for p in list_images(folder)]
    if not folder.exists():
        raise DataError(f"{folder}: no such folder")
    found = _gopro_sequences(folder, gopro_blur)
    if found is None:
        return [ImagePair(_stem_key(p, folder).replace("/", "_"), p) for p in list_images(folder)]
    sequences = [s for s in found if (s / "sharp").is_dir()]
    if not sequences:
        raise DataError(f"{folder}: GoPro-style sequences without sharp/ folders; synthetic blur needs sharp images")
    pairs = []
    for seq in sequences:
        prefix = "" if seq == folder else f"{seq.name}_"
        pairs += [
            ImagePair(prefix + _stem_key(p, seq / "sharp").replace("/", "_"), p) for p in list_images(seq / "sharp")
        ]
    return pairs


def check_readable(files: list[Path], *, skip_bad: bool) -> list[Path]:
    """Open every file's header before training starts; report all unreadable ones at once.

    Files that a ``restore prepare`` manifest records with their current size (or keeps in its store)
    are not opened: they were written atomically by restorekit, and a DF2K sub-image folder has >100,000.

    Returns the readable files (all of them unless *skip_bad*).

    Raises:
        DataError: some files cannot be read and *skip_bad* is off.
    """
    from PIL import Image, UnidentifiedImageError

    bad: list[str] = []
    good: list[Path] = []
    trusted = trusted_files(files)
    for path in files:
        if path in trusted:
            good.append(path)
            continue
        try:
            if path.stat().st_size == 0:
                raise ValueError("empty file")
            with Image.open(path) as img:
                img.size  # noqa: B018 - the header is parsed on open
            good.append(path)
        except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
            reason = "not an image file" if isinstance(exc, UnidentifiedImageError) else str(exc)
            bad.append(f"{path}: {reason}")
    if bad and not skip_bad:
        more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
        raise DataError("; ".join(bad[:3]) + more + " — fix or remove them, or set data.train.skip_bad = true")
    for line in bad:
        warnings.warn(f"skipping unreadable image {line}", stacklevel=2)
    if not good:
        raise DataError(f"{files[0].parent if files else '?'}: no readable images")
    return good


# --- loading --------------------------------------------------------------------------------------


class PairLoader:
    """Decode the pairs of any layout: ``(input or None, target)``, with size checks and an 8-bit cache.

    :meth:`load` gives float images in [0, 1], or ``uint8`` when they come from the cache;
    :meth:`load_levels` (what crops use) gives ``uint8`` for every 8-bit file, so that a crop can be cut
    before converting (:func:`as_float` converts; the values are the same).

    Args:
        pairs: the images.
        scale: target size / input size; at scale 1 the sizes must be equal.
        cache: keep decoded images in memory as 8-bit (GoPro-sized sets would not fit as float32);
            ignored, with a warning, for a sub-image store, which is memory-mapped.
        max_pixels: Pillow's decompression-bomb limit for these files.
        target_label: what the target is called in messages (``sharp``, ``HR``).
    """

    def __init__(
        self,
        pairs: Sequence[ImagePair],
        *,
        scale: int = 1,
        cache: bool = False,
        max_pixels: int | None = None,
        target_label: str = "sharp",
    ):
        self.pairs, self.scale, self.cache, self.max_pixels = list(pairs), scale, cache, max_pixels
        self.target_label = target_label
        if cache and any(p.stored_target is not None for p in self.pairs):
            # A store is memory-mapped: the OS page cache already keeps what fits, and a copy of a
            # DF2K-sized store (~100 GB) in every worker would not fit.
            warnings.warn("cache is ignored for a sub-image store (it is memory-mapped)", stacklevel=3)
            self.cache = False
        self._cache: dict[int, tuple[Tensor | None, Tensor]] = {}

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> tuple[Tensor | None, Tensor]:
        """``(input, target)`` of pair *index*; input None for target-only pairs.

        Raises:
            ImageReadError: a file cannot be read.
            DataError: the sizes do not fit, or a side-by-side image has an odd width.
        """
        return self._load(index, levels=False)

    def load_levels(self, index: int) -> tuple[Tensor | None, Tensor]:
        """Like :meth:`load`, but 8-bit images come back as ``uint8`` levels (``(3, H, W)`` views).

        Converting a whole image to float costs more than decoding it; a crop converts only itself.

        Raises:
            ImageReadError: a file cannot be read.
            DataError: the sizes do not fit, or a side-by-side image has an odd width.
        """
        return self._load(index, levels=True)

    def _read(self, path: Path, stored: StoredImage | None, levels: bool) -> Tensor:
        if stored is not None:
            image = torch.from_numpy(stored.array()).permute(2, 0, 1)
        elif levels:
            samples = decode_8bit(path, max_pixels=self.max_pixels)
            if samples is None:  # 16 bits, alpha, palette, rotation...: the full reader
                return load_rgb(path, max_pixels=self.max_pixels)
            image = torch.from_numpy(samples).permute(2, 0, 1).expand(3, -1, -1)
        else:
            return load_rgb(path, max_pixels=self.max_pixels)
        return image if levels else image.float().div_(255).contiguous()  # as load_rgb gives it

    def _load(self, index: int, *, levels: bool) -> tuple[Tensor | None, Tensor]:
        if index in self._cache:
            return self._cache[index]
        pair = self.pairs[index]
        levels = levels or self.cache
        image = self._read(pair.target, pair.stored_target, levels)
        if pair.side_by_side:
            width = image.shape[-1]
            if width % 2:
                raise DataError(f"{pair.target}: a side-by-side (blur | sharp) image needs an even width; got {width}")
            source, target = image[..., : width // 2], image[..., width // 2 :]
        else:
            target = image
            source = None
            if pair.source is not None or pair.stored_source is not None:
                source = self._read(pair.source or pair.target, pair.stored_source, levels)
                self._check_sizes(pair, source, target)
        if self.cache:
            self._cache[index] = (None if source is None else _levels(source), _levels(target))
            return self._cache[index]
        return source, target

    def _check_sizes(self, pair: ImagePair, source: Tensor, target: Tensor) -> None:
        sh, sw = source.shape[-2:]
        th, tw = target.shape[-2:]
        if self.scale == 1 and (sh, sw) != (th, tw):
            raise DataError(
                f"{pair.source}: size {sw}x{sh} differs from the {self.target_label} image {pair.target} ({tw}x{th})"
            )
        if self.scale > 1 and (th < sh * self.scale or tw < sw * self.scale):
            raise DataError(
                f"{pair.source}: size {sw}x{sh} does not match {pair.target.name} ({tw}x{th}) at scale {self.scale}"
            )

    def load_or_substitute(self, index: int, skip_bad: bool) -> tuple[int, Tensor | None, Tensor]:
        """Load *index* as :meth:`load_levels` does; with *skip_bad*, an unreadable file is replaced by the
        next readable pair.

        Raises:
            ImageReadError: the file cannot be read and *skip_bad* is off.
            DataError: no readable pair is left.
        """
        count = len(self.pairs)
        for attempt in range(count):
            candidate = (index + attempt) % count
            try:
                source, target = self.load_levels(candidate)
                return candidate, source, target
            except ImageReadError as exc:
                if not skip_bad:
                    raise
                warnings.warn(f"skipping unreadable image {exc}", stacklevel=3)
        raise DataError("no readable image left in the dataset")


def as_float(image: Tensor) -> Tensor:
    """A loaded image as float in [0, 1] (cached images are ``uint8``)."""
    return _as_float(image)
