"""Evaluation reports people look at: comparison strips, a per-image CSV, JSON and one HTML page.

``restore eval --report DIR`` (and :func:`write_report`) leaves in *DIR*:

- ``report.json``: every model's result (per image and mean, settings, metric facts), and the input's
  (the task's first baseline: the bicubic-upscaled LR, the blurred image);
- ``per_image.csv``: one row per model and image, every metric at full precision;
- ``strips/NAME.png``: for each image the same crop of the input, of each model's output and of the
  ground truth side by side, each tile captioned with its whole-image metrics;
- ``index.html``: the summary table (best value per metric in bold, arrows giving the direction) above
  every strip with its per-image table.

The crop is chosen once per image, where the ground truth has the most detail (largest gradient energy
on a coarse grid), so every tile shows the same pixels. The numbers in the CSV and the HTML are the
JSON's: the CSV keeps Python's shortest round-trip repr, and every HTML cell carries the exact value in
``data-value`` beside the rounded text.

:func:`compose_strip` draws a strip of arbitrary tiles (``restore compare`` uses it). Text is drawn with
Pillow's built-in font: no font file, no extra dependency. Every file is written atomically.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from restorekit.fileio import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    from PIL import Image

    from restorekit.evaluation.result import EvaluationResult
    from restorekit.tasks.base import EvalSample

__all__ = [
    "Report",
    "ReportCollector",
    "evaluate_report",
    "Tile",
    "choose_crop",
    "compose_strip",
    "format_value",
    "strip_filename",
    "write_report",
]

REFERENCE_LABEL = "ground truth"
DEFAULT_CROP = 128
DEFAULT_ZOOM = 2
_CAPTION_PAD = 6
_FONT_SIZE = 14


def format_value(name: str, value: float | None) -> str:
    """How tables print a metric: dB values with 2 decimals, everything else with 4; ``-`` for none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.2f}" if name.startswith("psnr") else f"{value:.4f}"


def _json_number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def strip_filename(name: str) -> str:
    """A file name for an image's strip (image names may hold folders: ``GOPR0384_11_00/000001``)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name.replace("/", "__"))
    return f"{safe or 'image'}.png"


# --- choosing and cutting the crop ----------------------------------------------------------------


def choose_crop(target: Tensor, size: int = DEFAULT_CROP) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of the *size* x *size* window of *target* with the most detail.

    Detail is the sum of absolute luminance differences to the right and below, evaluated on a grid of
    windows a quarter of *size* apart; the first of equal windows wins, so the choice is deterministic.
    An image smaller than *size* is taken whole.
    """
    height, width = target.shape[-2:]
    h, w = min(size, height), min(size, width)
    grey = target.float().mean(dim=-3) if target.dim() == 3 else target.float()
    energy = torch.zeros(height, width)
    energy[:, :-1] += (grey[:, 1:] - grey[:, :-1]).abs().cpu()
    energy[:-1, :] += (grey[1:, :] - grey[:-1, :]).abs().cpu()
    integral = torch.nn.functional.pad(energy.double().cumsum(0).cumsum(1), (1, 0, 1, 0))
    step = max(1, size // 4)
    tops = sorted({*range(0, height - h + 1, step), height - h})
    lefts = sorted({*range(0, width - w + 1, step), width - w})
    best, where = -1.0, (0, 0)
    for top in tops:
        for left in lefts:
            total = float(
                integral[top + h, left + w] - integral[top, left + w] - integral[top + h, left] + integral[top, left]
            )
            if total > best:
                best, where = total, (top, left)
    return where[0], where[1], h, w


def _cut(image: Tensor, box: tuple[int, int, int, int]) -> Tensor:
    top, left, h, w = box
    part = image[..., top : top + h, left : left + w].detach().float().clamp(0, 1).cpu()
    return part.expand(3, -1, -1).clone() if part.shape[0] == 1 else part.clone()


# --- drawing --------------------------------------------------------------------------------------


@dataclass
class Tile:
    """One picture of a strip with its caption.

    Attributes:
        label: what the picture is (a model name, ``bicubic (input)``, ``ground truth``).
        image: ``(3, h, w)`` float in [0, 1] (1-channel images are replicated).
        lines: caption lines under the label (``PSNR-Y 28.43``), usually the whole image's metrics.
    """

    label: str
    image: Tensor
    lines: list[str] = field(default_factory=list)


def _font(size: int = _FONT_SIZE) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _fit(text: str, font: Any, width: int) -> str:
    """*text* shortened with ``...`` to fit *width* pixels."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "...") > width:
        text = text[:-1]
    return text + "..."


def compose_strip(tiles: Sequence[Tile], *, zoom: int = DEFAULT_ZOOM, gap: int = 4) -> Image.Image:
    """Tiles side by side (each enlarged *zoom* times, nearest neighbour), captions underneath.

    Args:
        tiles: the pictures, all of one size.
        zoom: integer enlargement, so that single pixels stay visible.
        gap: white pixels between tiles.

    Returns:
        An RGB :class:`PIL.Image.Image`.

    Raises:
        ValueError: no tiles, tiles of different sizes, or a zoom below 1.
    """
    from PIL import Image, ImageDraw

    if not tiles:
        raise ValueError("compose_strip: no tiles")
    if isinstance(zoom, bool) or not isinstance(zoom, int) or zoom < 1:
        raise ValueError(f"compose_strip: zoom must be a positive integer, got {zoom!r}")
    sizes = {tuple(t.image.shape[-2:]) for t in tiles}
    if len(sizes) != 1:
        raise ValueError(f"compose_strip: tiles differ in size: {sorted(sizes)}")
    h, w = (side * zoom for side in sizes.pop())
    font = _font()
    line = _FONT_SIZE + 4
    rows = 1 + max(len(t.lines) for t in tiles)
    caption = 2 * _CAPTION_PAD + rows * line
    canvas = Image.new("RGB", (len(tiles) * w + (len(tiles) - 1) * gap, h + caption), "white")
    draw = ImageDraw.Draw(canvas)
    for index, tile in enumerate(tiles):
        x = index * (w + gap)
        pixels = (tile.image.detach().float().clamp(0, 1) * 255 + 0.5).floor().to(torch.uint8)
        if pixels.shape[0] == 1:
            pixels = pixels.expand(3, -1, -1)
        picture = Image.fromarray(pixels.permute(1, 2, 0).contiguous().numpy(), "RGB")
        if zoom > 1:
            picture = picture.resize((w, h), Image.Resampling.NEAREST)
        canvas.paste(picture, (x, 0))
        y = h + _CAPTION_PAD
        draw.text((x + 4, y), _fit(tile.label, font, w - 8), font=font, fill=(0, 0, 0))
        for text in tile.lines:
            y += line
            draw.text((x + 4, y), _fit(text, font, w - 8), font=font, fill=(60, 60, 60))
    return canvas


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def save_strip(image: Image.Image, path: str | Path) -> None:
    """Write a strip as PNG, atomically."""
    atomic_write_bytes(path, _png_bytes(image))


# --- collecting during evaluation -----------------------------------------------------------------


class ReportCollector:
    """Keeps, for every image, the same crop of each evaluated output and of the ground truth.

    Pass :meth:`collect` (for a label) as ``on_output`` to :func:`restorekit.evaluation.evaluate`; the
    crop is chosen from the first ground truth seen for an image, so every model's tile matches.

    Args:
        crop: side of the crop in output pixels.

    Example:
        >>> collector = ReportCollector(crop=96)
        >>> result = evaluate("bicubic", "Set5/HR", scale=4, on_output=collector.collect("bicubic"))  # doctest: +SKIP
    """

    def __init__(self, *, crop: int = DEFAULT_CROP) -> None:
        if isinstance(crop, bool) or not isinstance(crop, int) or crop < 8:
            raise ValueError(f"crop must be an integer of at least 8 pixels, got {crop!r}")
        self.crop = crop
        self.boxes: dict[str, tuple[int, int, int, int]] = {}
        self.targets: dict[str, Tensor] = {}
        self.crops: dict[str, dict[str, Tensor]] = {}
        self.reference_scores: dict[str, dict[str, float]] = {}
        # Whole ground truths as 8 bits, kept only until score_references() has measured them.
        self._references: dict[str, Tensor] | None = {}

    def collect(self, label: str):  # noqa: ANN201 - returns an OnOutput callback
        """An ``on_output(sample, output)`` callback storing the crops under *label*."""

        def on_output(sample: EvalSample, output: Tensor) -> None:
            box = self.boxes.get(sample.name)
            if box is None:
                box = self.boxes[sample.name] = choose_crop(sample.target, self.crop)
                self.targets[sample.name] = _cut(sample.target, box)
                if self._references is not None:
                    self._references[sample.name] = (sample.target.detach().float().clamp(0, 1) * 255 + 0.5).to(
                        torch.uint8
                    ).cpu()
            self.crops.setdefault(sample.name, {})[label] = _cut(output, box)

        return on_output

    def score_references(self, metrics: Any | None) -> None:
        """Score every ground truth seen with the no-reference *metrics* (a MetricSet), then forget them."""
        references, self._references = self._references or {}, None
        if metrics is None or not metrics.names:
            return
        for name, image in references.items():
            self.reference_scores[name] = metrics(image.float() / 255.0, None)


# --- writing --------------------------------------------------------------------------------------


def _facts(results: Sequence[EvaluationResult]) -> list[dict[str, Any]]:
    """One fact record per metric column, registered or not, in table order."""
    first = results[0]
    known = {info["name"]: info for info in first.metric_info}
    return [known.get(name, {"name": name, "label": name, "higher_is_better": None}) for name in first.metric_names]


def _caption(facts: Sequence[dict[str, Any]], scores: dict[str, float] | None, reference: bool) -> list[str]:
    lines = []
    for fact in facts:
        if scores is None or fact["name"] not in scores:
            continue
        if reference and fact.get("needs_reference", True):
            continue  # the ground truth against itself says nothing
        lines.append(f"{fact.get('label') or fact['name']} {format_value(fact['name'], scores[fact['name']])}")
    return lines


def _image_scores(result: EvaluationResult) -> dict[str, dict[str, float]]:
    return {image.name: image.metrics for image in result.images}


def write_report(
    directory: str | Path,
    results: Sequence[EvaluationResult],
    collector: ReportCollector,
    *,
    input_result: EvaluationResult | None = None,
    input_label: str = "input",
    reference_scores: dict[str, dict[str, float]] | None = None,
    zoom: int = DEFAULT_ZOOM,
) -> dict[str, Path]:
    """Write ``report.json``, ``per_image.csv``, ``strips/*.png`` and ``index.html`` into *directory*.

    Args:
        directory: the report folder (created).
        results: one result per model, same task, scale, data and metrics, in column order.
        collector: the crops gathered while they were evaluated (models under their result's name, the
            input under *input_label*).
        input_result: the input's own scores (the task's first baseline), shown first in every strip.
        input_label: the input tile's caption (``bicubic x4 (input)``).
        reference_scores: no-reference metrics of each ground truth, by image name (for its tile).
        zoom: enlargement of the strip tiles.

    Returns:
        ``{"json": ..., "csv": ..., "html": ..., "strips": folder}``.

    Raises:
        ValueError: no results, or results of different tasks, scales, data or metrics.
        OSError: the folder cannot be written.
    """
    if not results:
        raise ValueError("write_report: no results")
    first = results[0]
    for result in (*results[1:], *([input_result] if input_result else [])):
        if (result.task, result.scale, result.data, result.metric_names) != (
            first.task, first.scale, first.data, first.metric_names
        ):  # fmt: skip
            raise ValueError(
                f"write_report: '{result.model}' was evaluated as {result.task} x{result.scale} on {result.data} "
                f"with {', '.join(result.metric_names)}; '{first.model}' as {first.task} x{first.scale} on "
                f"{first.data} with {', '.join(first.metric_names)}"
            )
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    facts = _facts(results)
    names = [image.name for image in first.images]
    reference_scores = reference_scores or {}

    document = {
        "task": first.task,
        "scale": first.scale,
        "data": first.data,
        "count": len(names),
        "metrics": facts,
        "input": None if input_result is None else {"label": input_label, **input_result.to_dict()},
        "models": [result.to_dict() for result in results],
        "reference": _reference_document(names, reference_scores),
        "strips": {name: f"strips/{strip_filename(name)}" for name in names if name in collector.crops},
        "crops": {
            name: dict(zip(("y", "x", "height", "width"), collector.boxes[name]))
            for name in names
            if name in collector.boxes
        },
    }
    paths = {"json": folder / "report.json", "csv": folder / "per_image.csv", "html": folder / "index.html"}
    atomic_write_text(paths["json"], json.dumps(document, indent=2, allow_nan=False) + "\n")
    atomic_write_text(paths["csv"], _csv(results, input_result, facts, reference_scores))

    strips = folder / "strips"
    rows = [(input_label, input_result)] if input_result is not None else []
    rows += [(result.model, result) for result in results]
    for name in names:
        crops = collector.crops.get(name)
        if not crops:
            continue
        tiles = []
        for label, result in rows:
            key = result.model if result is not input_result else input_label
            if key in crops:
                tiles.append(Tile(label, crops[key], _caption(facts, _image_scores(result).get(name), False)))
        tiles.append(Tile(REFERENCE_LABEL, collector.targets[name], _caption(facts, reference_scores.get(name), True)))
        save_strip(compose_strip(tiles, zoom=zoom), strips / strip_filename(name))
    paths["strips"] = strips
    atomic_write_text(paths["html"], _html(document, results, input_result, input_label, facts))
    return paths


def _reference_document(names: Sequence[str], scores: dict[str, dict[str, float]]) -> dict[str, Any] | None:
    """The ground truths' own (no-reference) scores: per image and their mean; None when none were chosen."""
    if not scores:
        return None
    keys = list(next(iter(scores.values())))
    mean = {k: sum(scores[n][k] for n in names if n in scores) / len(scores) for k in keys}
    return {
        "label": REFERENCE_LABEL,
        "images": {n: {k: _json_number(v) for k, v in scores[n].items()} for n in names if n in scores},
        "mean": {k: _json_number(v) for k, v in mean.items()},
    }


def _csv(
    results: Sequence[EvaluationResult],
    input_result: EvaluationResult | None,
    facts: list[dict],
    reference_scores: dict[str, dict[str, float]],
) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", "role", "model", *(fact["name"] for fact in facts)])
    rows = ([("input", input_result)] if input_result is not None else []) + [("model", r) for r in results]
    for image_index, image in enumerate(results[0].images):
        for role, result in rows:
            scores = result.images[image_index].metrics
            # repr: the shortest text that reads back as the same float (what the JSON holds).
            writer.writerow([image.name, role, result.model, *(repr(float(scores[f["name"]])) for f in facts)])
        if image.name in reference_scores:  # the ground truth's no-reference scores; the others are empty
            own = reference_scores[image.name]
            writer.writerow([image.name, "reference", REFERENCE_LABEL,
                             *(repr(float(own[f["name"]])) if f["name"] in own else "" for f in facts)])
    return buffer.getvalue()


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td.best { font-weight: bold; }
tr.input td { font-style: italic; color: #555; }
img.strip { max-width: 100%; image-rendering: pixelated; border: 1px solid #ddd; }
p.protocol, p.note { color: #555; }
"""


def _header(fact: dict[str, Any]) -> str:
    arrow = {True: " ↑", False: " ↓"}.get(fact.get("higher_is_better"), "")
    return f"{html.escape(fact.get('label') or fact['name'])}{arrow}"


def _cell(name: str, value: float | None, *, model: str, image: str, best: bool) -> str:
    exact = "null" if value is None or not math.isfinite(value) else repr(float(value))
    cls = ' class="best"' if best else ""
    return (
        f'<td{cls} data-model="{html.escape(model)}" data-image="{html.escape(image)}" data-metric="{html.escape(name)}" '
        f'data-value="{exact}">{html.escape(format_value(name, value))}</td>'
    )


def _floats(scores: dict[str, float | None]) -> dict[str, float]:
    """JSON scores back to floats (None: an infinite PSNR)."""
    return {k: math.inf if v is None else v for k, v in scores.items()}


def _best(facts: list[dict], values: list[dict[str, float]]) -> dict[str, float | None]:
    """The best finite value of each metric over the rows (None when the direction is unknown)."""
    best: dict[str, float | None] = {}
    for fact in facts:
        finite = [v[fact["name"]] for v in values if math.isfinite(v[fact["name"]])]
        direction = fact.get("higher_is_better")
        best[fact["name"]] = None if direction is None or not finite else (max if direction else min)(finite)
    return best


def _table(
    facts: list[dict],
    rows: list[tuple[str, str, dict[str, float]]],
    image: str,
) -> list[str]:
    best = _best(facts, [values for _, role, values in rows if role == "model"])
    out = ["<table>", "<tr><th>model</th>" + "".join(f"<th>{_header(f)}</th>" for f in facts) + "</tr>"]
    for label, role, values in rows:
        cells = "".join(
            _cell(f["name"], values.get(f["name"]), model=label, image=image,
                  best=role == "model" and len(rows) > 1 and values.get(f["name"]) == best[f["name"]])
            for f in facts
        )  # fmt: skip
        out.append(f'<tr class="{role}"><td>{html.escape(label)}</td>{cells}</tr>')
    out.append("</table>")
    return out


def _html(
    document: dict[str, Any],
    results: Sequence[EvaluationResult],
    input_result: EvaluationResult | None,
    input_label: str,
    facts: list[dict],
) -> str:
    first = results[0]
    title = f"{first.task.replace('_', '-')}" + (f" x{first.scale}" if first.scale > 1 else "") + f" on {first.data}"
    rows_of = ([(input_label, "input", input_result)] if input_result is not None else []) + [
        (r.model, "model", r) for r in results
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="protocol">{html.escape(str(first.settings.get("protocol", "")))}</p>',
        f"<h2>Mean over {len(first.images)} image{'s' if len(first.images) != 1 else ''}</h2>",
    ]
    reference = document.get("reference")
    truth_mean = [(REFERENCE_LABEL, "reference", _floats(reference["mean"]))] if reference else []
    parts += _table(facts, [(label, role, r.mean) for label, role, r in rows_of] + truth_mean, "mean")
    protocols = "; ".join(f"{f.get('label') or f['name']}: {f['protocol']}" for f in facts if "protocol" in f)
    if protocols:
        parts.append(f'<p class="note">{html.escape(protocols)}. ↑ higher is better, ↓ lower is better; '
                     "each tile shows the same crop, captioned with the whole image's metrics.</p>")
    for index, image in enumerate(first.images):
        parts.append(f'<h3 id="{html.escape(strip_filename(image.name))}">{html.escape(image.name)}</h3>')
        strip = document["strips"].get(image.name)
        if strip:
            parts.append(f'<img class="strip" src="{html.escape(strip)}" alt="{html.escape(image.name)}">')
        truth = [(REFERENCE_LABEL, "reference", _floats(reference["images"][image.name]))] if reference else []
        rows = [(label, role, r.images[index].metrics) for label, role, r in rows_of] + truth
        parts += _table(facts, rows, image.name)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# --- several models, one report ---------------------------------------------------------------------


@dataclass
class Report:
    """What :func:`evaluate_report` measured: the models' results, the input's, and the strips' crops."""

    results: list[EvaluationResult]
    input_result: EvaluationResult | None
    input_label: str
    collector: ReportCollector
    paths: dict[str, Path] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of the report (what ``report.json`` holds, without the strip paths)."""
        facts = _facts(self.results)
        first = self.results[0]
        return {
            "task": first.task,
            "scale": first.scale,
            "data": first.data,
            "count": len(first.images),
            "metrics": facts,
            "input": None if self.input_result is None else {"label": self.input_label, **self.input_result.to_dict()},
            "models": [result.to_dict() for result in self.results],
        }


def _unique(labels: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return out


def evaluate_report(
    models: Sequence[Any],
    data: str | Path,
    *,
    names: Sequence[str | None] | None = None,
    directory: str | Path | None = None,
    crop: int = DEFAULT_CROP,
    zoom: int = DEFAULT_ZOOM,
    with_input: bool = True,
    progress: Any = None,
    **options: Any,
) -> Report:
    """Evaluate several models on one benchmark, side by side, and optionally write the report.

    Every model is scored by :func:`restorekit.evaluation.evaluate` with the same *options* (task,
    scale, folders, metrics, ...); they must agree on task and scale. The task's first baseline is
    scored too, as the input of the strips (unless it is one of *models*, or *with_input* is off).

    Args:
        models: loaded models, store names, weight files or baseline names.
        data: the benchmark folder.
        names: what to call each model (None entries: the default name); duplicates get ``(2)``, ...
        directory: where to write the report (see :func:`write_report`); None writes nothing.
        crop: side of the strips' crop in output pixels.
        zoom: enlargement of the strips' tiles.
        with_input: also score and show the task's baseline as the input.
        progress: ``progress(label, done, total)`` after every image.
        **options: :func:`~restorekit.evaluation.evaluate`'s keyword arguments.

    Returns:
        The :class:`Report` (its ``paths`` filled when *directory* was given).

    Raises:
        restorekit.evaluation.EvaluationError: no models, or models of different tasks or scales; and
            whatever :func:`~restorekit.evaluation.evaluate` raises.

    Example:
        >>> report = evaluate_report(["bicubic", "srgan"], "Set5/HR", scale=4,  # doctest: +SKIP
        ...                          metrics=["psnr", "ssim", "lpips"], directory="report")
        >>> [r.model for r in report.results]  # doctest: +SKIP
        ['srgan']
    """
    from restorekit.evaluation.api import EvaluationError, _task_classes, baseline_owners, evaluate
    from restorekit.metrics.selection import MetricSet

    if not models:
        raise EvaluationError("give at least one model")
    given = list(names) if names is not None else [None] * len(models)
    if len(given) != len(models):
        raise EvaluationError("give one name per model")
    collector = ReportCollector(crop=crop)

    def run(model: Any, label: str | None, key: str | None, **extra: Any) -> EvaluationResult:
        def report_progress(done: int, total: int) -> None:
            if progress is not None:
                progress(label or str(model), done, total)

        on_output = collector.collect(key) if key is not None else None
        return evaluate(model, data, name=label, progress=report_progress, on_output=on_output, **{**options, **extra})

    baselines = baseline_owners()
    labels = _unique([_default_label(model, name, baselines) for model, name in zip(models, given)])
    named_baseline = [
        isinstance(m, str) and m.strip().lower() in baselines and not Path(m).expanduser().is_file() for m in models
    ]
    # Models first: a model knows its task and scale, which the baselines then take (-m bicubic -m x4.safetensors
    # needs no --scale). The results keep the order given.
    order = sorted(range(len(models)), key=lambda i: named_baseline[i])
    done: dict[int, EvaluationResult] = {}
    first: EvaluationResult | None = None
    for index in order:
        model, label = models[index], labels[index]
        extra: dict[str, Any] = {}
        if named_baseline[index] and first is not None and options.get("scale") is None:
            extra = {"task": options.get("task") or first.task, "scale": first.scale if first.scale > 1 else None}
        result = run(model, label, label, **extra)
        result.model = label  # a baseline keeps its own name in evaluate(); the report needs unique ones
        if first is not None and (result.task, result.scale) != (first.task, first.scale):
            raise EvaluationError(
                f"'{result.model}' is {result.task.replace('_', '-')} x{result.scale}, but '{first.model}' is "
                f"{first.task.replace('_', '-')} x{first.scale}: compare models of one task and scale"
            )
        if first is None:  # every image has been seen once: measure the ground truths, then let them go
            first = result
            collector.score_references(_no_reference(result, MetricSet))
        done[index] = result
    results = [done[index] for index in range(len(models))]

    first = results[0]
    task_baselines = tuple(getattr(_task_classes().get(first.task), "baselines", ()))
    baseline = task_baselines[0] if task_baselines and with_input else None
    input_label = f"{baseline}{f' x{first.scale}' if first.scale > 1 else ''} (input)" if baseline else "input"
    input_result = None
    is_baseline = [
        isinstance(m, str) and m.strip().lower() in task_baselines and not Path(m).expanduser().is_file() for m in models
    ]
    if len(results) == 1 and is_baseline[0]:
        baseline = None  # the baseline alone: it is the model, nothing else to show as its input
    if baseline is not None:
        # A model that is the baseline itself is shown once, as the input.
        for index, result in enumerate(results):
            if is_baseline[index]:
                input_result = results.pop(index)
                for crops in collector.crops.values():
                    if result.model in crops:
                        crops[input_label] = crops.pop(result.model)
                break
        if input_result is None:
            scale = first.scale if first.scale > 1 else None
            input_result = run(baseline, baseline, input_label, task=first.task, scale=scale)
    report = Report(results, input_result, input_label, collector)
    if directory is not None:
        report.paths = write_report(
            directory, results, collector, input_result=input_result, input_label=input_label,
            reference_scores=collector.reference_scores, zoom=zoom,
        )  # fmt: skip
    return report


def _default_label(model: Any, name: str | None, baselines: dict[str, str]) -> str:
    if name:
        return name
    if isinstance(model, Path):
        model = str(model)
    if isinstance(model, str):
        key = model.strip().lower()
        if key in baselines and not Path(model).expanduser().is_file():
            return key
        path = Path(model).expanduser()
        return path.stem if path.is_file() else model
    return str(getattr(model, "name", "model"))


def _no_reference(result: EvaluationResult, metric_set: Any) -> Any:
    """The no-reference metrics of *result* as a MetricSet (NIQE of the ground truth), or None."""
    facts = [f for f in result.metric_info if not f.get("needs_reference", True)]
    if not facts:
        return None
    return metric_set([f["name"] for f in facts], border=int(facts[0].get("border") or 0))
