"""The end of a run: final validation, last checkpoint, weights, previews GIF, before/after, store."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from restorekit.train.distributed import barrier
from restorekit.train.reporting import MetricsLog, labelled_strip, panel_psnr, save_picture, write_gif
from restorekit.train.validation import before_after_parts

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
            write_gif(gif_frames(trainer.previews), trainer.run_dir / "previews.gif")
        if r.data.val is not None:
            write_before_after(trainer)
        if r.output.store:
            from restorekit.store import add_to_store

            stored = add_to_store(r.name, weights, source="run")
        if log is not None:
            log.write("done", trainer.step, {"weights": str(weights), **val})
            log.close()
        for line in summary_lines(trainer, val, weights, stored):
            trainer.say(line)
    barrier(trainer.env)
    return TrainResult(trainer.run_dir, weights, trainer.step, val, stored)


def gif_frames(previews: list[Path]) -> list[Path]:
    """The previews the GIF shows: from the first trained one (step 0 is the untrained network's noise)."""
    trained = [p for p in previews if p.name != "step_00000000.png"]
    return trained or previews


def metric_verdict(name: str, value: float, baseline: float) -> str:
    """``+0.58 better`` / ``-0.31 worse`` / ``equal``, in the metric's own direction."""
    higher = True
    try:
        from restorekit.metrics.registry import metric_registry

        higher = metric_registry().get(name).higher_is_better
    except Exception:  # noqa: BLE001 - an unregistered metric (a plugin task's own): higher is better
        pass
    diff = value - baseline
    if diff == 0:
        return "equal"
    better = diff > 0 if higher else diff < 0
    return f"{diff:+.4g} {'better' if better else 'worse'}"


def summary_lines(trainer: Trainer, val: dict[str, float], weights: Path | None, stored: Path | None) -> list[str]:
    """The end-of-run summary: final metrics against the baseline, where the weights are, how to apply them."""
    r = trainer.recipe
    lines = [f"[green]done[/]: {trainer.step} steps of '{r.name}'"]
    if val:
        name = trainer.baseline_name
        worse = []
        for key, value in val.items():
            if key in trainer.baseline:
                verdict = metric_verdict(key, value, trainer.baseline[key])
                lines.append(f"  {key:<10} {value:9.4f}   {name} {trainer.baseline[key]:9.4f}   {verdict}")
                if verdict.endswith("worse"):
                    worse.append(key)
            else:
                lines.append(f"  {key:<10} {value:9.4f}")
        primary = trainer.task.primary_metric
        if primary in worse:
            lines.append(
                f"[yellow]the model is below the {name} baseline on {primary}[/]: train longer (--set train.steps=...), "
                "on more data, or start from a catalogue model (--set generator.init=NAME)"
            )
        elif worse:
            lines.append(f"[yellow]below the {name} baseline on {', '.join(worse)}[/]")
    if weights is not None:
        where = f"{weights}" + (f" (stored as '{r.name}')" if stored else "")
        lines.append(f"weights: {where}")
        model = r.name if stored else str(weights)
        example = "photo.jpg"
        lines.append(f"apply them: restore apply --model {model} {example}")
    return lines


def write_before_after(trainer: Trainer) -> None:
    """``before_after.png``: the baseline and the restored first validation image, labelled, with PSNR."""
    r = trainer.recipe
    parts = before_after_parts(trainer.task, trainer.task.val_data(**r.data.val), trainer.eval_network(), trainer.device)
    if parts is None:
        return
    from restorekit.tasks.base import PreviewPanel

    base, out, target, name = parts
    scored = target is not None and target.shape[-2:] == out.shape[-2:]
    panels = [PreviewPanel(name, base, scored=scored), PreviewPanel(f"{r.name} (step {trainer.step})", out, scored=scored)]
    caption = None
    if scored:
        gain = panel_psnr(out, target) - panel_psnr(base, target)
        caption = f"restored: {gain:+.2f} dB RGB PSNR over {name} (against the original)"
    save_picture(labelled_strip(panels, caption=caption, target=target if scored else None), trainer.run_dir / "before_after.png")
