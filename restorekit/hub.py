"""The one download path: every file restorekit fetches from the network comes through :func:`fetch`.

:mod:`pooch` does the bookkeeping a download needs — a temporary file beside the target, the SHA-256
check, the rename into place only when the hash matches — and :class:`ResumingDownloader`, a pooch
downloader built on :mod:`requests`, adds what pooch lacks: a persistent ``NAME.part`` file that the
next attempt continues with an HTTP ``Range`` request, and a progress bar. A file lock around each
target makes concurrent fetches of one file (threads or processes) download it once.

Every failure is a :class:`DownloadError` whose message is one line naming the URL and the exact path
where a file downloaded by hand is picked up (and hash-checked) instead.

Environment:
    RESTOREKIT_OFFLINE: a true value (``1``, ``true``, ``yes``, ``on``, any case) forbids every network
        access; files already on disk are still verified and used.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from restorekit.fileio import sha256_file

CHUNK = 1 << 18
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
RESUME_ATTEMPTS = 3
"""How many times one :func:`fetch` continues a transfer that broke off, as long as each try gained bytes."""

_TRUE = {"1", "true", "yes", "on"}


class DownloadError(FileNotFoundError):
    """A file could not be downloaded or verified; the message says where to put it by hand."""


def offline() -> bool:
    """Whether ``RESTOREKIT_OFFLINE`` forbids network access (``HF_HUB_OFFLINE``-style true values)."""
    return os.environ.get("RESTOREKIT_OFFLINE", "").strip().lower() in _TRUE


@dataclass(frozen=True)
class Expected:
    """What a downloaded file must be: its full SHA-256, or the hex prefix torchvision puts in file names."""

    sha256: str | None = None
    sha256_prefix: str | None = None
    size: int | None = None

    def problem(self, path: Path) -> str | None:
        """Why *path* is not the expected file, or None when it is."""
        if self.size is not None and path.stat().st_size != self.size:
            return f"it has {path.stat().st_size:,} bytes, expected {self.size:,}"
        digest = sha256_file(path)
        if self.sha256 and digest != self.sha256.lower():
            return f"its SHA-256 is {digest}, expected {self.sha256.lower()}"
        if self.sha256_prefix and not digest.startswith(self.sha256_prefix.lower()):
            return f"its SHA-256 is {digest}, expected one starting with {self.sha256_prefix.lower()}"
        return None


def fetch(
    url: str,
    target: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    sha256_prefix: str | None = None,
    size: int | None = None,
    label: str | None = None,
    progress: bool | None = None,
) -> Path:
    """Return *target*, downloading it from *url* first if it is not on disk yet.

    A file already at *target* (a finished download, or one put there by hand) is hash-checked and
    used without touching the network. Otherwise the bytes go to ``TARGET.part`` (kept when the
    transfer breaks off, so the next call resumes it), are verified, and are renamed onto *target*;
    *target* never holds a partial or unverified file.

    Args:
        url: where to download from (``http(s)://``).
        target: the final path.
        sha256: the file's full SHA-256 (hex).
        sha256_prefix: or only the leading hex digits of it (torchvision's ``vgg19-dcbb9e9d.pth``).
        size: the expected size in bytes, when known (a mismatch is refused).
        label: what the file is, for messages and the progress bar (default: its name).
        progress: show progress on stderr; ``None`` shows a bar on a terminal and nothing otherwise.

    Raises:
        DownloadError: offline, unreachable, an HTTP error, a truncated transfer, or a hash mismatch;
            one line naming *url* and *target*.
        ValueError: neither *sha256* nor *sha256_prefix* was given (restorekit never loads an
            unverified download).

    Example:
        >>> fetch("https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",  # doctest: +SKIP
        ...       "vgg19-dcbb9e9d.pth", sha256_prefix="dcbb9e9d")
    """
    if not sha256 and not sha256_prefix:
        raise ValueError(f"{url}: refusing to download without a SHA-256 to check")
    target = Path(target).expanduser()
    label = label or target.name
    expected = Expected(sha256, sha256_prefix, size)
    if target.is_file():
        return _verified(target, url, expected, label)
    if offline():
        raise DownloadError(
            f"{label}: RESTOREKIT_OFFLINE is set, so {url} is not downloaded; "
            f"download it by hand and put it at {target}"
        )
    from filelock import FileLock, Timeout

    target.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(target.parent / f".{target.name}.lock"))
    try:
        # Whoever holds the lock downloads; the others wait here and then find the finished file.
        with lock.acquire(timeout=_lock_timeout()):
            if target.is_file():
                return _verified(target, url, expected, label)
            _download(url, target, expected, label, _show_progress(progress))
    except Timeout:
        raise DownloadError(
            f"{label}: another process has been downloading {url} for too long (lock {lock.lock_file}); "
            f"try again, or download it by hand and put it at {target}"
        ) from None
    return target


def _lock_timeout() -> float:
    return float(os.environ.get("RESTOREKIT_DOWNLOAD_LOCK_TIMEOUT", "3600"))


def _show_progress(progress: bool | None) -> bool:
    if progress is not None:
        return progress
    return sys.stderr.isatty()


#: Files already hash-checked in this process, by path, size and modification time: a cached file (the
#: 548 MB VGG19, used by every perceptual loss built) is hashed once, not at every use.
_VERIFIED: set[tuple[str, int, int, Expected]] = set()


def _verified(path: Path, url: str, expected: Expected, label: str) -> Path:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, expected)
    if key in _VERIFIED:
        return path
    problem = expected.problem(path)
    if problem:
        # Never delete it: a file on disk at the final path was put there by hand (downloads are verified
        # before the rename), so the user decides what to do with it.
        raise DownloadError(
            f"{label}: {path} is not the file from {url} ({problem}); delete it or replace it with that file"
        )
    _VERIFIED.add(key)
    return path


def _download(url: str, target: Path, expected: Expected, label: str, show_progress: bool) -> None:
    import pooch
    import requests

    part = target.with_name(target.name + ".part")
    downloader = ResumingDownloader(target, expected, label=label, progress=show_progress)
    pooch.get_logger().setLevel("WARNING")  # pooch logs each fetch at INFO; the progress bar is enough
    hint = f"download it by hand and put it at {target}"
    try:
        pooch.retrieve(
            url,
            known_hash=f"sha256:{expected.sha256.lower()}" if expected.sha256 else None,
            fname=target.name,
            path=target.parent,
            downloader=downloader,
            progressbar=False,
        )
    except DownloadError:
        raise
    except ValueError as exc:  # pooch's own hash check (the downloader checks first; kept as a backstop)
        part.unlink(missing_ok=True)
        raise DownloadError(f"{label}: the file from {url} failed verification ({_one_line(exc)}); {hint}") from None
    except requests.exceptions.RequestException as exc:
        raise DownloadError(f"{label}: cannot download {url} ({_describe(exc)}); {hint}") from None
    except OSError as exc:
        raise DownloadError(f"{label}: cannot write the download from {url} ({_one_line(exc)}); {hint}") from None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return " ".join(text.split()) if text else type(exc).__name__


def _describe(exc: BaseException) -> str:
    import requests

    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return "the server stopped sending"
    if isinstance(exc, requests.exceptions.ConnectionError) and not isinstance(
        exc, requests.exceptions.ChunkedEncodingError
    ):
        return "cannot connect: host unreachable or connection refused"
    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code} {exc.response.reason or ''}".strip()
    return _one_line(exc)


class ResumingDownloader:
    """A pooch downloader that resumes a persistent partial file and shows progress.

    Called by pooch as ``downloader(url, output_file, pooch_obj)``. The bytes are streamed into
    ``TARGET.part``, continuing an earlier partial file with ``Range: bytes=N-`` (a server that answers
    200 instead of 206 is read from the start). When complete and verified, the partial file is moved
    onto pooch's temporary ``output_file``, which pooch checks again and renames onto the target. A
    verification failure deletes the partial file: bytes that hash wrong must not be resumed.

    Args:
        target: the final path (the partial file sits beside it).
        expected: what the finished file must be.
        label: what is downloaded, for messages and the progress bar.
        progress: show a progress bar on stderr.
    """

    def __init__(self, target: Path, expected: Expected, *, label: str, progress: bool = False) -> None:
        self.target = Path(target)
        self.part = self.target.with_name(self.target.name + ".part")
        self.expected = expected
        self.label = label
        self.progress = progress

    def __call__(self, url: str, output_file: str | IO[bytes], pooch_obj: Any) -> None:  # noqa: ARG002
        if self.expected.size is not None and self._have() > self.expected.size:
            self.part.unlink()  # longer than the file can be: not a prefix of it
        attempts = 0
        while True:
            before = self._have()
            try:
                self._transfer(url)
                break
            except _Truncated as exc:
                attempts += 1
                # Resume at once while each try gains bytes; a server that sends nothing new is not retried.
                if self._have() <= before or attempts >= RESUME_ATTEMPTS:
                    raise DownloadError(str(exc)) from None
        problem = self.expected.problem(self.part)
        if problem:
            self.part.unlink(missing_ok=True)
            raise DownloadError(
                f"{self.label}: the file from {url} is not the expected one ({problem}), so it was deleted; "
                f"download it by hand and put it at {self.target}"
            )
        if isinstance(output_file, (str, os.PathLike)):
            os.replace(self.part, output_file)
        else:  # pooch also accepts file objects; copy into it
            with open(self.part, "rb") as source:
                for block in iter(lambda: source.read(CHUNK), b""):
                    output_file.write(block)
            self.part.unlink()

    def _have(self) -> int:
        return self.part.stat().st_size if self.part.is_file() else 0

    def _transfer(self, url: str) -> None:
        """One HTTP request appending to the partial file; :class:`_Truncated` when it ends early."""
        import requests
        import urllib3

        offset = self._have()
        if self.expected.size is not None and offset == self.expected.size:
            return  # an earlier run got every byte and stopped before verifying
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        broken = False
        with requests.get(url, headers=headers, stream=True, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT)) as response:
            if response.status_code == 416 and offset:
                # The range starts past the end of the file: the partial file is not a prefix; start over.
                self.part.unlink()
                return self._transfer(url)
            response.raise_for_status()
            if offset and response.status_code == 206 and _range_start(response) == offset:
                mode, done = "ab", offset
            else:
                mode, done = "wb", 0  # Range ignored (200) or answered for another offset: from the start
            length = response.headers.get("Content-Length", "")
            total = done + int(length) if length.isdigit() else self.expected.size
            if response.headers.get("Content-Encoding", "identity") not in ("identity", ""):
                total = self.expected.size  # Content-Length counts the compressed bytes
            # urllib3 would raise on a short body and drop the bytes of the block being read; count the
            # bytes ourselves instead, so everything that arrived is kept for the resume.
            response.raw.enforce_content_length = False
            with open(self.part, mode) as out, _Progress(self.label, total, done, self.progress) as bar:
                try:
                    for block in response.raw.stream(CHUNK, decode_content=True):
                        out.write(block)
                        done += len(block)
                        bar.update(done)
                except (urllib3.exceptions.HTTPError, requests.exceptions.RequestException, ConnectionError, TimeoutError):
                    broken = True  # a cut connection or a read timeout mid-transfer: resumable
        if broken or (total is not None and done < total):
            of = f" of {total:,}" if total is not None else ""
            raise _Truncated(
                f"{self.label}: the transfer from {url} broke off after {done:,}{of} bytes (kept in {self.part}; "
                f"run again to resume), or download it by hand and put it at {self.target}"
            )
        return None


class _Truncated(Exception):
    """The connection ended before every byte the server announced had arrived."""


def _range_start(response: Any) -> int | None:
    value = response.headers.get("Content-Range", "")  # "bytes START-END/TOTAL"
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


class _Progress:
    """A rich progress bar on stderr, or nothing (``enabled=False``)."""

    def __init__(self, label: str, total: int | None, done: int, enabled: bool) -> None:
        self.label, self.total, self.done, self.enabled = label, total, done, enabled
        self._bar: Any = None
        self._task: Any = None
        self._last = 0.0

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

            self._bar = Progress(
                "[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                TransferSpeedColumn(), TimeRemainingColumn(), console=Console(stderr=True), transient=False,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(f"downloading {self.label}", total=self.total, completed=self.done)
        return self

    def update(self, done: int) -> None:
        self.done = done
        if self._bar is not None and time.monotonic() - self._last > 0.1:
            self._last = time.monotonic()
            self._bar.update(self._task, completed=done)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            with contextlib.suppress(Exception):
                self._bar.update(self._task, completed=self.done)
            self._bar.__exit__(*exc)
