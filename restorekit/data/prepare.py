"""Cutting large training images into overlapping sub-images, in parallel and resumably.

DIV2K and Flickr2K images are about 2040×1356: decoding a whole PNG for every 128×128 training crop
costs ~100 ms of CPU, far more than a GPU step has to spare. BasicSR's answer, followed here, is to cut
each image once into 480×480 sub-images every 240 pixels (``extract_subimages.py``); a crop then decodes
a 480×480 file, or — with the ``npy`` store — decodes nothing at all.

:func:`prepare_subimages` writes a prepared folder (see :mod:`restorekit.data.subimages` for its layout):

* windows of ``crop`` pixels every ``step`` pixels, plus one flush with the far edge when the remainder
  exceeds ``thresh`` (BasicSR's edge rule); a side shorter than ``crop`` is kept whole;
* optionally the aligned sub-images of LR folders (x2, x3, x4 ...): LR window = HR window / scale, every
  window start a multiple of the scales, and each LR file must be ``floor(HR size / scale)``;
* in a process pool (``workers``), one source image per task, every output written atomically
  (:mod:`restorekit.fileio`);
* resumable: ``manifest.jsonl`` gets a line as each source is finished (its size, mtime and outputs);
  a second run skips the sources whose size, mtime and outputs still match and redoes the others; when
  all are done the manifest is rewritten in name order and marked complete.

The training loader reads the manifest: ``data.train.hr = "OUT"`` (and ``lr = "OUT"`` for the aligned
LR sub-images) in a recipe.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from restorekit.data.subimages import (
    FORMATS,
    HEADER_KEY,
    MANIFEST,
    MANIFEST_VERSION,
    PreparedSet,
    common_multiple,
    level_folder,
    read_rgb8,
    subimage_name,
    window_starts,
)
from restorekit.fileio import atomic_path, atomic_write_text, remove_temporaries

__all__ = ["PrepareReport", "PrepareSettings", "plan_windows", "prepare_subimages"]


@dataclass(frozen=True)
class PrepareSettings:
    """How sub-images are cut and kept; a prepared folder is only ever resumed with the same settings.

    Attributes:
        crop: sub-image side on the HR side (BasicSR: 480).
        step: distance between sub-image starts (BasicSR: 240, so neighbours overlap by half).
        thresh: a remainder at the far edge up to this many pixels is dropped (BasicSR: 0, i.e. a last
            window flush with the edge whenever anything is left).
        scales: LR scales prepared beside HR, aligned (empty: HR only).
        format: ``"png"`` (one file per sub-image) or ``"npy"`` (raw uint8 shards, one per source image,
            read by memory map: no decoding when training, about 1.5-2x the disk of PNG).
        compress_level: zlib level of the PNG files (BasicSR writes level 3: decoding speed does not
            depend on it, writing does).

    Raises:
        ValueError: a setting out of range, or *crop*/*step* not multiples of every scale.
    """

    crop: int = 480
    step: int = 240
    thresh: int = 0
    scales: tuple[int, ...] = ()
    format: str = "png"
    compress_level: int = 3

    def __post_init__(self) -> None:
        if self.crop < 1 or self.step < 1 or self.thresh < 0:
            raise ValueError(f"crop and step must be positive and thresh >= 0; got {self.crop}, {self.step}, {self.thresh}")
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {self.format!r}")
        if not 0 <= self.compress_level <= 9:
            raise ValueError(f"compress_level must be 0..9; got {self.compress_level}")
        if any(s < 2 for s in self.scales) or len(set(self.scales)) != len(self.scales):
            raise ValueError(f"LR scales must be distinct integers >= 2; got {list(self.scales)}")
        multiple = common_multiple(self.scales)
        if self.crop % multiple or self.step % multiple:
            raise ValueError(
                f"crop {self.crop} and step {self.step} must be multiples of {multiple} so that the LR "
                f"sub-images at x{', x'.join(map(str, self.scales))} stay aligned"
            )

    def header(self) -> dict[str, Any]:
        """What the manifest's header records of these settings."""
        values = asdict(self)
        values["scales"] = list(self.scales)
        return values


@dataclass
class PrepareReport:
    """What a run of :func:`prepare_subimages` did.

    Attributes:
        root: the prepared folder.
        sources: source images in the set.
        prepared: sources cut in this run.
        skipped: sources already done by an earlier run (unchanged since).
        subimages: sub-images in the whole set (HR level).
        failed: ``"path: reason"`` for each source that could not be read.
        removed: sub-image files removed because their source changed or left the set.
        seconds: wall time.
    """

    root: Path
    sources: int = 0
    prepared: int = 0
    skipped: int = 0
    subimages: int = 0
    failed: list[str] = field(default_factory=list)
    removed: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class _Source:
    name: str
    path: Path
    lr: dict[int, Path]

    def signature(self) -> dict[str, Any]:
        """Size and mtime of the source and its LR files: a change means the source must be cut again."""
        return {"size": _stat(self.path), "lr": {str(s): _stat(p) for s, p in sorted(self.lr.items())}}


def _stat(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def plan_windows(height: int, width: int, settings: PrepareSettings, lr_sizes: dict[int, tuple[int, int]] | None = None) -> list[tuple[int, int, int, int]]:
    """The ``(top, left, height, width)`` HR windows of an image, row by row.

    Args:
        height: HR rows.
        width: HR columns.
        settings: crop, step, threshold and scales.
        lr_sizes: scale → the LR image's ``(height, width)``; the windows stay inside every level.

    Example:
        >>> len(plan_windows(1356, 2040, PrepareSettings()))  # DIV2K's 0001.png: 5 rows x 8 columns
        40
    """
    multiple = common_multiple(settings.scales)
    rows, cols = height, width
    for scale, (h, w) in (lr_sizes or {}).items():
        rows, cols = min(rows, h * scale), min(cols, w * scale)
    windows = []
    size_h = min(settings.crop, rows // multiple * multiple)
    size_w = min(settings.crop, cols // multiple * multiple)
    for top in window_starts(rows, settings.crop, settings.step, settings.thresh, multiple):
        for left in window_starts(cols, settings.crop, settings.step, settings.thresh, multiple):
            windows.append((top, left, size_h, size_w))
    return windows


# --- one source image (runs in a worker process) ---------------------------------------------------


def _cut(source: _Source, root: str, settings: PrepareSettings, max_pixels: int | None) -> dict[str, Any]:
    """Cut one source image and its LR images; write the outputs; return its manifest record."""
    from restorekit.data.folders import DataError

    signature = source.signature()  # before reading: a file changed while being cut is redone next time
    hr = read_rgb8(source.path, max_pixels=max_pixels)
    height, width = hr.shape[:2]
    levels: dict[int, np.ndarray] = {1: hr}
    for scale, path in sorted(source.lr.items()):
        lr = read_rgb8(path, max_pixels=max_pixels)
        expected = (height // scale, width // scale)
        if lr.shape[:2] != expected:
            raise DataError(
                f"{path}: x{scale} LR image is {lr.shape[1]}x{lr.shape[0]}; expected {expected[1]}x{expected[0]} "
                f"for {source.path.name} ({width}x{height})"
            )
        levels[scale] = lr
    lr_sizes = {s: a.shape[:2] for s, a in levels.items() if s != 1}
    windows = plan_windows(height, width, settings, lr_sizes)
    out = Path(root)
    outputs: dict[str, list[list[Any]]] = {}
    for scale, image in levels.items():
        crops = [
            image[top // scale : (top + h) // scale, left // scale : (left + w) // scale]
            for top, left, h, w in windows
        ]
        outputs[level_folder(scale)] = _write_level(out, source.name, scale, crops, settings)
    return {
        "name": source.name,
        "source": str(source.path),
        "lr": {str(s): str(p) for s, p in sorted(source.lr.items())},
        "signature": signature,
        "height": height,
        "width": width,
        "windows": [list(w) for w in windows],
        "outputs": outputs,
    }


def _write_level(out: Path, name: str, scale: int, crops: list[np.ndarray], settings: PrepareSettings) -> list[list[Any]]:
    from PIL import Image

    folder = level_folder(scale)
    if settings.format == "npy":
        relative = Path("store") / folder / f"{name}.npy"
        flat = np.concatenate([np.ascontiguousarray(c).reshape(-1) for c in crops])
        with atomic_path(out / relative, shared_permissions=True) as tmp, open(tmp, "wb") as handle:
            np.save(handle, flat, allow_pickle=False)
        return [[relative.as_posix(), (out / relative).stat().st_size]]
    written = []
    for index, crop in enumerate(crops):
        relative = Path(folder) / f"{subimage_name(name, index)}.png"
        with atomic_path(out / relative, shared_permissions=True) as tmp:
            Image.fromarray(np.ascontiguousarray(crop)).save(tmp, format="PNG", compress_level=settings.compress_level)
        written.append([relative.as_posix(), (out / relative).stat().st_size])
    return written


def _worker_start() -> None:
    # As torch's DataLoader does in its workers: a forked child must not start a thread pool the parent
    # already started (OpenMP is not fork-safe); one thread per worker is what the pool is for anyway.
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def _run_one(source: _Source, root: str, settings: PrepareSettings, max_pixels: int | None) -> tuple[str, Any]:
    """``("ok", record)`` or ``("failed", "path: reason")``; only bad input is caught, bugs propagate."""
    from restorekit.data.folders import DataError
    from restorekit.data.picture import ImageReadError

    try:
        return "ok", _cut(source, root, settings, max_pixels)
    except (ImageReadError, DataError) as exc:
        return "failed", str(exc)
    except FileNotFoundError as exc:
        return "failed", f"{exc.filename}: no such file"


# --- the whole set ---------------------------------------------------------------------------------


def _find_sources(hr: Sequence[Path], lr: dict[int, Path]) -> list[_Source]:
    from restorekit.data.folders import DataError, list_images
    from restorekit.data.pairs import find_pairs

    if lr and len(hr) != 1:
        raise DataError("LR folders can be given with one HR folder only")
    sources: dict[str, _Source] = {}
    for folder in hr:
        images = list_images(folder)
        matched: dict[int, dict[Path, Path]] = {
            scale: dict(find_pairs(folder, lr_dir, scale=scale)) for scale, lr_dir in lr.items()
        }
        for path in images:
            try:
                name = path.relative_to(folder).with_suffix("").as_posix()
            except ValueError:  # a single file given as the folder
                name = path.stem
            if name in sources:
                raise DataError(
                    f"{path}: the name {name!r} is also used by {sources[name].path}; sub-images need unique names"
                )
            sources[name] = _Source(name, path, {scale: matched[scale][path] for scale in lr})
    return [sources[name] for name in sorted(sources)]


def _done(record: dict[str, Any] | None, source: _Source, root: Path) -> bool:
    if record is None or record.get("signature") != source.signature():
        return False
    for files in record["outputs"].values():
        for relative, size in files:
            try:
                if (root / relative).stat().st_size != size:
                    return False
            except OSError:
                return False
    return True


def _outputs(record: dict[str, Any]) -> set[str]:
    return {relative for files in record["outputs"].values() for relative, _ in files}


class _Manifest:
    """The manifest being written: the header, the records, and appending one line per finished source."""

    def __init__(self, root: Path, header: dict[str, Any], records: dict[str, dict[str, Any]]):
        self.root, self.header, self.records = root, header, records
        self._handle: Any = None

    def rewrite(self, *, complete: bool, failed: list[str]) -> None:
        header = {**self.header, "complete": complete, "failed": failed, "sources": len(self.records)}
        lines = [json.dumps(header)] + [json.dumps(self.records[name]) for name in sorted(self.records)]
        atomic_write_text(self.root / MANIFEST, "\n".join(lines) + "\n")

    @contextlib.contextmanager
    def appending(self) -> Iterator[None]:
        with open(self.root / MANIFEST, "a", encoding="utf-8") as handle:
            self._handle = handle
            try:
                yield
            finally:
                self._handle = None

    def add(self, record: dict[str, Any]) -> None:
        self.records[record["name"]] = record
        # One line per finished source, flushed at once: a run killed now loses no finished image.
        self._handle.write(json.dumps(record) + "\n")
        self._handle.flush()


def prepare_subimages(
    hr: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    lr: dict[int, str | os.PathLike[str]] | None = None,
    settings: PrepareSettings | None = None,
    workers: int | None = None,
    max_pixels: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PrepareReport:
    """Cut the images of *hr* (and their LR images) into sub-images under *out*, resuming a run.

    Args:
        hr: HR folder(s); images in sub-folders keep their sub-folder below ``OUT/HR``.
        out: the prepared folder (created).
        lr: scale → LR folder of the same images (``NAME.png``, ``NAMExS.png`` or an ``XS`` sub-folder,
            as EDSR/DIV2K ship them), cut into the aligned sub-images.
        settings: crop, step, threshold, format; the scales are taken from *lr*.
        workers: processes; None: one per CPU; 0 or 1: in this process.
        max_pixels: the decompression-bomb limit for the sources.
        progress: called with ``(finished, total)`` after each source.

    Returns:
        What was done; ``failed`` lists unreadable sources (they are retried by the next run).

    Raises:
        DataError: missing or unmatched folders, duplicate names, or *out* prepared with other settings.
        ValueError: invalid settings.

    Example:
        >>> report = prepare_subimages("DIV2K_train_HR", "DIV2K_sub", lr={4: "DIV2K_train_LR_bicubic/X4"})  # doctest: +SKIP
        >>> report.subimages  # doctest: +SKIP
        32592
    """
    from restorekit.data.folders import DataError, resolve_data_path

    started = time.perf_counter()
    lr_dirs = {int(s): resolve_data_path(p) for s, p in (lr or {}).items()}
    base = settings or PrepareSettings()
    settings = PrepareSettings(**{**asdict(base), "scales": tuple(sorted(lr_dirs))})
    folders = [resolve_data_path(hr)] if isinstance(hr, (str, os.PathLike)) else [resolve_data_path(p) for p in hr]
    root = Path(out).expanduser()
    if root.resolve() in {f.resolve() for f in folders}:
        raise DataError(f"{root}: the prepared folder must not be the source folder")
    sources = _find_sources(folders, lr_dirs)

    header = {HEADER_KEY: MANIFEST_VERSION, **settings.header()}
    previous: dict[str, dict[str, Any]] = {}
    if (root / MANIFEST).is_file():
        existing = PreparedSet.read(root)
        theirs = {k: existing.header.get(k) for k in settings.header()}
        if theirs != settings.header():
            described = ", ".join(f"{k} {v}" for k, v in theirs.items())
            raise DataError(
                f"{root}: prepared with other settings ({described}); use another folder or the same settings"
            )
        previous = existing.records
    root.mkdir(parents=True, exist_ok=True)
    for folder in {root, *(p.parent for p in root.rglob("*.tmp"))}:
        remove_temporaries(folder)  # what a killed run left half-written

    report = PrepareReport(root=root, sources=len(sources))
    by_name = {s.name: s for s in sources}
    kept = {name: r for name, r in previous.items() if name in by_name and _done(r, by_name[name], root)}
    todo = [s for s in sources if s.name not in kept]
    # Files of sources that left the set, or that will be cut again, are not part of the set any more.
    stale = {rel for name, r in previous.items() if name not in kept for rel in _outputs(r)}
    manifest = _Manifest(root, header, kept)
    manifest.rewrite(complete=False, failed=[])
    report.skipped = len(kept)
    finished = len(kept)
    if progress is not None:
        progress(finished, len(sources))

    def finish(outcome: tuple[str, Any]) -> None:
        nonlocal finished
        kind, value = outcome
        if kind == "ok":
            manifest.add(value)
            report.prepared += 1
        else:
            report.failed.append(value)
        finished += 1
        if progress is not None:
            progress(finished, len(sources))

    with manifest.appending():
        if workers is not None and workers <= 1 or len(todo) <= 1:
            for source in todo:
                finish(_run_one(source, str(root), settings, max_pixels))
        else:
            _in_pool(todo, str(root), settings, max_pixels, workers or os.cpu_count() or 1, finish)

    for rel in stale - {r for rec in manifest.records.values() for r in _outputs(rec)}:
        with contextlib.suppress(FileNotFoundError):
            (root / rel).unlink()
            report.removed += 1
    failed_names = sorted(report.failed)
    manifest.rewrite(complete=True, failed=failed_names)
    report.subimages = sum(len(r["windows"]) for r in manifest.records.values())
    report.seconds = time.perf_counter() - started
    return report


def _in_pool(
    todo: list[_Source],
    root: str,
    settings: PrepareSettings,
    max_pixels: int | None,
    workers: int,
    finish: Callable[[tuple[str, Any]], None],
) -> None:
    import multiprocessing

    # fork starts at once on Linux (the workers need no state of ours); spawn where fork is unsafe.
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    queue = iter(todo)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_start) as pool:
        pending: set[Future] = set()
        try:
            # A bounded number of tasks in flight keeps the parent's memory flat for any set size.
            for source in queue:
                pending.add(pool.submit(_run_one, source, root, settings, max_pixels))
                if len(pending) >= 2 * workers:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        finish(future.result())
            for future in pending:
                finish(future.result())
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
