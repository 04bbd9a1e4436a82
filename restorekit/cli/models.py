"""``restore info`` and ``restore models``: weight files and the model store."""

from __future__ import annotations

import json
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
    app.command("info")(info)
    app.add_typer(models_app, name="models")


@handle_errors
def info(file: Path = typer.Argument(..., help="A restorekit .safetensors weight file.")) -> None:
    """Show what a weight file says about itself, and check that it rebuilds its network.

    Example:

      restore info runs/srresnet/srresnet.safetensors
    """
    from restorekit.weights import load_network

    network, meta = load_network(file)
    params = sum(p.numel() for p in network.parameters())
    table = Table(show_header=False, title=str(file), title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("network", f"{meta.name} ({meta.kind}, plugin {meta.plugin or '?'})"),
        ("arguments", json.dumps(meta.args, sort_keys=True)),
        ("task", meta.task),
        ("scale", f"x{meta.scale}"),
        ("model", _describe(meta.descriptor)),
        ("parameters", f"{params:,}"),
        ("recipe", f"{meta.recipe_name} (digest {meta.recipe_digest[:12]})" if meta.recipe_name else "-"),
        ("metrics", ", ".join(f"{k} {v:.4f}" for k, v in meta.metrics.items()) or "-"),
        ("restorekit", meta.version),
        ("created", meta.created),
    ]
    rows += [(k, v[:200]) for k, v in sorted(meta.extra.items()) if k != "recipe"]
    for key, value in rows:
        table.add_row(key, Text(str(value)))
    console.print(table)


def _describe(descriptor) -> str:  # noqa: ANN001 - a ModelDescriptor (always set by load_network)
    if descriptor is None:
        return "-"
    half = [n for n, ok in (("fp16", descriptor.supports_fp16), ("bf16", descriptor.supports_bf16)) if ok]
    parts = [
        f"{descriptor.in_channels}->{descriptor.out_channels} channels",
        f"sides multiple of {descriptor.size_multiple}",
        f"half precision: {', '.join(half) or 'no'}",
        f"tiling: {descriptor.tiling}" + (f" (margin {descriptor.tile_margin})" if descriptor.tile_margin else ""),
    ]
    return "; ".join(parts)


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
