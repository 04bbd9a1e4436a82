"""``restore apply``: restore photographs with a trained model, keeping what the files carry.

Inputs are files, folders (searched recursively for images) and glob patterns. Each output keeps the
input's format, bit depth, grayscale, alpha channel, ICC profile and EXIF (through
:func:`~restorekit.data.images.read_picture` / :func:`~restorekit.data.images.write_picture`, which also
writes atomically). A bad file is reported on one line and the others are still restored.
"""

from __future__ import annotations

import glob
import os
import re
import warnings
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from restorekit.cli.common import EXIT_USAGE, console, err_console, fail, handle_errors
from restorekit.cli.options import ARCH_OPTION, MAX_PIXELS_OPTION, inference_options
from restorekit.cli.video import video_inputs

if TYPE_CHECKING:
    from restorekit.inference.model import RestorationModel
    from restorekit.inference.options import InferenceOptions

#: ``--format`` values and the format each names.
FORMAT_CHOICES: dict[str, str] = {
    "png": "PNG",
    "jpg": "JPEG",
    "jpeg": "JPEG",
    "webp": "WEBP",
    "tiff": "TIFF",
    "tif": "TIFF",
}
_SUFFIX_OF_FORMAT = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp"}
_GLOB_CHARS = re.compile(r"[*?\[]")


def register(app: typer.Typer) -> None:
    """Add ``restore apply`` to *app*."""
    app.command("apply")(apply)


@dataclass(frozen=True)
class Job:
    """One image to restore and where its result goes."""

    source: Path
    target: Path


# --- shared with ``restore eval`` ------------------------------------------------------------------


def model_hints(*, scale: int | None, arch: str | None) -> dict[str, Any]:
    """The ``--scale`` / ``--arch`` hints given, for converters of foreign checkpoints (only those given)."""
    return {key: value for key, value in (("scale", scale), ("arch", arch)) if value is not None}


def load_cli_model(ref: str, options: InferenceOptions, hints: dict[str, Any] | None = None) -> RestorationModel:
    """Load ``--model`` (store name, ``.safetensors`` or convertible ``.pth``) with the CLI's options.

    A missing model ends in the store's one-line message (how to train or add it) through
    :func:`~restorekit.cli.common.handle_errors`; a discriminator file is refused. Options this network
    cannot run with (``--tile`` for a network that must see the whole image, ``--precision fp16`` it does
    not support) are a usage error (exit 2). How the network will be run, when the user may not expect
    it, is said once on stderr.
    """
    from rich.markup import escape

    from restorekit.inference.model import RestorationModel
    from restorekit.inference.options import CLI_NAMES, InferenceOptionsError, render

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = RestorationModel.load(ref, options=options, hints=hints)
        except InferenceOptionsError as exc:
            fail(f"{ref}: {exc.render(CLI_NAMES)}", EXIT_USAGE)
    if model.info.kind != "generator":
        fail(
            f"{ref}: holds a {model.info.kind} ('{model.name}'), not a generator; restoring needs the "
            "generator's weights"
        )
    plain_warning = render(model.plan.warning)
    for warning in caught:  # the plan's warning is shown below, with the flags spelled as typed
        if str(warning.message) != plain_warning:
            err_console.print(f"[yellow]warning:[/] {escape(str(warning.message))}", soft_wrap=True)
    if model.plan.note:
        err_console.print(f"note: {escape(render(model.plan.note, CLI_NAMES))}", soft_wrap=True)
    if model.plan.warning:
        err_console.print(f"[yellow]warning:[/] {escape(render(model.plan.warning, CLI_NAMES))}", soft_wrap=True)
    return model


def model_label(ref: str) -> str:
    """A short, file-name-safe name for ``--model``: the store name, or the weight file's stem."""
    path = Path(ref).expanduser()
    text = path.stem if path.is_file() else ref
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-.") or "restored"


# --- finding the inputs ---------------------------------------------------------------------------


def _images_in(folder: Path) -> list[Path]:
    from restorekit.data.folders import DataError, list_images

    try:
        return list_images(folder)
    except DataError as exc:
        fail(str(exc), EXIT_USAGE)


@dataclass(frozen=True)
class Found:
    """An input image: where it is, the folder it was found in (None if not in a folder), named by the user."""

    source: Path
    base: Path | None
    named: bool


def expand_inputs(inputs: list[str]) -> list[Found]:
    """Every image to restore, in the order given (each file once).

    Folders are searched recursively for image files (other files are ignored); patterns the shell did not
    expand (quoted, or on Windows) are expanded here, ``**`` included. A path that does not exist, a
    pattern that matches nothing and a folder without images are usage errors (exit 2).
    """
    found: list[Found] = []
    for text in inputs:
        path = Path(text).expanduser()
        if path.is_dir():
            found += [Found(p, path, False) for p in _images_in(path)]
        elif path.exists():
            # Named explicitly: tried whatever its extension, so a non-image gets a clear error.
            found.append(Found(path, None, True))
        elif _GLOB_CHARS.search(text):
            files: list[Found] = []
            for match in sorted(Path(m) for m in glob.glob(os.path.expanduser(text), recursive=True)):
                if match.is_dir():
                    files += [Found(p, match, False) for p in _images_in(match)]
                elif _is_image_name(match):
                    files.append(Found(match, None, False))
            if not files:
                fail(f"{text}: no images match this pattern", EXIT_USAGE)
            found += files
        else:
            fail(f"{text}: no such file or folder", EXIT_USAGE)
    # The same file reached twice (a folder and a pattern inside it) is restored once.
    unique: dict[Path, Found] = {}
    for item in found:
        unique.setdefault(item.source.resolve(), item)
    return list(unique.values())


def _is_image_name(path: Path) -> bool:
    from restorekit.data.images import IMAGE_EXTENSIONS

    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def output_path(source: Path, base: Path | None, *, out_dir: Path | None, suffix: str, fmt: str | None) -> Path:
    """Where the restored *source* is written.

    Next to the input as ``STEM<suffix><ext>`` without ``-o``; with ``-o OUT``, under OUT (mirroring the
    folder structure below *base* for images found in a folder). The extension is the input's, unless
    ``--format`` asks for another format, or the input's extension names no writable format (then PNG).
    """
    from restorekit.data.images import FORMAT_BY_SUFFIX

    own = FORMAT_BY_SUFFIX.get(source.suffix.lower())
    if fmt is None:
        ext = source.suffix if own is not None else ".png"
    else:
        ext = source.suffix if own == fmt else _SUFFIX_OF_FORMAT[fmt]
    name = f"{source.stem}{suffix}{ext}"
    if out_dir is None:
        return source.with_name(name)
    relative = source.parent.relative_to(base) if base is not None else Path()
    return out_dir / relative / name


def _prepare_output_folder(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        fail(f"{out_dir}: exists and is not a folder; -o takes an output folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"{out_dir}: cannot create the output folder ({exc.strerror or exc})")
    if not os.access(out_dir, os.W_OK | os.X_OK):
        fail(f"{out_dir}: the output folder is not writable")


# --- the command ----------------------------------------------------------------------------------


@handle_errors
@inference_options
@video_inputs  # video files (clip.mp4) are restored by restorekit.cli.video
def apply(
    inputs: list[str] = typer.Argument(
        ..., metavar="INPUT", help="Image files, folders (searched recursively) or glob patterns.", show_default=False
    ),
    model_ref: str = typer.Option(
        ...,
        "--model",
        "-m",
        help="Model-store name, restorekit .safetensors, or a convertible .pth.",
        show_default=False,
    ),
    out_dir: Optional[Path] = typer.Option(  # noqa: UP007 - typer needs Optional on 3.11
        None,
        "--output",
        "-o",
        help="Output folder (created; folder inputs keep their sub-folders). Default: next to each input.",
        show_default=False,
    ),
    suffix: Optional[str] = typer.Option(  # noqa: UP007
        None,
        "--suffix",
        help="Added to output file names. Default: '_MODEL' (the model's name) next to the inputs, "
        "nothing with -o.",
        show_default=False,
    ),
    fmt: Optional[str] = typer.Option(  # noqa: UP007
        None, "--format", "-f", help="Output format png|jpg|webp|tiff. Default: the input's.", show_default=False
    ),
    quality: int = typer.Option(95, "--quality", min=1, max=100, help="JPEG/WebP quality."),
    outscale: Optional[float] = typer.Option(  # noqa: UP007
        None,
        "--outscale",
        help="Final size relative to the input (e.g. 3.5 with a x4 model; MATLAB bicubic resize).",
        show_default=False,
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs (kept otherwise)."),
    max_pixels: Optional[int] = MAX_PIXELS_OPTION,  # noqa: UP007
    scale: Optional[int] = typer.Option(  # noqa: UP007
        None,
        "--scale",
        min=1,
        help="Scale of a foreign checkpoint (.pth), for converters that cannot tell from its tensors (PAN x2/x3).",
        show_default=False,
    ),
    arch: Optional[str] = ARCH_OPTION,  # noqa: UP007
    *,
    options: InferenceOptions,
) -> None:
    """Restore images with a trained model: super-resolve or deblur photos of any size.

    Outputs keep the input's format, 16-bit depth, grayscale, transparency, ICC profile and EXIF.

    Without -o, outputs go next to the inputs as NAME_MODEL.EXT (photo.jpg → photo_srgan.jpg).

    Images found in folders whose names already end in that suffix are earlier outputs: skipped.

    Existing outputs are kept unless --overwrite; a bad file is reported and the others still restored.

    Exit code: 0 all written or kept, 1 some images failed, 2 usage error.

    MODEL is a store name ('restore models' lists them; a catalogue model is downloaded on first use), a weight file, or a community checkpoint.

    Examples:

      restore apply --model realesrgan-x4plus photo.jpg

      restore apply --model quickstart photo.jpg --outscale 2

      restore apply --model runs/esrgan/esrgan.safetensors photos/ -o restored/ --tile 256

      restore apply --model deblurgan 'shots/*.png' --format webp --quality 90

      restore apply --model PAN_x3.pth --scale 3 photo.png
    """
    fmt_name = None
    if fmt is not None:
        fmt_name = FORMAT_CHOICES.get(fmt.lower().lstrip("."))
        if fmt_name is None:
            fail(f"--format must be one of png, jpg, webp, tiff; got {fmt!r}", EXIT_USAGE)
    if outscale is not None and not outscale > 0:
        fail(f"--outscale must be positive, got {outscale}", EXIT_USAGE)
    label = model_label(model_ref)
    if suffix is None:
        suffix = "" if out_dir is not None else f"_{label}"
    if os.sep in suffix or (os.altsep and os.altsep in suffix):
        fail(f"--suffix {suffix!r} must not contain a path separator", EXIT_USAGE)
    found = expand_inputs(inputs)
    if suffix:
        # Outputs of an earlier run may sit among the inputs; restoring them again would stack suffixes.
        found = [f for f in found if f.named or not f.source.stem.endswith(suffix)]
        if not found:
            fail(f"every image found already ends in '{suffix}' (earlier outputs); nothing to restore", EXIT_USAGE)
    if out_dir is not None:
        out_dir = out_dir.expanduser()
        # An output folder inside an input folder holds results of earlier runs, not inputs.
        target = out_dir.resolve()
        found = [
            f for f in found
            if f.base is None or f.base.resolve() == target or not f.source.resolve().is_relative_to(target)
        ]  # fmt: skip
        if not found:
            fail(f"every image found is inside the output folder {out_dir}; nothing to restore", EXIT_USAGE)
        _prepare_output_folder(out_dir)
    jobs = [Job(f.source, output_path(f.source, f.base, out_dir=out_dir, suffix=suffix, fmt=fmt_name)) for f in found]

    model = load_cli_model(model_ref, options, model_hints(scale=scale, arch=arch))
    _run_jobs(
        model, jobs, outscale=outscale, fmt=fmt_name, quality=quality, overwrite=overwrite, max_pixels=max_pixels
    )


def _run_jobs(
    model: RestorationModel,
    jobs: list[Job],
    *,
    outscale: float | None,
    fmt: str | None,
    quality: int,
    overwrite: bool,
    max_pixels: int | None,
    pipeline: bool = True,
) -> None:
    """Restore every job, decoding the next image and encoding the previous one while the network runs.

    Three stages overlap: a reader thread decodes the next image, the network runs here (it has the CPU
    cores or the GPU), a writer thread encodes and writes the previous result (PIL, zlib and libjpeg
    release the GIL). Results are reported in the order of the jobs. At most one image is decoded ahead
    and at most :data:`PENDING_WRITE_BYTES` of results wait to be written, so memory stays bounded.
    ``pipeline=False`` runs the same stages one after the other (``benchmarks/apply_throughput.py
    --folder`` compares the two).
    """
    import contextlib
    import time
    from concurrent.futures import ThreadPoolExecutor

    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from restorekit.data.images import read_picture

    written = skipped = failed = 0
    pixels = 0  # output pixels written
    claimed: dict[Path, Path] = {}
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,  # a log file gets the per-image lines, not bar redraws
    )
    # Decided in job order before anything runs, as they always were: what is skipped, what collides.
    decisions: list[tuple[Job, str]] = []
    for job in jobs:
        try:
            decisions.append((job, _check_job(job, claimed, overwrite=overwrite)))
        except _JobError as exc:
            decisions.append((job, f"error:{exc}"))
    to_restore = [job for job, decision in decisions if decision == "restore"]
    order: deque[tuple[Job, str, Future[int] | None]] = deque()
    shown = 0  # warnings printed so far

    def report(*, wait: bool) -> None:
        """Print the finished jobs at the head of the queue (all of them when *wait*), in job order."""
        nonlocal written, skipped, failed, pixels, shown
        while order:
            job, decision, future = order[0]
            if future is not None and not (wait or future.done()):
                break
            order.popleft()
            for warning in caught[shown:]:
                err_console.print(f"[yellow]warning:[/] {escape(str(warning.message))}", soft_wrap=True)
            shown = len(caught)
            if future is not None:
                try:
                    pixels += future.result()
                    decision = "written"
                except _JobError as exc:
                    decision = f"error:{exc}"
            if decision == "written":
                written += 1
                console.print(f"{escape(str(job.source))} → {escape(str(job.target))}", soft_wrap=True)
            elif decision == "skipped":
                skipped += 1
                err_console.print(
                    f"[yellow]{escape(str(job.target))}: exists, skipped (use --overwrite)[/]", soft_wrap=True
                )
            else:
                failed += 1
                err_console.print(f"[bold red]error:[/] {escape(decision.removeprefix('error:'))}", soft_wrap=True)
            progress.advance(images_bar)

    def read(job: Job) -> Any:
        return read_picture(job.source, max_pixels=max_pixels)

    started = time.perf_counter()
    # One warnings record for every thread: catch_warnings swaps process-wide state, so one per image
    # would catch the reader's and writer's warnings under the wrong image. Each message names its file.
    with contextlib.ExitStack() as stack:
        caught = stack.enter_context(warnings.catch_warnings(record=True))
        stack.enter_context(progress)
        reader, writer = (
            stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix=name, initializer=_background_priority))
            for name in ("restore-read", "restore-write")
        )
        warnings.simplefilter("always")
        images_bar = progress.add_task("images", total=len(jobs))
        tiles_bar = progress.add_task("tiles", total=None)

        def on_tiles(done: int, total: int) -> None:
            progress.update(tiles_bar, completed=done, total=total)

        reads = iter(to_restore)
        ahead: tuple[Job, Future[Any]] | None = None
        first = next(reads, None)
        if first is not None:
            ahead = (first, reader.submit(read, first))
        pending_bytes: list[tuple[Future[int], int]] = []
        for job, decision in decisions:
            if decision != "restore":
                order.append((job, decision, None))
                report(wait=False)
                continue
            assert ahead is not None and ahead[0] is job
            reading = ahead[1]
            following = next(reads, None)
            if pipeline:
                ahead = None if following is None else (following, reader.submit(read, following))
            progress.update(images_bar, description=escape(job.source.name))
            progress.reset(tiles_bar, total=None)
            try:
                picture = _decoded(job, reading)
                # Bounded memory: results still waiting for the writer and this one's together stay under
                # the limit, or this image waits for them (a large photograph is never doubled).
                size = _restored_bytes(picture, model.scale, outscale)
                pending_bytes = [(f, b) for f, b in pending_bytes if not f.done()]
                while pending_bytes and sum(b for _, b in pending_bytes) + size > PENDING_WRITE_BYTES:
                    pending_bytes.pop(0)[0].exception()
                restored = _restored(model, job, picture, outscale=outscale, progress=on_tiles)
            except _JobError as exc:
                order.append((job, f"error:{exc}", None))
                if not pipeline:
                    ahead = None if following is None else (following, reader.submit(read, following))
                report(wait=False)
                continue
            del picture
            future = writer.submit(_write_one, restored, job, fmt=fmt, quality=quality)
            pending_bytes.append((future, size))
            del restored
            order.append((job, "restore", future))
            if not pipeline:
                future.exception()  # wait for the write, then read the next image
                ahead = None if following is None else (following, reader.submit(read, following))
            report(wait=False)
        report(wait=True)
    elapsed = time.perf_counter() - started

    summary = f"{written} image{'s' if written != 1 else ''} written"
    if skipped:
        summary += f", {skipped} skipped (already there)"
    if written and elapsed > 0:
        summary += (
            f" in {elapsed:.1f} s: {written / elapsed:.3g} images/s, {pixels / 1e6 / elapsed:.3g} megapixels/s "
            "(output)"
        )
    err_console.print(summary, soft_wrap=True)
    if failed:
        fail(f"{failed} of {len(jobs)} image{'s' if len(jobs) != 1 else ''} failed")


#: Restored images (float32 bytes) allowed to wait for the writer thread before the next image waits.
PENDING_WRITE_BYTES = 1 << 30


class _JobError(Exception):
    """One image could not be restored; the message names the file."""


def _background_priority() -> None:
    """Run this (reader or writer) thread at the lowest CPU priority, where the OS allows it.

    The network's threads take every core; a decoder competing with them at equal priority would stall
    their parallel regions (each waits for its slowest thread). At nice 19 decoding and encoding fill the
    gaps the network leaves, and when there are none the pipeline is no slower than one image at a time.
    """
    import threading

    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)  # Linux: per thread
    except (AttributeError, OSError):
        pass


def _check_job(job: Job, claimed: dict[Path, Path], *, overwrite: bool) -> str:
    """``"restore"`` or ``"skipped"`` for *job*; raises :class:`_JobError` for an impossible output."""
    source, target = job.source, job.target
    key = target.resolve()
    if key == source.resolve():
        raise _JobError(f"{source}: the output would replace the input; give -o OUT or a --suffix")
    if key in claimed:
        raise _JobError(f"{source}: its output {target} is also the output of {claimed[key]}; rename one of them")
    claimed[key] = source
    if target.is_dir():
        raise _JobError(f"{target}: is a folder, cannot write the output of {source} there")
    if target.exists() and not overwrite:
        return "skipped"
    return "restore"


def _restored_bytes(picture: Any, scale: int, outscale: float | None) -> int:
    """Float32 bytes of *picture* restored (colour and alpha) at the model's scale or ``--outscale``."""
    width, height = picture.size
    factor = max(scale, outscale or 0)
    planes = picture.rgb.shape[0] + (0 if picture.alpha is None else 1)
    return int(width * height * factor * factor * planes * 4)


def _decoded(job: Job, reading: Future[Any]) -> Any:
    """The picture the reader thread decoded; raises :class:`_JobError` naming the file."""
    from restorekit.data.images import ImageReadError

    try:
        return reading.result()
    except ImageReadError as exc:
        raise _JobError(str(exc)) from None
    except MemoryError:
        raise _JobError(f"{job.source}: not enough memory to decode it") from None
    except (OSError, ValueError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _JobError(f"{job.source}: {reason}") from None


def _restored(
    model: RestorationModel,
    job: Job,
    picture: Any,
    *,
    outscale: float | None,
    progress: Callable[[int, int], None],
) -> Any:
    """*picture* restored by the network (here, in the main thread); raises :class:`_JobError`."""
    import torch

    source = job.source
    try:
        return model.restore_picture(picture, outscale=outscale, progress=progress)
    except (torch.OutOfMemoryError, MemoryError) as exc:
        where = "device memory" if isinstance(exc, torch.OutOfMemoryError) else "memory"
        if not model.descriptor.tileable:  # runs whole: a smaller tile is no way out
            advice = "this model runs on whole images only; use a smaller image or a device with more memory"
        else:
            advice = "use a smaller --tile or --batch"
        raise _JobError(f"{source}: not enough {where}; {advice}") from None
    except (OSError, ValueError, RuntimeError) as exc:
        # E.g. a network that cannot take this image (channels); the first line of torch's message says why.
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _JobError(f"{source}: {reason}") from None


def _write_one(restored: Any, job: Job, *, fmt: str | None, quality: int) -> int:
    """Write one result (in the writer thread); returns its pixel count, raises :class:`_JobError`."""
    from restorekit.data.images import ImageWriteError, write_picture

    target = job.target
    try:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ImageWriteError(target, f"cannot create its folder ({exc.strerror or exc})") from None
        write_picture(restored, target, format=fmt, quality=quality)
    except ImageWriteError as exc:
        raise _JobError(str(exc)) from None
    except (OSError, ValueError, MemoryError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _JobError(f"{job.source}: cannot write {target} ({reason})") from None
    width, height = restored.size
    return width * height
