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
    from restorekit.evaluation.report import Report
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


def _list_metrics(value: bool) -> None:
    """``--list-metrics``: the registry's metrics with direction, reference and colour space; then exit."""
    if not value:
        return
    from rich.table import Table
    from rich.text import Text

    from restorekit.metrics.registry import metric_registry

    table = Table(title="metrics (restore eval --metrics a,b,...)", title_justify="left")
    for column in ("name", "better", "reference", "colour", "plugin", "description"):
        table.add_column(column)
    for spec in metric_registry():
        table.add_row(
            spec.name, spec.direction, "yes" if spec.needs_reference else "no", spec.colour, spec.plugin,
            Text(spec.description),
        )  # fmt: skip
    console.print(table)
    console.print(
        Text("Every metric shaves the task's border (super-resolution: the scale) and reads the 8-bit output; "
             "for super-resolution, psnr and ssim mean psnr_y and ssim_y."),
        soft_wrap=True,
    )
    raise typer.Exit()


@handle_errors
@inference_options
def evaluate(
    model_refs: list[str] = typer.Option(
        ...,
        "--model",
        "-m",
        help="Model-store name, weight file, or a baseline: 'bicubic' (SR), 'identity'/'none' (deblurring). "
        "Repeat to compare models side by side.",
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
    metrics: Optional[str] = typer.Option(  # noqa: UP007
        None,
        "--metrics",
        help="Metrics to report, e.g. psnr,ssim,lpips,niqe (see --list-metrics). Default: the task's own "
        "(SR: psnr_y, ssim_y, psnr_rgb; deblurring: psnr, ssim).",
        show_default=False,
    ),
    report: Optional[Path] = typer.Option(  # noqa: UP007
        None,
        "--report",
        help="Write a report folder: report.json, per_image.csv, comparison strips and index.html.",
        show_default=False,
    ),
    crop: int = typer.Option(128, "--crop", min=8, help="Side of the strips' crop, in output pixels (--report)."),
    zoom: int = typer.Option(2, "--zoom", min=1, max=8, help="Enlargement of the strips' tiles (--report)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (per image, mean, settings) instead of a table."),
    max_pixels: Optional[int] = MAX_PIXELS_OPTION,  # noqa: UP007
    list_metrics: bool = typer.Option(
        False, "--list-metrics", callback=_list_metrics, is_eager=True, help="List the metrics and exit."
    ),
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
    from restorekit.evaluation.report import evaluate_report
    from restorekit.metrics.selection import parse_metric_names

    del list_metrics  # handled by its eager callback
    if report is not None and report.exists() and not report.is_dir():
        fail(f"--report {report}: exists and is not a folder", EXIT_USAGE)
    if task is not None and task not in TASKS:
        fail(f"--task must be one of {', '.join(TASKS)}, got {task!r}", EXIT_USAGE)
    chosen_metrics = None
    if metrics is not None:
        try:
            chosen_metrics = parse_metric_names(metrics)
        except ValueError as exc:
            fail(f"--metrics: {exc}", EXIT_USAGE)
    models: list[RestorationModel | str] = []
    names: list[str | None] = []
    for ref in model_refs:
        if ref.strip().lower() in BASELINES and not Path(ref).expanduser().is_file():
            models.append(ref.strip().lower())
            names.append(None)
        else:
            models.append(load_cli_model(ref, options, model_hints(scale=scale, arch=arch)))
            names.append(model_label(ref))

    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("evaluating {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, transient=True, disable=not err_console.is_terminal,
    )  # fmt: skip
    settings = {
        "task": task, "lr_dir": lr_dir, "blur_dir": blur_dir, "inputs": inputs, "scale": scale,
        "max_pixels": max_pixels, "metrics": chosen_metrics,
    }  # fmt: skip
    bars: dict[str, object] = {}

    def update(label: str, done: int, total: int) -> None:
        if label not in bars:
            bars[label] = progress.add_task(escape(label), total=total)
        progress.update(bars[label], completed=done, total=total)

    with progress, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if len(models) == 1 and report is None:
                result = run_evaluation(
                    models[0], data, name=names[0],
                    progress=lambda done, total: update(str(names[0] or models[0]), done, total),
                    **settings,
                )  # fmt: skip
                outcome = None
            else:
                outcome = evaluate_report(
                    models, data, names=names, directory=report, crop=crop, zoom=zoom, progress=update, **settings
                )
        except EvaluationError as exc:
            fail(str(exc), EXIT_USAGE)
    for warning in caught:  # e.g. half precision falling back to fp32: one line each, not a stack excerpt
        err_console.print(f"[yellow]warning:[/] {escape(str(warning.message))}", soft_wrap=True)
    if outcome is None:
        if as_json:
            # Plain echo, not rich: no markup, highlighting or line wrapping may touch the JSON.
            typer.echo(json.dumps(result.to_dict(), indent=2))
        else:
            _print_table(result)
        return
    if as_json:
        typer.echo(json.dumps(outcome.to_dict(), indent=2))
    else:
        _print_summary(outcome)
    if report is not None:
        err_console.print(f"report: {escape(str(outcome.paths['html']))}", soft_wrap=True)


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
        table.add_column(_header(result, key), justify="right")
    for image in result.images:
        table.add_row(Text(image.name), *(_format(key, image.metrics[key]) for key in result.metric_names))
    table.add_section()
    mean = result.mean
    table.add_row(
        Text(f"mean ({len(result.images)})", style="bold"),
        *(Text(_format(key, mean[key]), style="bold") for key in result.metric_names),
    )
    console.print(table)


def _print_summary(outcome: Report) -> None:
    """Models (and the input) as rows, the mean of each metric as columns."""
    from rich.table import Table
    from rich.text import Text

    first = outcome.results[0]
    size = f" x{first.scale}" if first.scale > 1 else ""
    protocol = first.settings.get("protocol") or first.task
    console.print(Text(f"{first.task}{size} on {first.data}, {len(first.images)} images ({protocol})"), soft_wrap=True)
    table = Table()
    table.add_column("model")
    for key in first.metric_names:
        table.add_column(_header(first, key), justify="right")
    if outcome.input_result is not None:
        mean = outcome.input_result.mean
        table.add_row(Text(outcome.input_label, style="italic"), *(_format(k, mean[k]) for k in first.metric_names))
        table.add_section()
    for result in outcome.results:
        mean = result.mean
        table.add_row(Text(result.model), *(_format(k, mean[k]) for k in first.metric_names))
    console.print(table)


def _header(result: EvaluationResult, key: str) -> str:
    """The column header: the registered label with the direction (↑ higher, ↓ lower is better)."""
    info = next((i for i in result.metric_info if i["name"] == key), None)
    if info is None:
        return _HEADERS.get(key, key)
    return f"{_HEADERS.get(key, info['label'])} {'↑' if info['higher_is_better'] else '↓'}"


def _format(key: str, value: float) -> str:
    from restorekit.evaluation.report import format_value

    return format_value(key, value)
