"""``restore compare``: the comparison strip of ``restore eval --report`` for any images.

The same crop of every image side by side, each captioned with its metrics: full-reference ones
against ``--reference`` (shown last), no-reference ones (NIQE) for every image, the reference included.
An image smaller than the reference by a whole factor (an LR input) is enlarged with MATLAB's bicubic
first, as super-resolution papers show it, and scored as shown.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from restorekit.cli.common import EXIT_USAGE, console, fail, handle_errors
from restorekit.cli.options import MAX_PIXELS_OPTION

if TYPE_CHECKING:
    from torch import Tensor


def register(app: typer.Typer) -> None:
    """Add ``restore compare`` to *app*."""
    app.command("compare")(compare)


@handle_errors
def compare(
    images: list[Path] = typer.Argument(..., help="Images to compare, left to right.", show_default=False),
    reference: Optional[Path] = typer.Option(  # noqa: UP007 - typer needs Optional on 3.11
        None, "--reference", "-r", help="The ground truth: shown last, and what full-reference metrics compare with.",
        show_default=False,
    ),
    labels: Optional[str] = typer.Option(  # noqa: UP007
        None, "--labels", help="Comma-separated captions, one per image (default: the file names).", show_default=False
    ),
    metrics: Optional[str] = typer.Option(  # noqa: UP007
        None,
        "--metrics",
        help="Metrics to print under each tile (restore eval --list-metrics). Default: psnr_y,ssim_y with "
        "--reference, none without.",
        show_default=False,
    ),
    border: int = typer.Option(0, "--border", min=0, help="Pixels every metric shaves from each side (SR: the scale)."),
    crop: int = typer.Option(128, "--crop", min=8, help="Side of the crop, in pixels of the largest image."),
    at: Optional[str] = typer.Option(  # noqa: UP007
        None, "--at", help="Top-left corner of the crop as X,Y (default: where the reference has most detail).",
        show_default=False,
    ),
    zoom: int = typer.Option(2, "--zoom", min=1, max=8, help="Enlargement of the tiles (nearest neighbour)."),
    output: Path = typer.Option(Path("compare.png"), "--output", "-o", help="The strip to write (PNG)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON instead of a table."),
    max_pixels: Optional[int] = MAX_PIXELS_OPTION,  # noqa: UP007
) -> None:
    """Put the same crop of several images side by side, with their metrics under each tile.

    Examples:

      restore compare bicubic.png srgan.png esrgan.png --reference hr.png -o strip.png

      restore compare lr.png restored.png --reference hr.png --metrics psnr_y,ssim_y,lpips,niqe --border 4

      restore compare photo_a.jpg photo_b.jpg --metrics niqe
    """
    from restorekit.data.images import load_rgb
    from restorekit.evaluation.report import Tile, compose_strip, format_value, save_strip
    from restorekit.metrics.selection import MetricSet, parse_metric_names
    from restorekit.registry import RegistryError

    names = [p.name for p in images]
    if labels is not None:
        names = [label.strip() for label in labels.split(",")]
        if len(names) != len(images):
            fail(f"--labels gives {len(names)} captions for {len(images)} images", EXIT_USAGE)
    if output.suffix.lower() != ".png":
        fail(f"--output {output}: the strip is written as PNG; name it .png", EXIT_USAGE)
    try:
        default = ["psnr_y", "ssim_y"] if reference else []
        chosen = MetricSet(parse_metric_names(metrics) if metrics else default, border=border)
    except (ValueError, RegistryError) as exc:
        fail(f"--metrics: {exc}", EXIT_USAGE)
    if reference is None and chosen.needs_reference:
        needing = ", ".join(s.name for s in chosen.specs if s.needs_reference)
        fail(f"{needing} compare{'s' if ',' not in needing else ''} with a ground truth: give --reference", EXIT_USAGE)

    if output.exists() and not overwrite:
        fail(f"{output} exists; give --overwrite to replace it, or another --output")
    pictures = [load_rgb(path, max_pixels=max_pixels) for path in images]
    truth = load_rgb(reference, max_pixels=max_pixels) if reference is not None else None
    sizes = [tuple(p.shape[-2:]) for p in pictures]
    size = tuple(truth.shape[-2:]) if truth is not None else max(sizes, key=lambda s: s[0] * s[1])
    shown: list[Tensor] = []
    for path, picture, index in zip(images, pictures, range(len(images))):
        fitted, factor = _fit(picture, size, path, reference)
        shown.append(fitted)
        if factor > 1:
            names[index] = f"{names[index]} (bicubic x{factor})"
    box = _box(at, crop, size, truth if truth is not None else shown[0])

    scores: list[dict[str, float]] = []
    for path, picture in zip(images, shown):
        try:
            scores.append(chosen(picture, truth))
        except ValueError as exc:
            fail(f"{path}: {exc}")
    no_reference = MetricSet([s.name for s in chosen.specs if not s.needs_reference], border=border)
    truth_scores = no_reference(truth, None) if truth is not None else {}

    def caption(values: dict[str, float]) -> list[str]:
        return [f"{s.header} {format_value(s.name, values[s.name])}" for s in chosen.specs if s.name in values]

    top, left, h, w = box
    tiles = [
        Tile(name, picture[:, top : top + h, left : left + w], caption(values))
        for name, picture, values in zip(names, shown, scores)
    ]
    if truth is not None:
        tiles.append(Tile(f"{reference.name} (reference)", truth[:, top : top + h, left : left + w], caption(truth_scores)))
    save_strip(compose_strip(tiles, zoom=zoom), output)

    rows = [{"image": str(path), "label": name, **values} for path, name, values in zip(images, names, scores)]
    if truth is not None:
        rows.append({"image": str(reference), "label": "reference", **truth_scores})
    if as_json:
        crop_box = {"x": left, "y": top, "width": w, "height": h}
        typer.echo(json.dumps({"output": str(output), "crop": crop_box, "images": rows}, indent=2))
        return
    _print(rows, chosen)
    console.print(f"wrote {output} (crop {w}x{h} at x={left}, y={top})", soft_wrap=True, highlight=False, markup=False)


def _fit(picture: Tensor, size: tuple[int, int], path: Path, reference: Path | None) -> tuple[Tensor, int]:
    """*picture* at *size*: as it is, or enlarged by a whole factor with MATLAB bicubic (8-bit, as the tables)."""
    from restorekit.data.resize import imresize
    from restorekit.data.sources import to_uint8

    height, width = picture.shape[-2:]
    if (height, width) == size:
        return picture, 1
    factor = size[0] // height if height else 0
    if factor > 1 and (height * factor, width * factor) == size:
        return imresize(to_uint8(picture), float(factor)).float() / 255.0, factor
    against = f"the reference {reference}" if reference is not None else "the largest image"
    fail(
        f"{path}: {width}x{height} does not match {against} ({size[1]}x{size[0]}), nor divides it by a whole factor"
    )


def _box(at: str | None, crop: int, size: tuple[int, int], detail: Tensor) -> tuple[int, int, int, int]:
    from restorekit.evaluation.report import choose_crop

    height, width = size
    if at is None:
        return choose_crop(detail, crop)
    try:
        x, y = (int(part) for part in at.split(","))
    except ValueError:
        fail(f"--at must be X,Y in pixels, got {at!r}", EXIT_USAGE)
    if not (0 <= x < width and 0 <= y < height):
        fail(f"--at {x},{y} lies outside the {width}x{height} image", EXIT_USAGE)
    return y, x, min(crop, height - y), min(crop, width - x)


def _print(rows: list[dict], chosen) -> None:  # noqa: ANN001
    from rich.table import Table
    from rich.text import Text

    from restorekit.evaluation.report import format_value

    table = Table()
    table.add_column("image")
    for spec in chosen.specs:
        table.add_column(f"{spec.header} {spec.arrow}", justify="right")
    for row in rows:
        table.add_row(Text(row["label"]), *(format_value(s.name, row.get(s.name)) for s in chosen.specs))
    if chosen.specs:
        console.print(table)
