"""``restore prepare``: cut large training images into overlapping sub-images (BasicSR's convention).

The work is done by :func:`restorekit.data.prepare.prepare_subimages`; this module reads the options,
shows progress and prints what was done and how to train on it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import typer

from restorekit.cli.common import EXIT_ERROR, EXIT_USAGE, console, err_console, fail, handle_errors
from restorekit.cli.options import MAX_PIXELS_OPTION


def register(app: typer.Typer) -> None:
    """Add ``restore prepare`` to *app*."""
    app.command("prepare")(prepare)


_LR = re.compile(r"^[xX]?(\d+)=(.+)$")


def _parse_lr(values: list[str]) -> dict[int, Path]:
    folders: dict[int, Path] = {}
    for value in values:
        match = _LR.match(value)
        if match is None or int(match.group(1)) < 2:
            fail(f"--lr {value}: expected SCALE=FOLDER with SCALE >= 2, e.g. --lr 4=DIV2K_train_LR_bicubic/X4", EXIT_USAGE)
        scale = int(match.group(1))
        if scale in folders:
            fail(f"--lr: x{scale} given twice ({folders[scale]} and {match.group(2)})", EXIT_USAGE)
        folders[scale] = Path(match.group(2))
    return folders


@handle_errors
def prepare(
    sources: list[Path] = typer.Argument(
        ..., metavar="HR_FOLDER...", help="Folders of large HR images (sub-folders are kept).", show_default=False
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="The prepared folder to write (or to finish, when a run was stopped).", show_default=False
    ),
    lr: list[str] = typer.Option(
        [],
        "--lr",
        metavar="SCALE=FOLDER",
        help="Also cut the aligned sub-images of this LR folder (NAME.png, NAMExS.png or an XS sub-folder); "
        "repeat for x2/x3/x4.",
        show_default=False,
    ),
    crop: int = typer.Option(480, "--crop", min=1, help="Sub-image side in HR pixels."),
    step: int = typer.Option(240, "--step", min=1, help="Distance between sub-image starts."),
    thresh: int = typer.Option(
        0, "--thresh", min=0, help="Drop a remainder at the far edge up to this many pixels (else a last window flush with it)."
    ),
    store_format: str = typer.Option(
        "png",
        "--format",
        help="png: one file per sub-image (BasicSR's layout); npy: raw uint8 shards read by memory map "
        "(no decoding when training; more disk).",
    ),
    compress_level: int = typer.Option(3, "--compress-level", min=0, max=9, help="PNG zlib level."),
    workers: Optional[int] = typer.Option(  # noqa: UP007 - typer needs Optional on 3.11
        None, "--workers", "-j", min=0, help="Worker processes. Default: one per CPU; 0: in this process.", show_default=False
    ),
    max_pixels: Optional[int] = MAX_PIXELS_OPTION,  # noqa: UP007
) -> None:
    """Cut large HR images (DIV2K, Flickr2K, ...) into overlapping sub-images for fast training crops.

    480x480 sub-images every 240 pixels, as BasicSR's extract_subimages; a remainder at the far edge becomes one more window flush with the edge unless it is at most --thresh pixels. Runs in parallel and resumes: a stopped run continues where it was, an unchanged image is not cut again. The folder's manifest.jsonl is what training reads.

    Examples:

      restore prepare DIV2K_train_HR -o data/DIV2K_sub

      restore prepare DIV2K_train_HR Flickr2K_HR -o data/DF2K_sub --format npy -j 8

      restore prepare DIV2K_train_HR --lr 4=DIV2K_train_LR_bicubic/X4 -o data/DIV2K_x4_sub

      restore run recipes/esrgan.toml --set data.train.hr=data/DIV2K_sub   # then train on it
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from restorekit.data.prepare import PrepareSettings, prepare_subimages

    lr_folders = _parse_lr(lr)
    try:
        settings = PrepareSettings(
            crop=crop, step=step, thresh=thresh, scales=tuple(sorted(lr_folders)), format=store_format,
            compress_level=compress_level,
        )  # fmt: skip
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)

    columns = (
        TextColumn("preparing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
    )  # fmt: skip
    with Progress(*columns, console=err_console, transient=True, disable=not err_console.is_terminal) as bar:
        task = bar.add_task("prepare", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        report = prepare_subimages(
            sources, out, lr=lr_folders, settings=settings, workers=workers, max_pixels=max_pixels, progress=progress
        )
    for line in report.failed:
        err_console.print(f"[bold red]error:[/] {_escape(line)}", soft_wrap=True)
    done = f"{report.prepared} cut now, {report.skipped} already done"
    if report.failed:
        done += f", {len(report.failed)} failed"
    console.print(
        f"{out}: {report.subimages} sub-images of {report.sources - len(report.failed)} images ({done}) "
        f"in {report.seconds:.1f} s",
        soft_wrap=True,
    )
    if report.removed:
        console.print(f"removed {report.removed} sub-image file(s) of images that changed or left the set")
    hint = f"--set data.train.hr={out}"
    if lr_folders:
        hint += f" --set data.train.lr={out}"
    console.print(f"train on it: restore run RECIPE {hint}", soft_wrap=True)
    if report.failed:
        err_console.print(f"{len(report.failed)} image(s) could not be read; fix them and run the command again")
        raise typer.Exit(EXIT_ERROR)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
