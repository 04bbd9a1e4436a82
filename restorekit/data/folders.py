"""Finding image files in folders, with errors that name the folder."""

from __future__ import annotations

from pathlib import Path

from restorekit.data.images import IMAGE_EXTENSIONS


class DataError(Exception):
    """A dataset cannot be built; the message names the folder or file."""


def list_images(folder: str | Path, *, recursive: bool = True) -> list[Path]:
    """All image files below *folder*, sorted by path.

    Args:
        folder: a directory (or a single image file, returned alone).
        recursive: also look into sub-folders.

    Raises:
        DataError: the folder is missing or holds no image files.

    Example:
        >>> list_images("../shared/data/sr-bench/Set5/HR")  # doctest: +SKIP
        [PosixPath('.../baby.png'), ...]
    """
    path = Path(folder).expanduser()
    if path.is_file():
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise DataError(f"{path}: not an image file ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        return [path]
    if not path.exists():
        raise DataError(f"{path}: no such folder")
    if not path.is_dir():
        raise DataError(f"{path}: not a folder")
    pattern = "**/*" if recursive else "*"
    files = sorted(
        p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )
    if not files:
        raise DataError(f"{path}: no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in this folder")
    return files


def resolve_data_path(value: str | Path) -> Path:
    """A data path from a recipe; ``pkg:PACKAGE/sub/folder`` points inside an installed package.

    The quick-start recipe uses ``pkg:skimage/data``: photographs that ship with scikit-image.

    Raises:
        DataError: the package is not installed.
    """
    text = str(value)
    if not text.startswith("pkg:"):
        return Path(text).expanduser()
    package, _, sub = text[4:].partition("/")
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"{text}: package '{package}' is not installed (pip install 'restorekit[samples]')")
    return Path(next(iter(spec.submodule_search_locations))) / sub
