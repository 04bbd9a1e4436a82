"""``restore check`` and ``restore run``: validate and train recipes."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.syntax import Syntax

from restorekit.cli.common import console, handle_errors

SET_HELP = "Override a recipe field: --set train.steps=100 --set generator.args.num_blocks=4 (repeatable)."


def register(app: typer.Typer) -> None:
    app.command("check")(check)
    app.command("run")(run)


@handle_errors
def check(
    recipe: str = typer.Argument(..., help="Recipe file (or the name of a registered recipe)."),
    set_: list[str] = typer.Option([], "--set", "-s", help=SET_HELP),
) -> None:
    """Validate a recipe and print it fully resolved (extends and --set applied).

    Every problem is reported in one run, with file, key path and a suggestion; exit code 2.

    Examples:

      restore check recipes/srgan.toml

      restore check srresnet --set train.steps=1000
    """
    from restorekit.recipe import load_recipe, recipe_digest, recipe_to_toml

    resolved = load_recipe(recipe, set_)
    console.print(Syntax(recipe_to_toml(resolved), "toml", theme="ansi_dark", background_color="default"))
    console.print(f"[green]ok[/] {resolved.name} (digest {recipe_digest(resolved)[:12]})")


@handle_errors
def run(
    recipe: str = typer.Argument(..., help="Recipe file (or the name of a registered recipe)."),
    set_: list[str] = typer.Option([], "--set", "-s", help=SET_HELP),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest valid checkpoint of the run."),
    resume_from: Optional[Path] = typer.Option(  # noqa: UP007
        None, "--resume-from", help="Continue from this checkpoint file.", dir_okay=False
    ),
) -> None:
    """Train a recipe: checkpoints, validation, previews, and final .safetensors weights.

    The weights are added to the model store under the recipe's name, so that
    'restore apply --model NAME' finds them.

    Examples:

      restore run recipes/quickstart.toml

      restore run recipes/srresnet.toml --set train.steps=2000 --set data.batch_size=8

      restore run recipes/srgan.toml --resume
    """
    from restorekit.recipe import load_recipe
    from restorekit.train import train

    resolved = load_recipe(recipe, set_)
    train(resolved, resume=resume or resume_from is not None, resume_from=resume_from)
