"""Matching low/high-resolution (or blurred/sharp) files by name, including the EDSR layout.

EDSR/DIV2K benchmark folders name LR files ``NAMEx4.png`` under ``LR_bicubic/X4`` for ``HR/NAME.png``.
"""

from __future__ import annotations

import re
from pathlib import Path

from restorekit.data.folders import DataError, list_images


def lr_folder(path: str | Path, scale: int) -> Path:
    """The folder of LR images for *scale*: *path* itself, or its ``XN`` / ``xN`` sub-folder (EDSR layout)."""
    path = Path(path)
    for sub in (f"X{scale}", f"x{scale}"):
        if (path / sub).is_dir():
            return path / sub
    return path


def _lr_stem(stem: str, scale: int) -> str:
    return re.sub(rf"[xX]{scale}$", "", stem)


def match_pairs(targets: list[Path], sources: list[Path], *, scale: int = 1, what: str = "LR") -> list[tuple[Path, Path]]:
    """Pair each target file with the source file of the same name (``NAMExS`` allowed for LR).

    Raises:
        DataError: some target has no source; the message names a few of them.
    """
    by_stem: dict[str, Path] = {}
    for src in sources:
        by_stem.setdefault(_lr_stem(src.stem, scale) if scale > 1 else src.stem, src)
    pairs, missing = [], []
    for tgt in targets:
        src = by_stem.get(tgt.stem)
        if src is None:
            missing.append(tgt.name)
        else:
            pairs.append((tgt, src))
    if missing:
        shown = ", ".join(missing[:5]) + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else "")
        folder = sources[0].parent if sources else "?"
        raise DataError(f"{folder}: no {what} image for {shown}")
    return pairs


def find_pairs(target_dir: str | Path, source_dir: str | Path, *, scale: int = 1, what: str = "LR") -> list[tuple[Path, Path]]:
    """List and match the images of two folders."""
    folder = lr_folder(source_dir, scale) if scale > 1 else Path(source_dir)
    return match_pairs(list_images(target_dir), list_images(folder), scale=scale, what=what)
