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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from restorekit.cli.common import EXIT_USAGE, console, err_console, fail, handle_errors
from restorekit.cli.options import ARCH_OPTION, MAX_PIXELS_OPTION, inference_options

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

    Examples:

      restore apply --model srgan photo.jpg

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
) -> None:
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    written = skipped = failed = 0
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
    with progress:
        images_bar = progress.add_task("images", total=len(jobs))
        tiles_bar = progress.add_task("tiles", total=None)

        def on_tiles(done: int, total: int) -> None:
            progress.update(tiles_bar, completed=done, total=total)

        for job in jobs:
            progress.update(images_bar, description=escape(job.source.name))
            progress.reset(tiles_bar, total=None)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    status = _restore_one(
                        model, job, claimed, outscale=outscale, fmt=fmt, quality=quality, overwrite=overwrite,
                        max_pixels=max_pixels, progress=on_tiles,
                    )  # fmt: skip
                except _JobError as exc:
                    status = "failed"
                    err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
            for warning in caught:
                err_console.print(f"[yellow]warning:[/] {escape(str(warning.message))}", soft_wrap=True)
            if status == "written":
                written += 1
                console.print(f"{escape(str(job.source))} → {escape(str(job.target))}", soft_wrap=True)
            elif status == "skipped":
                skipped += 1
                err_console.print(
                    f"[yellow]{escape(str(job.target))}: exists, skipped (use --overwrite)[/]", soft_wrap=True
                )
            else:
                failed += 1
            progress.advance(images_bar)

    summary = f"{written} image{'s' if written != 1 else ''} written"
    err_console.print(summary + (f", {skipped} skipped (already there)" if skipped else ""), soft_wrap=True)
    if failed:
        fail(f"{failed} of {len(jobs)} image{'s' if len(jobs) != 1 else ''} failed")


class _JobError(Exception):
    """One image could not be restored; the message names the file."""


def _restore_one(
    model: RestorationModel,
    job: Job,
    claimed: dict[Path, Path],
    *,
    outscale: float | None,
    fmt: str | None,
    quality: int,
    overwrite: bool,
    max_pixels: int | None,
    progress: Callable[[int, int], None],
) -> str:
    """Restore one image; returns ``"written"`` or ``"skipped"``, raises :class:`_JobError`."""
    import torch

    from restorekit.data.images import ImageReadError, ImageWriteError, read_picture, write_picture

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
    try:
        picture = read_picture(source, max_pixels=max_pixels)
        restored = model.restore_picture(picture, outscale=outscale, progress=progress)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ImageWriteError(target, f"cannot create its folder ({exc.strerror or exc})") from None
        write_picture(restored, target, format=fmt, quality=quality)
    except (ImageReadError, ImageWriteError) as exc:
        raise _JobError(str(exc)) from None
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
    return "written"
