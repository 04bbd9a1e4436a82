"""Atomic file writes: a kill or an error never leaves a half-written output behind."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path


TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]+\.tmp$")
"""Names :func:`atomic_path` gives its temporary files (``.NAME.XXXXXXXX.tmp``)."""


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike[str],
    *,
    make_parents: bool = True,
    shared_permissions: bool = False,
    sync_directory: bool = False,
) -> Iterator[Path]:
    """Yield a temporary path beside *path*; rename it onto *path* only if the block succeeds.

    The temporary file (``.NAME.XXXXXXXX.tmp``, which :func:`remove_temporaries` recognises) lives in the
    same folder (so the rename is atomic on POSIX and Windows), is flushed to disk before the rename, and
    is removed on any error.

    Args:
        path: the file to write.
        make_parents: create missing parent folders; when off, a missing folder raises ``OSError``.
        shared_permissions: give the file the permissions a plain ``open`` would (0666 less the umask)
            instead of ``mkstemp``'s owner-only 0600: for outputs that others in the folder read.
        sync_directory: also fsync the folder after the rename, so that the rename itself survives a
            power loss (best effort: not every platform can).

    Raises:
        OSError: the temporary file cannot be created, written or renamed.

    Example:
        >>> with atomic_path("out.png") as tmp:  # doctest: +SKIP
        ...     image.save(tmp, format="PNG")
    """
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    if make_parents:
        directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        if shared_permissions:
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if sync_directory:
        _fsync_directory(directory)


_UMASK: int | None = None


def _umask() -> int:
    global _UMASK
    if _UMASK is None:
        # os.umask can only be read by setting it; do it once (not thread-safe, hence the cache).
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


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write *data* to *path* atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 *text* to *path* atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the half-written files that killed writers left in *folder* (not its sub-folders).

    An atomic write that is killed (SIGKILL, power loss) leaves its ``.NAME.XXXXXXXX.tmp`` file behind;
    a checkpoint's can be as large as the model and its optimizer state, so a run that is killed and
    resumed again and again would pile them up. Only call this where no other process is writing.

    Returns:
        The files removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = [p for p in folder.iterdir() if TEMPORARY.match(p.name) and p.is_file()]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
