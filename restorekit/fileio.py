"""Atomic file writes, the clean-up of what killed writers leave behind, and paths fit for messages.

Every file restorekit writes (weights, checkpoints, images, recipes, previews, store copies, downloads)
goes through :func:`atomic_path`: a kill or an error never leaves a half-written output behind, only a
temporary ``.NAME.XXXXXXXX.tmp`` that the next write into the same folder removes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import threading
import unicodedata
from collections.abc import Iterator
from pathlib import Path

try:  # POSIX: a writer holds a lock on its temporary file, so clean-ups can tell live writes from leftovers
    import fcntl
except ImportError:  # pragma: no cover - Windows, where an open file cannot be deleted anyway
    fcntl = None  # type: ignore[assignment]


TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]+\.tmp$")
"""Names :func:`atomic_path` gives its temporary files (``.NAME.XXXXXXXX.tmp``, as ``mkstemp`` makes them)."""

_CLEANED: set[str] = set()
_CLEANED_LOCK = threading.Lock()


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike[str],
    *,
    make_parents: bool = True,
    shared_permissions: bool = True,
    sync_directory: bool = False,
) -> Iterator[Path]:
    """Yield a temporary path beside *path*; rename it onto *path* only if the block succeeds.

    The temporary file (``.NAME.XXXXXXXX.tmp``, which :func:`remove_temporaries` recognises) lives in the
    same folder (so the rename is atomic on POSIX and Windows), is flushed to disk before the rename, and
    is removed on any error. While the block runs, the temporary file is locked: a clean-up in another
    process leaves it alone. The first write into a folder (per process) removes the temporaries that
    killed writers left there.

    Args:
        path: the file to write.
        make_parents: create missing parent folders; when off, a missing folder raises ``OSError``.
        shared_permissions: give the file the permissions a plain ``open`` would (0666 less the umask),
            as every output of restorekit has; off keeps ``mkstemp``'s owner-only 0600.
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
    _clean_once(directory)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    tmp = Path(tmp_name)
    try:
        _lock(fd)
        try:
            yield tmp
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            if shared_permissions:
                # mkstemp makes 0600 files; outputs follow the umask like any file a program creates.
                os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
    finally:
        os.close(fd)  # releases the lock, after the rename
    if sync_directory:
        _fsync_directory(directory)


def _lock(fd: int) -> None:
    if fcntl is not None:
        with contextlib.suppress(OSError):  # a filesystem without locks: the clean-up cannot tell, so be it
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _clean_once(directory: Path) -> None:
    """Remove the leftovers of killed writers from *directory*, the first time this process writes there."""
    key = os.path.abspath(directory)
    with _CLEANED_LOCK:
        if key in _CLEANED:
            return
        _CLEANED.add(key)
    with contextlib.suppress(OSError):
        remove_temporaries(directory)


_UMASK: int | None = None


def _umask() -> int:
    """The process's umask: read from ``/proc`` where it can be (Linux, thread-safe, always current);
    elsewhere it can only be read by setting it, done once and cached (setting it is not thread-safe)."""
    global _UMASK
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    if _UMASK is None:
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
    resumed again and again would pile them up. A temporary file that a live writer holds locked (see
    :func:`atomic_path`) is kept, so this is safe while other processes write into the folder.

    Returns:
        The files removed.

    Example:
        >>> remove_temporaries("photos/")  # doctest: +SKIP
        [PosixPath('photos/.beach_srgan.png.k2j4x9_a.tmp')]
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.iterdir():
        if TEMPORARY.match(path.name) and _remove_if_abandoned(path):
            removed.append(path)
    return removed


def _remove_if_abandoned(path: Path) -> bool:
    """Unlink *path* unless a live writer holds its lock; True when it was removed."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False  # gone already (renamed into place), a link, or not ours to open
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # a writer is still at work
            except OSError:
                pass  # no locks on this filesystem
        # Only the file that was locked: the name may have been renamed into place meanwhile.
        still = os.stat(path, follow_symlinks=False)
        mine = os.fstat(fd)
        if (still.st_dev, still.st_ino) != (mine.st_dev, mine.st_ino) or not _is_regular(still.st_mode):
            return False
        os.unlink(path)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _is_regular(mode: int) -> bool:
    import stat

    return stat.S_ISREG(mode)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- paths in messages ------------------------------------------------------------------------------

_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: object) -> str:
    """*text* with every character that could forge or garble a terminal line escaped.

    Control characters (newlines, carriage returns, ANSI escape sequences, DEL, C1 codes) and the
    Unicode direction overrides become Python-style escapes (``\\n``, ``\\x1b``, ``\\u202e``); all other
    characters, non-ASCII letters included, are kept. A file called ``"a\\nerror: forged"`` therefore
    prints as one line, and one called ``"\\x1b[2J.png"`` cannot clear the screen. Idempotent: the
    escapes contain no control characters.

    Every message that shows a path or a value read from a file goes through this (the CLI's consoles
    apply it to everything they print).

    Example:
        >>> printable("photo\\n\\x1b[31m.png")
        'photo\\\\n\\\\x1b[31m.png'
    """
    text = os.fspath(text) if isinstance(text, os.PathLike) else str(text)
    if text.isprintable():
        return text
    return "".join(_escape_char(c) for c in text)


def _escape_char(char: str) -> str:
    if char.isprintable() and char not in _BIDI:
        return char
    if char == " ":
        return char
    category = unicodedata.category(char)
    if category not in ("Cc", "Cf", "Zl", "Zp") and char not in _BIDI:
        return char  # e.g. a non-breaking space: not printable by Python's rule, but harmless
    escaped = repr(char)[1:-1]
    return escaped if escaped != char else f"\\u{ord(char):04x}"
