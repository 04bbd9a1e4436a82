"""``restore check`` and ``restore run``: validate and train recipes."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.syntax import Syntax

from restorekit.cli.common import EXIT_USAGE, console, err_console, fail, handle_errors
from restorekit.fileio import printable

SET_HELP = "Override a recipe field: --set train.steps=100 --set generator.args.num_blocks=4 (repeatable)."


def register(app: typer.Typer) -> None:
    app.command("check")(check)
    app.command("run")(run)
    app.command("resume")(resume)


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
    recipe: str = typer.Argument(
        ..., help="Recipe file, the name of a registered recipe, or (with --resume) a run folder."
    ),
    set_: list[str] = typer.Option([], "--set", "-s", help=SET_HELP),
    resume: bool = typer.Option(
        False, "--resume", help="Continue from the newest valid checkpoint of the run (give the run folder, or the recipe)."
    ),
    resume_from: Optional[Path] = typer.Option(  # noqa: UP007
        None, "--resume-from", help="Continue from this checkpoint file.", dir_okay=False
    ),
    with_prerequisites: bool = typer.Option(
        False,
        "--with-prerequisites",
        help="First train the recipes it starts from (generator.init naming a recipe) whose weights are not "
        "stored; stored ones are skipped. --set applies to them too (but not name or generator.init).",
    ),
) -> None:
    """Train a recipe: checkpoints, validation, previews, and final .safetensors weights.

    The weights are added to the model store under the recipe's name, so that
    'restore apply --model NAME' finds them. Progress is a bar in a terminal and plain lines in a
    log file; after a few steps the run says how long it will take. Ctrl-C stops after the current
    step with a checkpoint and the command that resumes (exit code 130).

    Examples:

      restore run recipes/quickstart.toml

      restore run recipes/srresnet.toml --set train.steps=2000 --set data.batch_size=8

      restore run --resume runs/quickstart

      restore run recipes/srgan.toml --with-prerequisites
    """
    from restorekit.recipe import load_recipe
    from restorekit.recipe.stages import train_prerequisites

    folder = _run_folder(recipe)
    if folder is not None:
        if not resume and resume_from is None:
            fail(f"{printable(folder)} is a run folder: continue it with 'restore resume {folder}'", EXIT_USAGE)
        _resume_folder(folder, set_, resume_from)
        return
    # A stage the recipe starts from (srgan: srresnet) is trained first, or named with the command to run.
    train_prerequisites(
        recipe, set_, run=with_prerequisites,
        train_stage=lambda stage: _train(stage, resume=True, resume_from=None, overrides=None),
    )  # fmt: skip
    resolved = load_recipe(recipe, set_)
    _train(resolved, resume=resume or resume_from is not None, resume_from=resume_from, overrides=None)


@handle_errors
def resume(
    run_dir: Path = typer.Argument(..., help="The run folder (runs/NAME): it holds recipe.toml and checkpoints/.", file_okay=False),
    set_: list[str] = typer.Option(
        [], "--set", "-s", help="Change a setting on resume (e.g. --set train.steps=5000); recorded in metrics.jsonl."
    ),
    resume_from: Optional[Path] = typer.Option(  # noqa: UP007
        None, "--resume-from", help="Continue from this checkpoint file instead of the newest.", dir_okay=False
    ),
) -> None:
    """Continue a stopped run from its own recipe.toml and newest valid checkpoint.

    The --set flags the run was started with are already in its recipe.toml: nothing needs to be
    repeated. A --set given here changes the run from now on; it is recorded (a 'resume' line in
    metrics.jsonl) and kept in recipe.toml for the next resume. Networks cannot change on resume.

    Examples:

      restore resume runs/quickstart

      restore resume runs/srgan --set train.steps=300000
    """
    folder = _run_folder(str(run_dir))
    if folder is None:
        fail(f"{printable(run_dir)}: not a run folder (no recipe.toml in it)", EXIT_USAGE)
    _resume_folder(folder, set_, resume_from)


def _run_folder(ref: str) -> Path | None:
    """*ref* as a run folder (a directory holding ``recipe.toml``), else None."""
    path = Path(ref).expanduser()
    return path if path.is_dir() and (path / "recipe.toml").is_file() else None


def _resume_folder(folder: Path, overrides: list[str], resume_from: Path | None) -> None:
    from restorekit.recipe import load_recipe

    resolved = load_recipe(folder / "recipe.toml", overrides)
    if Path(resolved.output.dir.format(name=resolved.name)).resolve() != folder.resolve():
        # The folder was moved or is given from another working directory: it is still the run.
        resolved = resolved.model_copy(update={"output": resolved.output.model_copy(update={"dir": str(folder)})})
    _train(resolved, resume=True, resume_from=resume_from, overrides=list(overrides), command_dir=folder)


def _train(
    resolved: Any, *, resume: bool, resume_from: Path | None, overrides: list[str] | None, command_dir: Path | None = None
) -> None:
    from restorekit.train import train
    from restorekit.train.errors import TrainingStopped

    run_dir = command_dir or Path(resolved.output.dir.format(name=resolved.name))
    try:
        train(
            resolved,
            resume=resume,
            resume_from=resume_from,
            resume_overrides=overrides,
            resume_command=f"restore resume {shlex.quote(str(run_dir))}",
        )
    except TrainingStopped as stop:
        err_console.print(f"[yellow]{escape(str(stop))}[/]", soft_wrap=True, highlight=False)
        raise typer.Exit(stop.exit_code) from None
