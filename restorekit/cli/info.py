"""``restore info``: what a weight file or a foreign checkpoint is, and proof that it builds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table
from rich.text import Text

from restorekit.cli.common import console, handle_errors

if TYPE_CHECKING:
    from restorekit.descriptor import ModelDescriptor
    from restorekit.weights import WeightInfo


def register(app: typer.Typer) -> None:
    """Add ``restore info`` to *app*."""
    app.command("info")(info)


@handle_errors
def info(
    file: Path = typer.Argument(
        ..., help="A restorekit .safetensors weight file, or a foreign checkpoint (.pth, .pt, .ckpt, .safetensors)."
    ),
) -> None:
    """Show what a weight file says about itself, and check that it rebuilds its network.

    A foreign checkpoint is read as 'restore apply' would read it (restorekit's plugins first, then
    spandrel with restorekit[community]) and shown with what was found: architecture, scale, descriptor.

    Examples:

      restore info runs/srresnet/srresnet.safetensors

      restore info 4x-SwinIR-small.pth
    """
    from restorekit.inference.model import is_foreign_checkpoint, load_any

    foreign = is_foreign_checkpoint(file)
    network, meta = load_any(file)
    params = sum(p.numel() for p in network.parameters())
    table = Table(show_header=False, title=str(file), title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    rows = [("file", _foreign_note(file, meta))] if foreign else []
    rows += [
        ("network", f"{meta.name} ({meta.kind}, plugin {meta.plugin or '?'})"),
        ("arguments", json.dumps(meta.args, sort_keys=True) if meta.args or not foreign else "(inferred by spandrel)"),
        ("task", meta.task),
        ("scale", f"x{meta.scale}"),
        ("model", describe_model(meta.descriptor)),
        ("parameters", f"{params:,}"),
    ]
    if not foreign:
        rows += [
            ("recipe", f"{meta.recipe_name} (digest {meta.recipe_digest[:12]})" if meta.recipe_name else "-"),
            ("metrics", ", ".join(f"{k} {v:.4f}" for k, v in meta.metrics.items()) or "-"),
            ("restorekit", meta.version),
            ("created", meta.created),
        ]
    rows += [(k, v[:200]) for k, v in sorted(meta.extra.items()) if k != "recipe"]
    for key, value in rows:
        table.add_row(key, Text(str(value)))
    console.print(table)


def _foreign_note(file: Path, meta: WeightInfo) -> str:
    """Say plainly that this is not a restorekit file, who read it, and what the user can do with it."""
    if meta.extra.get("loaded_by") == "spandrel":
        return (
            f"not a restorekit weight file: spandrel {meta.extra.get('spandrel_version', '')} reads it as "
            f"{meta.extra.get('spandrel_architecture', meta.name)}; use it directly "
            f"(restore apply/eval --model {file})"
        )
    return (
        f"not a restorekit weight file: plugin {meta.extra.get('converted_by') or '?'} converts it to "
        f"'{meta.name}'; use it directly or write a restorekit file with 'restore convert {file}'"
    )


def describe_model(descriptor: ModelDescriptor | None) -> str:
    """The descriptor as one line: channels, size multiple, half precision, tiling."""
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
