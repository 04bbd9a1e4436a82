"""Size of a training checkpoint per recipe, and what it is made of.

A checkpoint holds what resuming needs and nothing else: the trained networks (generator, discriminator,
EMA copy), their optimizer states (Adam: two moments per parameter), schedules, scalers, the step and
the RNG states. Frozen loss networks (the perceptual loss's VGG) are rebuilt from their own weights
file on resume and are not in it. The script builds each recipe's trainer at its paper configuration,
takes one optimizer step on a batch of one (so the optimizer states exist; their size does not depend on
the batch), writes the checkpoint to a temporary folder and reports its size.

    python benchmarks/checkpoint_size.py recipes/srgan.toml recipes/esrgan.toml recipes/deblurgan.toml
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import warnings
from pathlib import Path

import torch


def section_mb(obj: object) -> float:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.tell() / 1e6


def measure(recipe_path: str, overrides: list[str]) -> dict[str, float]:
    from restorekit.recipe import load_recipe
    from restorekit.train import checkpoint as ckpt
    from restorekit.train.trainer import Trainer

    settings = [
        "data.batch_size=1",
        "train.accumulate=1",
        "generator.init=null",
        "data.workers=0",
        "data.train.cache=false",
        *overrides,
    ]
    recipe = load_recipe(recipe_path, settings, check_data=False)
    # Random VGG weights cost the same bytes (none: the loss network is not saved) and need no download.
    for side in (recipe.losses.generator, recipe.losses.discriminator):
        for term in side.values():
            if term.name == "perceptual":
                term.args["weights"] = "random"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = Trainer(recipe, quiet=True)
        batch = trainer.task.make_batch(next(iter(trainer._loader(0))), trainer.device, training=True)
        trainer.train_step([batch])
    state = trainer.state()
    with tempfile.TemporaryDirectory() as folder:
        path = ckpt.save_checkpoint(Path(folder) / "step_00000001.ckpt", state)
        total = path.stat().st_size / 1e6
    row = {"total": total}
    for role, weights in state["models"].items():
        row[f"weights:{role}"] = section_mb(weights)
    for role, opt in state["optimizers"].items():
        row[f"optimizer:{role}"] = section_mb(opt)
    loss_params = sum(p.numel() for net in trainer.networks for t in net.terms for p in t.module.parameters())
    row["frozen loss parameters (not saved)"] = loss_params / 1e6
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipes", nargs="+", help="recipe files or registered names")
    parser.add_argument("--set", action="append", default=[], dest="overrides", help="recipe override (repeatable)")
    args = parser.parse_args(argv)
    print("| recipe | checkpoint | of which weights (G / D / EMA) | optimizer states | frozen loss network, not saved |")
    print("|---|---|---|---|---|")
    for name in args.recipes:
        row = measure(name, args.overrides)
        weights = " / ".join(
            f"{row[k]:.1f}" for k in ("weights:generator", "weights:discriminator", "weights:ema") if k in row
        )
        optim = sum(v for k, v in row.items() if k.startswith("optimizer:"))
        frozen = row["frozen loss parameters (not saved)"]
        print(
            f"| `{Path(name).stem}` | {row['total']:.1f} MB | {weights} MB | {optim:.1f} MB | "
            f"{frozen:.1f} M parameters |" if frozen else f"| `{Path(name).stem}` | {row['total']:.1f} MB | {weights} MB | {optim:.1f} MB | none |"
        )
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
