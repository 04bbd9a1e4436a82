"""``restore models``: the model store (``restore info`` lives in :mod:`restorekit.cli.info`)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from restorekit.cli.common import console, handle_errors

models_app = typer.Typer(
    help="Named weights: those trained by 'restore run', added by you, or offered by plugins.",
    invoke_without_command=True,
    no_args_is_help=False,
)


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")


@models_app.callback()
@handle_errors
def models_list(ctx: typer.Context) -> None:
    """List named models (newest stored file per name).

    Examples:

      restore models

      restore models add myesrgan converted.safetensors
    """
    if ctx.invoked_subcommand is not None:
        return
    from restorekit.store import list_models, models_dir

    table = Table(title=f"models in {models_dir()}", title_justify="left")
    for column in ("name", "source", "created", "metrics", "file"):
        table.add_column(column, style="bold cyan" if column == "name" else None)
    for entry in list_models():
        metrics = ", ".join(f"{k} {v:.2f}" for k, v in entry.metrics.items())
        location = str(entry.path) if entry.path else entry.url or ""
        table.add_row(entry.name, entry.source, entry.created, metrics, Text(location))
    console.print(table)


@models_app.command("add")
@handle_errors
def models_add(
    name: str = typer.Argument(..., help="Name to store the weights under."),
    file: Path = typer.Argument(..., help="A restorekit .safetensors file."),
) -> None:
    """Add a weight file to the store under NAME (the newest file of a name wins)."""
    from restorekit.store import add_to_store

    target = add_to_store(name, file)
    console.print(f"stored [bold]{name}[/] → {target}")
