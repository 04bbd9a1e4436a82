"""``restore eval``: PSNR/SSIM of a model or a baseline on a benchmark, the way the papers measure it.

The work is done by :mod:`restorekit.evaluation`; this module reads the options, loads the model with the
same tiling options as ``restore apply`` and prints a table (or JSON).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from restorekit.cli.common import EXIT_USAGE, console, err_console, fail, handle_errors
from restorekit.cli.options import ARCH_OPTION, MAX_PIXELS_OPTION, inference_options

if TYPE_CHECKING:
    from restorekit.evaluation import EvaluationResult
    from restorekit.inference.model import RestorationModel
    from restorekit.inference.options import InferenceOptions

_HEADERS = {
    "psnr_y": "PSNR-Y (dB)",
    "ssim_y": "SSIM-Y",
    "psnr_rgb": "PSNR-RGB (dB)",
    "psnr": "PSNR (dB)",
    "ssim": "SSIM",
}


def register(app: typer.Typer) -> None:
    """Add ``restore eval`` to *app*."""
    app.command("eval")(evaluate)


@handle_errors
@inference_options
def evaluate(
    model_ref: str = typer.Option(
        ...,
        "--model",
        "-m",
        help="Model-store name, weight file, or a baseline: 'bicubic' (SR), 'identity'/'none' (deblurring).",
        show_default=False,
    ),
    data: Path = typer.Option(
        ...,
        "--data",
        "-d",
        help="HR folder (or an EDSR root with HR/) for SR; sharp folder or GoPro root (blur/, sharp/) for deblurring.",
        show_default=False,
    ),
    lr_dir: Optional[Path] = typer.Option(  # noqa: UP007 - typer needs Optional on 3.11
        None,
        "--lr-dir",
        help="LR images matched by name (EDSR LR_bicubic/X4/NAMEx4.png understood). Default: MATLAB bicubic of HR.",
        show_default=False,
    ),
    blur_dir: Optional[Path] = typer.Option(  # noqa: UP007
        None, "--blur-dir", help="Blurred images matched to --data by file name (deblurring).", show_default=False
    ),
    scale: Optional[int] = typer.Option(  # noqa: UP007
        None,
        "--scale",
        min=1,
        help="Upscaling factor; needed for bicubic, checked against a model's, a hint for converting a .pth.",
        show_default=False,
    ),
    arch: Optional[str] = ARCH_OPTION,  # noqa: UP007
    inputs: Optional[Path] = typer.Option(  # noqa: UP007
        None,
        "--inputs",
        help="Model inputs matched to --data by name, for any task (what --lr-dir/--blur-dir are for the built-in ones).",
        show_default=False,
    ),
    task: Optional[str] = typer.Option(  # noqa: UP007
        None,
        "--task",
        help="A registered task (restore list tasks): super_resolution, deblurring, or a plugin's. "
        "Default: the model's task.",
        show_default=False,
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (per image, mean, settings) instead of a table."),
    max_pixels: Optional[int] = MAX_PIXELS_OPTION,  # noqa: UP007
    *,
    options: InferenceOptions,
) -> None:
    """Measure a model (or a baseline) on a benchmark folder with its task's published protocol.

    The task comes from the model (or --task, or the baseline's task); plugin tasks work the same way.

    Super-resolution: HR cropped to a multiple of the scale, LR from --lr-dir or MATLAB bicubic of the HR.

    The output is rounded to 8 bits; PSNR and SSIM on Y (BT.601), SCALE border pixels shaved, and RGB PSNR.

    Deblurring: RGB PSNR and SSIM of the 8-bit output against the sharp image, no border shaved.

    Examples:

      restore eval --model bicubic --data ../shared/data/sr-bench/Set5/HR --scale 4

      restore eval --model srgan --data Set14/HR --lr-dir Set14/LR_bicubic --json

      restore eval --model identity --data ../shared/data/deblur/gopro-avg8
    """
    from restorekit.cli.apply import load_cli_model, model_hints, model_label
    from restorekit.evaluation import BASELINES, TASKS, EvaluationError
    from restorekit.evaluation import evaluate as run_evaluation

    if task is not None and task not in TASKS:
        fail(f"--task must be one of {', '.join(TASKS)}, got {task!r}", EXIT_USAGE)
    baseline = model_ref.strip().lower() in BASELINES and not Path(model_ref).expanduser().is_file()
    model: RestorationModel | str
    if baseline:
        model = model_ref.strip().lower()
    else:
        model = load_cli_model(model_ref, options, model_hints(scale=scale, arch=arch))

    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, transient=True, disable=not err_console.is_terminal,
    )  # fmt: skip
    with progress, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bar = progress.add_task("images", total=None)
        try:
            result = run_evaluation(
                model,
                data,
                task=task,
                lr_dir=lr_dir,
                blur_dir=blur_dir,
                inputs=inputs,
                scale=scale,
                max_pixels=max_pixels,
                progress=lambda done, total: progress.update(bar, completed=done, total=total),
                name=None if baseline else model_label(model_ref),
            )
        except EvaluationError as exc:
            fail(str(exc), EXIT_USAGE)
    for warning in caught:  # e.g. half precision falling back to fp32: one line each, not a stack excerpt
        err_console.print(f"[yellow]warning:[/] {escape(str(warning.message))}", soft_wrap=True)
    if as_json:
        # Plain echo, not rich: no markup, highlighting or line wrapping may touch the JSON.
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        _print_table(result)


def _print_table(result: EvaluationResult) -> None:
    from rich.table import Table
    from rich.text import Text

    # The task describes its own protocol (EvalSet.settings): nothing here knows a particular task.
    size = f" x{result.scale}" if result.scale > 1 else ""
    protocol = result.settings.get("protocol") or result.task
    title = f"{result.model}{size} on {result.data} ({result.task}: {protocol})"
    console.print(Text(title), soft_wrap=True)
    table = Table()
    table.add_column("image")
    for key in result.metric_names:
        table.add_column(_HEADERS.get(key, key), justify="right")
    for image in result.images:
        table.add_row(Text(image.name), *(_format(key, image.metrics[key]) for key in result.metric_names))
    table.add_section()
    mean = result.mean
    table.add_row(
        Text(f"mean ({len(result.images)})", style="bold"),
        *(Text(_format(key, mean[key]), style="bold") for key in result.metric_names),
    )
    console.print(table)


def _format(key: str, value: float) -> str:
    return f"{value:.4f}" if key.startswith("ssim") else f"{value:.2f}"
