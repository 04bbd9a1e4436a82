"""The FastAPI application behind ``restore serve``: the page, the JSON API and its safety checks.

Routes (all JSON errors are ``{"error": "one line"}``, shown on the page as they are):

=============================  ==========================================================================
``GET /``                      the page (``static/index.html``)
``GET /api/models``            stored, catalogue (with download status) and uploaded models
``POST /api/weights``          upload a ``.safetensors``/``.pth`` model (checked by loading it safely)
``POST /api/jobs``             images + model + options: one queued job per image
``GET /api/jobs``              every job with its status and tile progress
``POST /api/jobs/{id}/cancel`` stop a queued or running job
``DELETE /api/jobs/{id}``      forget a job and delete its files
``GET /api/jobs/{id}/input``   the input for the slider (PNG when the browser cannot show the format)
``GET /api/jobs/{id}/output``  the result for the slider (likewise)
``GET /api/jobs/{id}/download`` the result file, as written (``photo_MODEL.png``)
``GET /api/download.zip``      every finished result (or ``?ids=a,b``) in one zip
=============================  ==========================================================================

Why it is safe to leave running: files are only ever named by the server (32 hex digits) under its own
folder and found through the job table, never through a path in a request; the request body is counted
as it arrives and cut off past the limit (before anything is parsed or written); images are checked
against the pixel limit from their header before they are queued; weights go through
:func:`restorekit.inference.model.load_any` (no pickle beyond ``weights_only=True``); POST and DELETE need
an ``X-Restorekit`` header, which a cross-site form cannot send and a cross-site script cannot send
without a CORS preflight the server never grants; and only local host names are answered (no DNS
rebinding) unless the server was bound to another address on purpose.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import threading
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from restorekit.serve.jobs import DONE, ERROR, Job, JobQueue, JobSettings, new_id

STATIC = Path(__file__).parent / "static"
MB = 1_000_000
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt")
#: Formats the page offers (and ``restore apply --format`` takes), and the suffix each is written with.
FORMATS = {"png": ("PNG", ".png"), "jpg": ("JPEG", ".jpg"), "webp": ("WEBP", ".webp"), "tiff": ("TIFF", ".tif")}
BROWSER_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "BMP", "GIF"})
CSRF_HEADER = "x-restorekit"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._+-]+")


@dataclass(frozen=True)
class ServeSettings:
    """What ``restore serve`` is started with.

    Attributes:
        workdir: The server's own folder (uploads, results); None: a fresh temporary folder, removed at exit.
        host: The address bound (decides which Host headers are answered).
        max_upload_mb: Largest image upload, in MB.
        max_weights_mb: Largest weight-file upload, in MB.
        max_files: Most images in one request.
        max_pixels: Largest image (width × height) accepted (decompression bombs).
        device: Device for inference (None: CUDA when available).
    """

    workdir: Path | None = None
    host: str = "127.0.0.1"
    max_upload_mb: float = 50.0
    max_weights_mb: float = 2000.0
    max_files: int = 100
    max_pixels: int = 25_000_000
    device: str | None = None


class ServeError(Exception):
    """A request the server refuses; ``status`` is the HTTP code, the message one line for the page."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _safe_name(name: str, default: str = "image") -> str:
    """A display/download name: the last path component of what the browser sent, made harmless."""
    base = re.split(r"[\\/]", name or "")[-1]
    return _SAFE_NAME.sub("-", base).strip("-.")[:120] or default


class _BodyLimit:
    """ASGI middleware: answer 413 once a request body grows past the route's limit (counted as it arrives).

    Starlette would otherwise spool the whole multipart body to disk before a handler could look at it.
    """

    def __init__(self, app: Any, limits: dict[str, int], default: int) -> None:
        self.app, self.limits, self.default = app, limits, default

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.get(scope["path"], self.default)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(send, limit)
            return
        seen = 0
        refused = False

        async def counted() -> dict:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    refused = True
                    raise _TooLarge
            return message

        started = False

        async def tracked_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracked_send)
        except _TooLarge:
            if not started:
                await _too_large(send, limit)
        except Exception:
            if not refused:
                raise
            if not started:
                await _too_large(send, limit)


class _TooLarge(Exception):
    pass


async def _too_large(send: Any, limit: int) -> None:
    body = JSONResponse(
        {
            "error": f"the upload is larger than the server's limit of {limit / MB:.0f} MB "
            "(restore serve --max-upload-mb / --max-weights-mb)"
        },
        status_code=413,
    )
    await send({"type": "http.response.start", "status": 413, "headers": body.raw_headers})
    await send({"type": "http.response.body", "body": body.body})


class _State:
    """The server's folders, its uploaded models and its job queue."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.own_folder = settings.workdir is None
        root = Path(tempfile.mkdtemp(prefix="restorekit-serve-")) if settings.workdir is None else settings.workdir
        self.root = root.resolve()
        self.uploads, self.results, self.weights_dir, self.previews = (
            self.root / name for name in ("uploads", "results", "weights", "previews")
        )
        for folder in (self.uploads, self.results, self.weights_dir, self.previews):
            folder.mkdir(parents=True, exist_ok=True)
        self.weights: dict[str, dict[str, Any]] = {}  # upload id -> {"path", "label", "detail"}
        self.lock = threading.Lock()
        self.queue = JobQueue(max_pixels=settings.max_pixels)

    def close(self) -> None:
        self.queue.stop()
        if self.own_folder:
            shutil.rmtree(self.root, ignore_errors=True)


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    """The application: the page, the API, one worker.

    Args:
        settings: Limits, folder and device; defaults are safe for a personal machine.

    Returns:
        A FastAPI app (its worker starts and stops with the app's lifespan).

    Example:
        >>> from fastapi.testclient import TestClient  # doctest: +SKIP
        >>> with TestClient(create_app()) as client:  # doctest: +SKIP
        ...     client.get("/api/models").status_code
        200
    """
    settings = settings or ServeSettings()
    state = _State(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.queue.start()
        try:
            yield
        finally:
            state.close()

    app = FastAPI(title="restorekit", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.restorekit = state
    hosts = ["*"] if settings.host in ("0.0.0.0", "::", "") else sorted({*LOCAL_HOSTS, settings.host})
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)
    images_limit = int(settings.max_upload_mb * MB) * settings.max_files + MB
    app.add_middleware(
        _BodyLimit,
        limits={"/api/weights": int(settings.max_weights_mb * MB) + MB, "/api/jobs": images_limit},
        default=MB,
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(ServeError)
    async def _serve_error(request: Request, exc: ServeError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Starlette's own refusals (too many files, a malformed form, an unknown route) read the same way.
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.middleware("http")
    async def _guard(request: Request, call_next: Any) -> Response:
        if request.method not in ("GET", "HEAD") and request.headers.get(CSRF_HEADER) != "1":
            return JSONResponse({"error": f"missing {CSRF_HEADER} header (requests from other sites are refused)"}, 403)
        response = await call_next(request)
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; frame-ancestors 'none'",
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/api/models")
    async def models() -> dict[str, Any]:
        listed = await run_in_threadpool(_list_models)
        with state.lock:
            uploaded = [
                {"id": f"upload:{key}", "label": w["label"], "detail": w["detail"]} for key, w in state.weights.items()
            ]
        return {"models": listed, "uploaded": uploaded, "limits": _limits(settings)}

    @app.post("/api/weights")
    async def upload_weights(request: Request) -> dict[str, Any]:
        async with request.form(max_files=1, max_fields=4) as form:  # closes the spooled upload after
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise ServeError("no weight file in the request")
            name = _safe_name(upload.filename or "", "weights")
            suffix = Path(name).suffix.lower()
            if suffix not in WEIGHT_SUFFIXES:
                raise ServeError(f"{name}: not a weight file (give {', '.join(WEIGHT_SUFFIXES)})")
            key = new_id()
            path = state.weights_dir / f"{key}{suffix}"
            await run_in_threadpool(_save_upload, upload, path, int(settings.max_weights_mb * MB), name)
        try:
            detail = await run_in_threadpool(_check_weights, state, path, name)
        except ServeError:
            path.unlink(missing_ok=True)
            raise
        label = _SAFE_NAME.sub("-", Path(name).stem).strip("-.") or "uploaded"
        with state.lock:
            state.weights[key] = {"path": path, "label": label, "detail": detail}
        return {"id": f"upload:{key}", "label": label, "detail": detail}

    @app.post("/api/jobs")
    async def submit(request: Request) -> dict[str, Any]:
        async with request.form(max_files=settings.max_files, max_fields=20) as form:
            files = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
            if not files:
                raise ServeError("no images in the request")
            job_settings = _job_settings(state, {k: v for k, v in form.items() if isinstance(v, str)})
            created = [await run_in_threadpool(_new_job, state, upload, job_settings) for upload in files]
        for job in created:
            state.queue.add(job)
        return {"jobs": [job.to_json() for job in created]}

    @app.get("/api/jobs")
    async def list_jobs() -> dict[str, Any]:
        return {"jobs": [job.to_json() for job in state.queue.jobs()]}

    @app.post("/api/jobs/{job_id}/cancel")
    async def cancel(job_id: str) -> dict[str, Any]:
        job = state.queue.cancel(job_id)
        if job is None:
            raise ServeError("no such job", 404)
        return job.to_json()

    @app.delete("/api/jobs/{job_id}")
    async def remove(job_id: str) -> dict[str, Any]:
        job = state.queue.remove(job_id)
        if job is None:
            raise ServeError("no such job", 404)
        return {"removed": job_id}

    @app.get("/api/jobs/{job_id}/input")
    async def job_input(job_id: str) -> FileResponse:
        job = _job(state, job_id)
        return await run_in_threadpool(_viewable, state, job, job.source, "input")

    @app.get("/api/jobs/{job_id}/output")
    async def job_output(job_id: str) -> FileResponse:
        job = _job(state, job_id, done=True)
        return await run_in_threadpool(_viewable, state, job, job.target, "output")

    @app.get("/api/jobs/{job_id}/download")
    async def download(job_id: str) -> FileResponse:
        job = _job(state, job_id, done=True)
        return FileResponse(job.target, filename=job.download_name, media_type="application/octet-stream")

    @app.get("/api/download.zip")
    async def download_all(ids: str = "") -> FileResponse:
        wanted = [i for i in ids.split(",") if i] if ids else None
        jobs = [j for j in state.queue.jobs() if j.status == DONE and (wanted is None or j.id in wanted)]
        if not jobs:
            raise ServeError("no finished results to download", 404)
        path = await run_in_threadpool(_zip, state, jobs)
        return FileResponse(
            path,
            filename="restored.zip",
            media_type="application/zip",
            background=BackgroundTask(path.unlink, missing_ok=True),
        )

    return app


# --- helpers (run in the thread pool: they touch files or the model store) ----------------------------


def _limits(settings: ServeSettings) -> dict[str, Any]:
    return {
        "max_upload_mb": settings.max_upload_mb,
        "max_weights_mb": settings.max_weights_mb,
        "max_files": settings.max_files,
        "max_pixels": settings.max_pixels,
    }


def _list_models() -> list[dict[str, Any]]:
    from restorekit.store import list_models

    status_of = {
        "run": "stored",
        "user": "stored",
        "plugin": "stored",
        "catalogue-downloaded": "downloaded",
        "catalogue-available": "available",
    }
    listed = []
    for entry in list_models():
        parts = [f"{entry.arch} ×{entry.scale}" if entry.arch and entry.scale else entry.arch]
        if entry.size:
            parts.append(f"{entry.size / MB:.1f} MB")
        if entry.licence:
            parts.append(entry.licence)
        status = status_of.get(entry.source, entry.source)
        listed.append(
            {
                "id": f"store:{entry.name}",
                "label": entry.name,
                "status": status,
                "group": "catalogue" if entry.source.startswith("catalogue") else "stored",
                "detail": " · ".join(p for p in parts if p),
                "description": entry.description,
            }
        )
    return listed


def _save_upload(upload: UploadFile, path: Path, limit: int, name: str) -> int:
    """Copy an upload into the server's folder, refusing it past *limit* bytes."""
    size = 0
    upload.file.seek(0)
    try:
        with open(path, "wb") as out:
            while block := upload.file.read(1 << 20):
                size += len(block)
                if size > limit:
                    raise ServeError(
                        f"{name}: larger than the upload limit of {limit / MB:.0f} MB "
                        "(restore serve --max-upload-mb / --max-weights-mb)",
                        413,
                    )
                out.write(block)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if size == 0:
        path.unlink(missing_ok=True)
        raise ServeError(f"{name}: empty file")
    return size


def _check_weights(state: _State, path: Path, name: str) -> str:
    """Load an uploaded weight file safely (as ``restore apply --model FILE`` would); a one-line description."""
    from restorekit.inference.model import load_any

    try:
        with state.queue.device_lock:  # never alongside a restoration
            network, info = load_any(path)
            del network
    except Exception as exc:  # WeightsError, ConvertError, a refused pickle: one line for the page
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ServeError(text.replace(str(path), name)) from None
    if info.kind != "generator":
        raise ServeError(f"{name}: holds a {info.kind} ('{info.name}'), not a generator that restores images")
    return f"{info.name} ×{info.scale} ({info.task})"


def _job_settings(state: _State, fields: dict[str, str]) -> JobSettings:
    from restorekit.inference.options import AUTO, PRECISIONS, InferenceOptions, InferenceOptionsError

    model = fields.get("model", "")
    if model.startswith("upload:"):
        with state.lock:
            uploaded = state.weights.get(model.removeprefix("upload:"))
        if uploaded is None:
            raise ServeError("the uploaded model is no longer on the server; upload it again")
        ref, label = str(uploaded["path"]), uploaded["label"]
    elif model.startswith("store:") and model.removeprefix("store:"):
        ref = label = model.removeprefix("store:")
        if any(c in ref for c in "/\\") or ref.startswith("."):
            raise ServeError(f"invalid model name {ref!r}")
    else:
        raise ServeError("choose a model")
    tile: Any = AUTO
    if fields.get("tile", "").strip():
        tile = _number(fields["tile"], "tile", int)
    precision = fields.get("precision", "auto") or "auto"
    if precision not in PRECISIONS:
        raise ServeError(f"precision must be one of {', '.join(PRECISIONS)}")
    outscale = None
    if fields.get("outscale", "").strip():
        outscale = _number(fields["outscale"], "output scale", float)
        if not 0 < outscale <= 16:
            raise ServeError("output scale must be above 0 and at most 16")
    fmt = fields.get("format", "") or None
    if fmt is not None and fmt not in FORMATS:
        raise ServeError(f"format must be one of {', '.join(FORMATS)}")
    quality = _number(fields["quality"], "quality", int) if fields.get("quality", "").strip() else 95
    if not 1 <= quality <= 100:
        raise ServeError("quality must be between 1 and 100")
    try:
        options = InferenceOptions(tile=tile, precision=precision, device=state.settings.device)
    except InferenceOptionsError as exc:
        raise ServeError(str(exc)) from None
    return JobSettings(
        model=ref,
        model_label=label,
        options=options,
        outscale=outscale,
        format=FORMATS[fmt][0] if fmt else None,
        quality=quality,
    )


def _number(text: str, what: str, kind: type) -> Any:
    try:
        return kind(text.strip())
    except ValueError:
        raise ServeError(f"{what} must be a number, got {text!r}") from None


def _new_job(state: _State, upload: UploadFile, settings: JobSettings) -> Job:
    """Save one uploaded image and check its header; a refused image is a job in error (shown on the page)."""
    from restorekit.data.images import FORMAT_BY_SUFFIX, IMAGE_EXTENSIONS

    name = _safe_name(upload.filename or "")
    key = new_id()
    suffix = Path(name).suffix.lower()
    stored_suffix = suffix if suffix in IMAGE_EXTENSIONS else ".img"
    source = state.uploads / f"{key}{stored_suffix}"
    # The output's format: the one asked for, else the input's (as restore apply: PNG when unwritable).
    if settings.format is not None:
        ext = next(e for f, e in FORMATS.values() if f == settings.format)
        ext = suffix if FORMAT_BY_SUFFIX.get(suffix) == settings.format else ext
    else:
        ext = suffix if suffix in FORMAT_BY_SUFFIX else ".png"
    target = state.results / f"{key}{ext}"
    job = Job(
        id=key,
        name=name,
        source=source,
        target=target,
        download_name=f"{Path(name).stem}_{settings.model_label}{ext}",
        settings=settings,
    )
    try:
        _save_upload(upload, source, int(state.settings.max_upload_mb * MB), name)
        job.input_size = _check_image(source, name, state.settings.max_pixels)
    except ServeError as exc:
        job.status, job.message = ERROR, str(exc)
    return job


def _check_image(path: Path, name: str, max_pixels: int) -> tuple[int, int] | None:
    """Refuse decompression bombs from the header alone, before the job waits in the queue."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
    except Image.DecompressionBombError:
        raise ServeError(f"{name}: refused as a decompression bomb (over {max_pixels} pixels)") from None
    except UnidentifiedImageError:
        return None  # some TIFFs only tifffile reads: the worker's reader decides, and says why if not
    except OSError as exc:
        raise ServeError(f"{name}: cannot read the image ({exc})") from None
    if width * height > max_pixels:
        raise ServeError(
            f"{name}: {width}×{height} = {width * height} pixels is over the limit of {max_pixels} "
            "(a decompression-bomb guard; restore serve --max-pixels raises it)"
        )
    return width, height


def _job(state: _State, job_id: str, *, done: bool = False) -> Job:
    job = state.queue.get(job_id)  # ids come only from the job table: a path in the URL finds nothing
    if job is None:
        raise ServeError("no such job", 404)
    if done and job.status != DONE:
        raise ServeError(f"{job.name}: no result ({job.status})", 409)
    if not done and job.status == ERROR and not job.source.exists():
        raise ServeError(f"{job.name}: {job.message}", 409)
    return job


def _viewable(state: _State, job: Job, path: Path, which: str) -> FileResponse:
    """*path* if a browser can show it, else an 8-bit PNG made from it once."""
    from PIL import Image

    from restorekit.data.images import ImageReadError, read_picture, save_rgb

    try:
        with Image.open(path) as im:
            fmt = im.format
            sixteen = im.mode.startswith("I;16") or im.mode in ("I", "F")
    except (OSError, Image.DecompressionBombError):
        fmt, sixteen = None, False
    if fmt in BROWSER_FORMATS and not sixteen:
        return FileResponse(path, media_type=Image.MIME.get(fmt, "application/octet-stream"))
    preview = state.previews / f"{job.id}-{which}.png"
    if not preview.exists():
        try:
            picture = read_picture(path, max_pixels=state.settings.max_pixels * 256)  # outputs are larger
        except ImageReadError as exc:
            raise ServeError(str(exc).replace(str(path), job.name), 409) from None
        save_rgb(picture.rgb if picture.rgb.shape[0] == 3 else picture.rgb.expand(3, -1, -1), preview)
    return FileResponse(preview, media_type="image/png")


def _zip(state: _State, jobs: list[Job]) -> Path:
    path = state.previews / f"{new_id()}.zip"
    used: set[str] = set()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:  # images are compressed already
        for job in jobs:
            name, n = job.download_name, 1
            while name in used:
                n += 1
                name = f"{Path(job.download_name).stem}-{n}{Path(job.download_name).suffix}"
            used.add(name)
            archive.write(job.target, name)
    return path
