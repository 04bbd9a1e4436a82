"""What a run shows and leaves behind: a progress bar, metrics.jsonl, TensorBoard, preview images and GIF."""

from __future__ import annotations

import json
import time
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
        self._file.close()
        if self._tb is not None:
            self._tb.close()


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


class TrainProgress:
    """A rich progress bar with the latest losses and the step rate."""

    def __init__(self, total: int, start: int, *, enabled: bool, console: Console | None = None):
        self.enabled = enabled
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[losses]}"),
            console=console,
            disable=not enabled,
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
            fields["losses"] = " ".join(f"{k} {v:.4g}" for k, v in losses.items())
        if rate is not None:
            fields["rate"] = f"{rate:.2f} it/s"
        self._progress.update(self._task, completed=step, **fields)

    def log(self, message: str) -> None:
        if self.enabled:
            self._progress.console.print(message, highlight=False)


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
