"""The end of a run: final validation, last checkpoint, weights, previews GIF, before/after, store."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from restorekit.train.distributed import barrier
from restorekit.train.reporting import MetricsLog, save_preview, write_gif
from restorekit.train.validation import before_after

if TYPE_CHECKING:
    from restorekit.train.trainer import Trainer


@dataclass
class TrainResult:
    """What a finished run produced."""

    run_dir: Path
    weights: Path | None
    step: int
    metrics: dict[str, float] = field(default_factory=dict)
    stored: Path | None = None


def finish_run(trainer: Trainer, log: MetricsLog | None) -> TrainResult:
    """Validate the final network, write the last checkpoint and, on rank 0, the run's outputs.

    The weights hold the eval network (the EMA copy when there is one): the network the final
    validation scored, so ``restore eval`` on them reproduces the last ``val`` record.
    """
    r = trainer.recipe
    val = trainer.validate(log) if r.data.val is not None else {}
    if trainer.step % r.output.checkpoint_every != 0:
        trainer.save_checkpoint()
    weights = stored = None
    if trainer.main:
        from restorekit.weights import WeightInfo, save_weights

        info = WeightInfo.of(
            trainer.descriptor,
            recipe_name=r.name,
            recipe_digest=trainer.digest,
            metrics=val,
            extra={"steps": str(trainer.step)},
        )
        weights = save_weights(trainer.eval_network(), trainer.run_dir / f"{r.name}.safetensors", info)
        if trainer.previews:
            write_gif(trainer.previews, trainer.run_dir / "previews.gif")
        if r.data.val is not None:
            image = before_after(trainer.task, trainer.task.val_data(**r.data.val), trainer.eval_network(), trainer.device)
            if image is not None:
                save_preview(image, trainer.run_dir / "before_after.png")
        if r.output.store:
            from restorekit.store import add_to_store

            stored = add_to_store(r.name, weights, source="run")
        if log is not None:
            log.write("done", trainer.step, {"weights": str(weights), **val})
            log.close()
        note = f" (stored as '{r.name}')" if stored else ""
        trainer.say(f"[green]done[/] {trainer.step} steps; weights: {weights}{note}")
    barrier(trainer.env)
    return TrainResult(trainer.run_dir, weights, trainer.step, val, stored)
