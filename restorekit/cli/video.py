"""Video inputs of ``restore apply``: the flags they add and the dispatch to :mod:`restorekit.video`.

``restore apply --model M clip.mp4 -o out.mp4`` restores a clip frame by frame. :func:`video_inputs`
decorates the ``apply`` command: it adds the video flags (``--codec``, ``--crf``, ``--pix-fmt``,
``--resume``, ``--segment-frames``, ``--frame-batch``) to its signature, and when the inputs are video
files it restores them here, with the command's own ``--model``, ``-o``, ``--suffix``, ``--outscale``,
``--overwrite``, ``--max-pixels``, ``--scale``/``--arch`` and inference options; image inputs go to the
command unchanged. So the image path of ``apply`` knows nothing about video, and the flags are declared
once, here.

Example:
    >>> @inference_options
    ... @video_inputs
    ... def apply(inputs: list[str], ..., *, options: InferenceOptions) -> None: ...
"""

from __future__ import annotations

import functools
import glob
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer

from restorekit.cli.common import EXIT_USAGE, console, err_console, fail

_DEFAULTS: dict[str, Any] = {}


def _option(name: str, default: Any, annotation: Any, flag: str, **info: Any) -> inspect.Parameter:
    _DEFAULTS[name] = default
    option = typer.Option(default, flag, **info)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)


def _parameters() -> tuple[inspect.Parameter, ...]:
    # The defaults come from restorekit.video without importing PyAV (an optional extra) at start-up.
    from restorekit import video

    return (
        _option(
            "codec",
            video.DEFAULT_CODEC,
            str,
            "--codec",
            help="Video inputs: FFmpeg encoder (libx264, libx265, libvpx-vp9, ffv1, libx264rgb, ...).",
        ),
        _option(
            "crf",
            None,
            Optional[int],  # noqa: UP007 - typer needs Optional on 3.11
            "--crf",
            min=0,
            help=f"Video inputs: constant quality, lower is better. Default: {video.DEFAULT_CRF} for "
            "x264/x265/VP9/AV1.",
            show_default=False,
        ),
        _option(
            "pix_fmt",
            None,
            Optional[str],  # noqa: UP007
            "--pix-fmt",
            help="Video inputs: output pixel format (yuv420p, yuv444p, bgr0, ...). Default: the source's.",
            show_default=False,
        ),
        _option(
            "resume",
            False,
            bool,
            "--resume",
            help="Video inputs: continue an interrupted run where it stopped (same model and options).",
        ),
        _option(
            "segment_frames",
            video.DEFAULT_SEGMENT_FRAMES,
            int,
            "--segment-frames",
            min=1,
            help="Video inputs: frames per resumable segment (each starts on a keyframe).",
        ),
        _option(
            "frame_batch",
            video.DEFAULT_BATCH_FRAMES,
            int,
            "--frame-batch",
            min=1,
            help="Video inputs: frames decoded ahead and encoded behind the model (bounds memory).",
        ),
    )


_PARAMETERS = _parameters()
_NAMES = tuple(p.name for p in _PARAMETERS)
_FLAGS = {p.name: p.default.param_decls[0] for p in _PARAMETERS}


def video_inputs(command: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate ``restore apply``: add the video flags, restore video inputs here, pass images on.

    The command must take ``inputs`` (list of strings) and the keyword ``options``; put this decorator
    under :func:`~restorekit.cli.options.inference_options` so that ``options`` arrives validated.
    """
    signature = inspect.signature(command)
    own = list(signature.parameters.values())
    keyword_only = [p for p in own if p.kind is inspect.Parameter.KEYWORD_ONLY]
    positional = [p for p in own if p.kind is not inspect.Parameter.KEYWORD_ONLY]

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        flags = {name: kwargs.pop(name, _DEFAULTS[name]) for name in _NAMES}
        inputs = list(kwargs.get("inputs") or [])
        videos = [text for text in inputs if _names_video(text)]
        if not videos:
            given = [_FLAGS[name] for name in _NAMES if flags[name] != _DEFAULTS[name]]
            if given:
                fail(f"{given[0]} applies to video inputs only", EXIT_USAGE)
            return command(*args, **kwargs)
        if len(videos) != len(inputs):
            images = next(text for text in inputs if text not in videos)
            fail(f"{images}: restore videos and images in separate runs ({videos[0]} is a video)", EXIT_USAGE)
        return restore_videos(**kwargs, **flags)

    wrapper.__signature__ = signature.replace(parameters=[*positional, *_PARAMETERS, *keyword_only])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**command.__annotations__, **{p.name: p.annotation for p in _PARAMETERS}}
    return wrapper


def _names_video(text: str) -> bool:
    from restorekit.video import is_video

    return is_video(text) and not Path(text).expanduser().is_dir()


def _expand(inputs: list[str]) -> list[Path]:
    found: list[Path] = []
    for text in inputs:
        path = Path(text).expanduser()
        if path.exists():
            found.append(path)
            continue
        matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(text), recursive=True))
        matches = [m for m in matches if m.is_file()]
        if not matches:
            fail(
                f"{text}: no such file" if not any(c in text for c in "*?[") else f"{text}: no videos match", EXIT_USAGE
            )
        found += matches
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def _targets(sources: list[Path], out: Path | None, suffix: str) -> list[Path]:
    from restorekit.video import CONTAINERS

    def name(source: Path) -> str:
        ext = source.suffix if source.suffix.lower() in CONTAINERS else ".mkv"  # Matroska holds any codec
        return f"{source.stem}{suffix}{ext}"

    if out is None:
        return [source.with_name(name(source)) for source in sources]
    if out.suffix and not out.is_dir():  # a file name (its container is checked by the caller)
        if len(sources) != 1:
            fail(f"-o {out} names one output file, but {len(sources)} videos were given; give a folder", EXIT_USAGE)
        return [out]
    if out.exists() and not out.is_dir():
        fail(f"{out}: exists and is not a folder or a video file name", EXIT_USAGE)
    return [out / name(source) for source in sources]


def restore_videos(
    *,
    inputs: list[str],
    model_ref: str,
    out_dir: Path | None,
    suffix: str | None,
    fmt: str | None,
    outscale: float | None,
    overwrite: bool,
    max_pixels: int | None,
    scale: int | None,
    arch: str | None,
    options: Any,
    codec: str,
    crf: int | None,
    pix_fmt: str | None,
    resume: bool,
    segment_frames: int,
    frame_batch: int,
    **_image_only: Any,
) -> None:
    """Restore video files (the video half of ``restore apply``); exit 1 if any failed.

    Raises:
        typer.Exit: Usage errors (2), failed clips (1), Ctrl-C (130, with the way to resume).
    """
    try:
        from restorekit import video
    except ImportError:  # pragma: no cover - the extra is part of dev
        fail('video needs PyAV: pip install "restorekit[video]"')
    from rich.markup import escape

    from restorekit.cli.apply import load_cli_model, model_hints, model_label

    if fmt is not None:
        fail("--format applies to images; a video's container follows its output name (-o clip.mkv)", EXIT_USAGE)
    try:
        video_options = video.VideoOptions(
            codec=codec,
            crf=crf,
            pix_fmt=pix_fmt,
            outscale=outscale,
            batch_frames=frame_batch,
            segment_frames=segment_frames,
            max_pixels=max_pixels,
        )
    except video.VideoError as exc:
        fail(str(exc), EXIT_USAGE)
    sources = _expand(inputs)
    if suffix is None:
        suffix = "" if out_dir is not None else f"_{model_label(model_ref)}"
    out = out_dir.expanduser() if out_dir is not None else None
    targets = _targets(sources, out, suffix)
    for target in targets:
        try:
            video.container_of(target)
        except video.VideoError as exc:
            fail(str(exc), EXIT_USAGE)
    model = load_cli_model(model_ref, options, model_hints(scale=scale, arch=arch))

    failed = 0
    for source, target in zip(sources, targets, strict=True):
        if target.exists() and not overwrite:
            err_console.print(f"[yellow]{escape(str(target))}: exists, skipped (use --overwrite)[/]", soft_wrap=True)
            continue
        try:
            result = _restore_one(model, source, target, video_options, resume)
        except video.VideoError as exc:
            failed += 1
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
            continue
        except KeyboardInterrupt:
            kept = video.work_folder(target)
            err_console.print(
                f"[yellow]interrupted[/]: {escape(str(target))} was not written; finished segments are kept in "
                f"{escape(str(kept))}: run the same command with --resume to continue",
                soft_wrap=True,
            )
            raise typer.Exit(130) from None
        streams = f", {', '.join(result.copied_streams)} copied" if result.copied_streams else ""
        resumed = f", {result.resumed_frames} resumed" if result.resumed_frames else ""
        console.print(
            f"{escape(str(source))} → {escape(str(target))} ({result.frames} frames, "
            f"{result.size[0]}×{result.size[1]}{resumed}{streams})",
            soft_wrap=True,
        )
    if failed:
        fail(f"{failed} of {len(sources)} video{'s' if len(sources) != 1 else ''} failed")


def _restore_one(model: Any, source: Path, target: Path, options: Any, resume: bool) -> Any:
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    from restorekit import video

    class FramesPerSecond(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:.2f} frames/s" if speed else "– frames/s")

    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        FramesPerSecond(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    )
    with progress:
        bar = progress.add_task(escape(source.name), total=None)
        started: list[int] = []

        def on_frame(done: int, total: int | None) -> None:
            if not started:  # resumed frames are not counted in the speed
                started.append(done)
                progress.update(bar, total=total, completed=done)
                progress.reset(bar, total=total, completed=done)
                return
            progress.update(bar, total=total, completed=done)

        def warn(message: str) -> None:
            err_console.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True)

        return video.restore_video(model, source, target, options=options, resume=resume, progress=on_frame, warn=warn)
