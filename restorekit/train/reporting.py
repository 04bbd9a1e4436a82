"""What a run shows and leaves behind: a progress bar, metrics.jsonl, TensorBoard, preview images and GIF."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import Tensor

from restorekit.fileio import atomic_path


class MetricsLog:
    """Append-only JSON lines, plus TensorBoard scalars when the package is installed and wanted."""

    def __init__(self, run_dir: Path, *, tensorboard: bool):
        self.path = run_dir / "metrics.jsonl"
        torn = self.path.is_file() and self.path.stat().st_size > 0 and _last_byte(self.path) != b"\n"
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        if torn:  # a killed run's last line: end it, so the next record stays readable
            self._file.write("\n")
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:
                self._tb = None

    def write(self, kind: str, step: int, values: dict[str, Any]) -> None:
        record = {"kind": kind, "step": step, "time": round(time.time(), 3), **values}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    self._tb.add_scalar(f"{kind}/{key}", value, step)

    def close(self) -> None:
        """Close the file (and TensorBoard writer); closing again does nothing."""
        self._file.close()
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(-1, 2)
        return handle.read(1)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Records of a metrics.jsonl file (a torn last line from a kill is ignored)."""
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def format_duration(seconds: float) -> str:
    """``3h 05m``, ``4m 10s``, ``2.5 days``: a duration as a person reads it."""
    if not math.isfinite(seconds):
        return "unknown"
    seconds = max(0.0, seconds)
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{int(seconds // 3600)}h {int(seconds % 3600 // 60):02d}m"
    if seconds >= 60:
        return f"{int(seconds // 60)}m {int(seconds % 60):02d}s"
    return f"{seconds:.0f}s"


class TrainProgress:
    """Progress of a run: a rich bar in a terminal, plain periodic lines everywhere else.

    Without a terminal (a log file, ``nohup``, CI) a bar only shows when the run ends, so each logged step
    (``output.log_every``) prints one line — step, losses, it/s, elapsed, ETA — and a line is printed
    at least every *plain_every* seconds in between, so a slow recipe's log never falls silent.
    """

    def __init__(
        self,
        total: int,
        start: int,
        *,
        enabled: bool,
        console: Console | None = None,
        plain: bool | None = None,
        plain_every: float = 60.0,
    ):
        self.enabled = enabled
        self.console = console or Console(stderr=True, highlight=False)
        self.plain = (not self.console.is_terminal) if plain is None else plain
        self.total, self.start = total, start
        self.plain_every = plain_every
        self._started = time.perf_counter()
        self._last_line = self._started
        self._losses = ""
        self._rate: float | None = None
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[losses]}"),
            console=self.console,
            disable=not enabled or self.plain,
            transient=False,
        )
        self._task = self._progress.add_task("train", total=total, completed=start, rate="", losses="")

    def __enter__(self) -> TrainProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def update(self, step: int, *, losses: dict[str, float] | None = None, rate: float | None = None) -> None:
        fields: dict[str, Any] = {}
        if losses is not None:
            self._losses = fields["losses"] = " ".join(f"{k} {v:.4g}" for k, v in losses.items())
        if rate is not None:
            self._rate = rate
            fields["rate"] = f"{rate:.2f} it/s"
        self._progress.update(self._task, completed=step, **fields)
        if self.enabled and self.plain:
            now = time.perf_counter()
            if losses is not None or rate is not None or now - self._last_line >= self.plain_every or step == self.total:
                self._plain_line(step, now)

    def _plain_line(self, step: int, now: float) -> None:
        elapsed = now - self._started
        done = step - self.start
        rate = self._rate if self._rate else (done / elapsed if elapsed > 0 and done > 0 else None)
        eta = format_duration((self.total - step) / rate) if rate else "unknown"
        speed = f"{rate:.3g} it/s" if rate else "- it/s"
        losses = f"  {self._losses}" if self._losses else ""
        percent = 100 * step / self.total if self.total else 100.0
        self.console.print(
            f"step {step}/{self.total} ({percent:.0f}%){losses}  {speed}  elapsed {format_duration(elapsed)}  ETA {eta}",
            highlight=False,
            soft_wrap=True,
        )
        self._last_line = now

    def log(self, message: str) -> None:
        if self.enabled:
            self._progress.console.print(message, highlight=False, soft_wrap=True)


class DurationEstimate:
    """The expected duration of a run, measured over its first steps after a warm-up.

    The first *warmup* steps are not counted (allocations, oneDNN/cuDNN kernel selection); then the
    estimate is ready after *min_steps* timed steps, or after *min_seconds* for slow recipes.
    """

    def __init__(self, start: int, total: int, *, warmup: int = 2, min_steps: int = 5, min_seconds: float = 20.0):
        self.start, self.total = start, total
        self.warmup, self.min_steps, self.min_seconds = warmup, min_steps, min_seconds
        self._t0: float | None = None
        self._s0 = start
        self.done = False

    def observe(self, step: int, now: float | None = None) -> float | None:
        """Record that *step* finished; the seconds per step once measured (once), else None."""
        if self.done:
            return None
        now = time.perf_counter() if now is None else now
        if step - self.start == self.warmup or (self._t0 is None and step - self.start > self.warmup):
            self._t0, self._s0 = now, step
            return None
        if self._t0 is None:
            return None
        timed, elapsed = step - self._s0, now - self._t0
        if timed >= self.min_steps or (timed >= 1 and elapsed >= self.min_seconds):
            self.done = True
            return elapsed / timed
        return None


def panel_psnr(image: Tensor, target: Tensor) -> float:
    """RGB PSNR (dB) of an image against its target after rounding both to 8 bits, as a saved preview shows."""
    a = (image.float().clamp(0, 1) * 255).round()
    b = (target.float().clamp(0, 1) * 255).round()
    h, w = min(a.shape[-2], b.shape[-2]), min(a.shape[-1], b.shape[-1])
    mse = ((a[..., :h, :w] - b[..., :h, :w]) ** 2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _fit(draw: Any, text: str, width: int, size: int) -> tuple[str, Any]:
    """*text* in the largest font up to *size* that fits *width* pixels (cut with an ellipsis at 8 px)."""
    for s in range(size, 7, -1):
        font = _font(s)
        if draw.textlength(text, font=font) <= width:
            return text, font
    font = _font(8)
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…", font


def labelled_strip(panels: Sequence[Any], *, caption: str | None = None, target: Tensor | None = None) -> Any:
    """The panels side by side as one RGB picture, each under its label; a caption line across the top.

    Args:
        panels: :class:`~restorekit.tasks.base.PreviewPanel` objects (label, ``(3, H, W)`` image, scored).
        caption: One line above everything (``step 800 · psnr_y 32.05 dB, bicubic 31.47``).
        target: The reference image: each scored panel's label gets its PSNR against it.

    Returns:
        A ``PIL.Image.Image``.

    Example:
        >>> import torch
        >>> from restorekit.tasks.base import PreviewPanel
        >>> hr = torch.rand(3, 32, 32)
        >>> strip = labelled_strip([PreviewPanel("output", hr), PreviewPanel("HR", hr, scored=False)],
        ...                        caption="step 1", target=hr)
        >>> strip.size[0]
        64
    """
    from PIL import Image, ImageDraw

    arrays = [(p.image.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy() for p in panels]
    heights = [a.shape[0] for a in arrays]
    widths = [a.shape[1] for a in arrays]
    total_w, image_h = sum(widths), max(heights)
    size = int(min(16, max(9, min(widths) // 10)))
    line = size + 4
    labels = []
    for panel in panels:
        text = [panel.label]
        if panel.scored and target is not None:
            text.append(f"PSNR {panel_psnr(panel.image, target):.2f} dB")
        labels.append(text)
    rows = max(len(t) for t in labels)
    top = (line if caption else 0) + rows * line + 2
    canvas = Image.new("RGB", (total_w, top + image_h), (24, 24, 24))
    draw = ImageDraw.Draw(canvas)
    if caption:
        text, font = _fit(draw, caption, total_w - 6, size)
        draw.text((3, 2), text, fill=(255, 255, 255), font=font)
    x = 0
    for array, text_lines, width in zip(arrays, labels, widths):
        y = (line if caption else 0) + 1
        for k, text in enumerate(text_lines):
            fitted, font = _fit(draw, text, width - 6, size)
            draw.text((x + 3, y), fitted, fill=(255, 255, 255) if k == 0 else (255, 214, 102), font=font)
            y += line
        canvas.paste(Image.fromarray(array), (x, top))
        if x:  # a thin separator between panels
            draw.line([(x, top), (x, top + image_h - 1)], fill=(24, 24, 24))
        x += width
    return canvas


def save_picture(picture: Any, path: Path) -> None:
    """Write a PIL picture as PNG, atomically."""
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")


def save_preview(image: Tensor, path: Path) -> None:
    """A (3, H, W) float image in [0, 1] as an 8-bit PNG, atomically."""
    from PIL import Image

    array = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def write_gif(frames: list[Path], path: Path, *, duration_ms: int = 600) -> None:
    """An animated GIF of the preview images over the run."""
    from PIL import Image

    if not frames:
        return
    images = [Image.open(p).convert("RGB") for p in frames]
    size = images[-1].size
    images = [im if im.size == size else im.resize(size) for im in images]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
