"""A run's state on disk: the checkpoint payload, resuming from it, and the run folder.

The payload layout is the one every version of the trainer has written — ``models``, ``optimizers``,
``schedulers``, ``scalers`` keyed by network role, the EMA weights under ``models.ema``, plus ``step``,
``rng``, ``architecture``, ``recipe``, ``best``, ``last_val`` and ``previews`` — so old checkpoints resume.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from restorekit.recipe import recipe_to_toml
from restorekit.train import checkpoint as ckpt
from restorekit.train.distributed import barrier
from restorekit.train.errors import TrainingError
from restorekit.train.networks import load_network_state, network_state

if TYPE_CHECKING:
    from restorekit.recipe.schema import Recipe
    from restorekit.train.trainer import Trainer


def architecture(recipe: Recipe) -> str:
    """The networks' registry names and arguments: a checkpoint must match them to be resumed."""
    return json.dumps(
        {
            "generator": [recipe.generator.name, recipe.generator.args],
            "discriminator": [recipe.discriminator.name, recipe.discriminator.args] if recipe.discriminator else None,
        },
        sort_keys=True,
    )


def run_state(trainer: Trainer) -> dict[str, Any]:
    """Everything a resumed run needs, in the checkpoint layout every version has written."""
    sections = network_state(trainer.networks)
    if trainer.ema is not None:
        sections["models"]["ema"] = trainer.ema.state_dict()
    return {
        "step": trainer.step,
        "recipe_digest": trainer.digest,
        "recipe": recipe_to_toml(trainer.recipe),
        "architecture": trainer.architecture(),
        **sections,
        "rng": ckpt.capture_rng(),
        "best": dict(trainer.best),
        "last_val": dict(trainer.last_val),
        "baseline": dict(trainer.baseline),
        "previews": [str(p) for p in trainer.previews],
    }


def load_run_state(trainer: Trainer, payload: dict[str, Any], source: Path) -> None:
    """Continue *trainer* from a checkpoint's *payload* (read from *source*, named in messages).

    Checkpoints of every earlier version load: the network sections keep their layout
    (:data:`restorekit.train.networks.CHECKPOINT_SECTIONS`).
    """
    if payload.get("architecture") != trainer.architecture():
        raise TrainingError(
            f"{source}: the checkpoint was trained with another architecture ({payload.get('architecture')}); "
            "resume with the recipe it was made with, or start a new run folder"
        )
    if payload.get("recipe_digest") != trainer.digest:
        trainer.say(f"[yellow]note:[/] the recipe changed since {source.name}; continuing with the new settings")
    load_network_state(trainer.networks, payload, str(source))
    if trainer.ema is not None:
        if "ema" not in payload["models"]:
            raise TrainingError(f"{source}: the checkpoint has no EMA weights but train.ema is set")
        trainer.ema.load_state_dict(payload["models"]["ema"])
    trainer.step = int(payload["step"])
    trainer.best = dict(payload.get("best", {}))
    trainer.last_val = dict(payload.get("last_val", {}))
    trainer.baseline = dict(payload.get("baseline", {}))  # older checkpoints lack it: measured again
    trainer.previews = [Path(p) for p in payload.get("previews", []) if Path(p).is_file()]
    ckpt.restore_rng(payload["rng"])


def prepare_run_dir(trainer: Trainer, *, resume: bool, resume_from: Path | None) -> None:
    """Create the run folder; resume from a checkpoint, or refuse to overwrite a run's checkpoints."""
    if resume_from is not None:
        payload = ckpt.load_checkpoint(resume_from) if resume_from.is_file() else None
        if payload is None:
            raise TrainingError(f"{resume_from}: no such checkpoint")
        trainer.load_state(payload, resume_from)
        trainer.say(f"resuming from {resume_from} (step {trainer.step})")
    elif resume:
        found = ckpt.newest_valid(trainer.ckpt_dir)
        if found is None:
            trainer.say(f"no checkpoint in {trainer.ckpt_dir}; starting a new run")
        else:
            path, payload = found
            trainer.load_state(payload, path)
            trainer.say(f"resuming from {path} (step {trainer.step})")
    elif ckpt.list_checkpoints(trainer.ckpt_dir):
        raise TrainingError(
            f"{trainer.run_dir}: holds checkpoints of an earlier run; add --resume to continue it, "
            f"or choose another folder with --set output.dir=..."
        )
    if trainer.main:
        (trainer.run_dir / "previews").mkdir(parents=True, exist_ok=True)
        for folder in (trainer.ckpt_dir, trainer.run_dir, trainer.run_dir / "previews"):
            ckpt.remove_temporaries(folder)  # left by a killed run; only rank 0 writes here
        from restorekit.fileio import atomic_write_text

        atomic_write_text(trainer.run_dir / "recipe.toml", recipe_to_toml(trainer.recipe))
    barrier(trainer.env)
