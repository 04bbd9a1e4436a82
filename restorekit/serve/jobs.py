"""The work queue of ``restore serve``: one background worker restores one image at a time.

One worker means the CPU or GPU is never shared between two restorations (no oversubscription, no
second copy of a model in device memory), and the web server's threads only ever read job states.
A job is cancelled by setting its event: a queued job is skipped, a running one stops at its next tile
batch (the progress callback of the tiled inference raises); a model that runs on whole images stops
after the image.

What a job does is what ``restore apply`` does for one file: :func:`restorekit.data.images.read_picture`
(with the server's pixel limit), :meth:`RestorationModel.restore_picture` (with ``outscale``) and
:func:`restorekit.data.images.write_picture` (format and quality), so a result downloaded from the page
equals ``restore apply``'s output for the same options.

Example:
    >>> queue = JobQueue(max_pixels=25_000_000)  # doctest: +SKIP
    >>> queue.start(); queue.submit(job)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from restorekit.inference.model import RestorationModel
    from restorekit.inference.options import InferenceOptions

QUEUED, RUNNING, DONE, ERROR, CANCELLED = "queued", "running", "done", "error", "cancelled"
FINISHED = frozenset({DONE, ERROR, CANCELLED})


def new_id() -> str:
    """A fresh identifier (32 hex digits): the only names the server gives files."""
    return uuid.uuid4().hex


class JobCancelled(Exception):
    """Raised inside the worker when the job being restored was cancelled."""


@dataclass(frozen=True)
class JobSettings:
    """How one image is restored: the options ``restore apply`` takes for it.

    Attributes:
        model: A model-store name, or the path of an uploaded weight file in the server's folder.
        model_label: The model's name for output file names (``photo_srgan.png``).
        options: Tile, overlap, batch, precision and device.
        outscale: Final size relative to the input, or None for the model's scale.
        format: Output format (``"PNG"``...), or None for the input's.
        quality: JPEG/WebP quality.
    """

    model: str
    model_label: str
    options: InferenceOptions
    outscale: float | None = None
    format: str | None = None
    quality: int = 95


@dataclass
class Job:
    """One uploaded image and what became of it (read by the page through :meth:`to_json`)."""

    id: str
    name: str
    source: Path
    target: Path
    download_name: str
    settings: JobSettings | None
    status: str = QUEUED
    message: str = ""
    notes: list[str] = field(default_factory=list)
    done_tiles: int = 0
    total_tiles: int = 0
    input_size: tuple[int, int] | None = None
    output_size: tuple[int, int] | None = None
    created: float = field(default_factory=time.time)
    cancel: threading.Event = field(default_factory=threading.Event)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "message": self.message,
            "notes": list(self.notes),
            "done_tiles": self.done_tiles,
            "total_tiles": self.total_tiles,
            "input_size": self.input_size,
            "output_size": self.output_size,
            "download_name": self.download_name,
            "model": self.settings.model_label if self.settings else "",
        }


class JobQueue:
    """Jobs by id, and the one worker thread that runs them in order.

    Args:
        max_pixels: Largest input (width × height) a job reads (the decompression-bomb limit).
        load: Loads a model from ``(reference, options)``; :func:`restorekit.load_model` by default.
    """

    def __init__(self, *, max_pixels: int | None, load: Callable[..., RestorationModel] | None = None) -> None:
        self.max_pixels = max_pixels
        self._load = load
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._model_key: tuple[Any, ...] | None = None
        self._model: RestorationModel | None = None
        #: Held while the device computes: a restoration, or checking an uploaded weight file.
        self.device_lock = threading.Lock()

    # -- the web side -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="restorekit-serve-worker", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Cancel every job and stop the worker (after the tile batch in flight)."""
        with self._lock:
            for job in self._jobs.values():
                job.cancel.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def add(self, job: Job) -> Job:
        """Record *job*; a queued one is handed to the worker, a failed one (bad upload) only shown."""
        with self._lock:
            self._jobs[job.id] = job
        if job.status == QUEUED:
            self._queue.put(job.id)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.created)

    def cancel(self, job_id: str) -> Job | None:
        """Cancel a job: a queued one is never run, a running one stops at its next tile batch."""
        job = self.get(job_id)
        if job is None:
            return None
        job.cancel.set()
        with self._lock:
            if job.status == QUEUED:
                job.status, job.message = CANCELLED, "cancelled"
        return job

    def remove(self, job_id: str) -> Job | None:
        """Forget a finished (or cancel and forget an unfinished) job and delete its files."""
        job = self.cancel(job_id)
        if job is None:
            return None
        with self._lock:
            self._jobs.pop(job_id, None)
        if job.status in FINISHED:
            for path in (job.source, job.target):
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
        return job

    # -- the worker ---------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None:
                return
            job = self.get(job_id)
            if job is None or job.cancel.is_set():
                continue
            with self._lock:
                job.status = RUNNING
            try:
                with self.device_lock:
                    self._run(job)
            except JobCancelled:
                job.status, job.message = CANCELLED, "cancelled"
                with contextlib.suppress(OSError):
                    job.target.unlink(missing_ok=True)
            except Exception as exc:  # a bad file or model: shown on the page; the worker goes on
                # Messages name the user's file, not the server's copy of it.
                message = _one_line(exc).replace(str(job.source), job.name).replace(str(job.target), job.download_name)
                job.status, job.message = ERROR, message
            else:
                job.status = DONE

    def _model_for(self, settings: JobSettings) -> RestorationModel:
        key = (settings.model, settings.options)
        if key != self._model_key or self._model is None:
            self._model, self._model_key = None, None  # free the previous model before loading the next
            load = self._load
            if load is None:
                import restorekit

                load = restorekit.load_model
            self._model = load(settings.model, options=settings.options)
            self._model_key = key
        return self._model

    def _run(self, job: Job) -> None:
        import torch

        from restorekit.data.images import read_picture, write_picture

        assert job.settings is not None
        settings = job.settings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = self._model_for(settings)
            if model.info.kind != "generator":
                raise ValueError(f"{settings.model_label}: holds a {model.info.kind}, not a generator")
            picture = read_picture(job.source, max_pixels=self.max_pixels)
            job.input_size = picture.size

            def progress(done: int, total: int) -> None:
                job.done_tiles, job.total_tiles = done, total
                if job.cancel.is_set():
                    raise JobCancelled

            if job.cancel.is_set():
                raise JobCancelled
            try:
                restored = model.restore_picture(picture, outscale=settings.outscale, progress=progress)
            except (torch.OutOfMemoryError, MemoryError):
                raise MemoryError(
                    f"{job.name}: not enough memory; use a smaller tile"
                    + ("" if model.descriptor.tileable else " (this model runs on whole images only)")
                ) from None
            if job.cancel.is_set():
                raise JobCancelled
            write_picture(restored, job.target, format=settings.format, quality=settings.quality)
            job.output_size = restored.size
        # What the model or the reader warn about (a whole-image pass, dropped transparency); not the
        # resource or deprecation warnings other threads may raise meanwhile.
        job.notes = list(dict.fromkeys(str(w.message) for w in caught if w.category is UserWarning))
        if model.plan.note:
            from restorekit.inference.options import render

            job.notes.append(render(model.plan.note))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return first
