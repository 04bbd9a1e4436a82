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
    """List named models: stored, downloaded from the catalogue, and available to download.

    Examples:

      restore models

      restore models pull realesrgan-x4plus

      restore models add myesrgan converted.safetensors
    """
    if ctx.invoked_subcommand is not None:
        return
    from restorekit.store import list_models, models_dir

    table = Table(title=f"models in {models_dir()}", title_justify="left")
    for column in ("name", "source", "network", "size", "licence", "created", "metrics", "file or URL"):
        # Fold (not crop) the location: a URL or path is only useful whole.
        table.add_column(column, style="bold cyan" if column == "name" else None, overflow="fold")
    for entry in list_models():
        metrics = ", ".join(f"{k} {v:.2f}" for k, v in entry.metrics.items())
        location = str(entry.path) if entry.path else entry.url or ""
        network = entry.arch + (f" x{entry.scale}" if entry.scale else "")
        table.add_row(
            entry.name, entry.source, network, _size(entry.size), entry.licence, entry.created, metrics,
            Text(location),
        )
    console.print(table)


def _size(size: int | None) -> str:
    if size is None:
        return ""
    for unit in ("B", "KB", "MB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


@models_app.command("pull")
@handle_errors
def models_pull(
    name: str = typer.Argument(..., help="A catalogue model ('restore models' lists them)."),
    force: bool = typer.Option(False, "--force", help="Download and convert again even if already stored."),
) -> None:
    """Download a catalogue model, verify its SHA-256, convert it and store it under NAME.

    Offline (RESTOREKIT_OFFLINE=1) nothing is downloaded; a file put by hand where the error message
    says is verified and used.

    Example:

      restore models pull realesrgan-x4plus
    """
    from restorekit.store import pull

    target = pull(name, force=force)
    console.print(f"stored [bold]{name}[/] → {target}")


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
