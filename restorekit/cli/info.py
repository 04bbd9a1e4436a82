"""``restore info``: what a model (a store name, a weight file, a foreign checkpoint) is, and proof that it builds."""

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
    from restorekit.plugins import ModelEntry
    from restorekit.weights import WeightInfo


def register(app: typer.Typer) -> None:
    """Add ``restore info`` to *app*."""
    app.command("info")(info)


@handle_errors
def info(
    model: str = typer.Argument(
        ...,
        metavar="MODEL",
        help="A model-store name (as for apply and eval), a restorekit .safetensors file, or a foreign "
        "checkpoint (.pth, .pt, .ckpt, .safetensors).",
        show_default=False,
    ),
) -> None:
    """Show what a model is, and check that its file rebuilds its network.

    MODEL is found as 'restore apply --model' finds it: a file, or a name in the store ('restore models' lists them). A catalogue model that is not downloaded yet is described from the catalogue (network, scale, size, licence, URL) and not downloaded.

    A foreign checkpoint is read as 'restore apply' would read it (restorekit's plugins first, then spandrel with restorekit\\[community]) and shown with what was found: architecture, scale, descriptor.

    Examples:

      restore info realesrgan-x4plus

      restore info quickstart

      restore info runs/quickstart/quickstart.safetensors

      restore info 4x-SwinIR-small.pth
    """
    from restorekit.store import NotDownloadedError, resolve_weights

    try:
        file = resolve_weights(model, download=False)
    except NotDownloadedError as exc:
        _show_catalogue_entry(exc.entry)
        return
    from restorekit.inference.model import is_foreign_checkpoint, load_any

    stored = file != Path(model).expanduser()
    foreign = is_foreign_checkpoint(file)
    network, meta = load_any(file)
    params = sum(p.numel() for p in network.parameters())
    table = Table(show_header=False, title=model if stored else str(file), title_justify="left")
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")  # a path is only useful whole: folded, never cropped
    rows = [("stored", _stored_note(model, file)), ("path", str(file))] if stored else []
    if foreign:
        rows.append(("file", _foreign_note(file, meta)))
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


def _stored_note(name: str, file: Path) -> str:
    """Where a store name came from: trained, added, pulled from the catalogue, or shipped by a plugin."""
    from restorekit.store import models_dir, source_of

    if not file.is_relative_to(models_dir()):
        return f"'{name}' is a file shipped by a plugin"
    how = {"run": "trained by 'restore run'", "user": "added with 'restore models add'",
           "catalogue": "pulled from the catalogue"}  # fmt: skip
    source = source_of(file)
    count = len(list(file.parent.glob("*.safetensors")))
    return f"as '{name}', {how.get(source, source)}" + (f" (the newest of {count} files)" if count > 1 else "")


def _show_catalogue_entry(entry: ModelEntry) -> None:
    """What the catalogue says about a model that is not downloaded; nothing is fetched."""
    from restorekit.store import download_path

    size = f"{entry.size:,} bytes ({entry.size / 1e6:.1f} MB)" if entry.size else "not stated by the catalogue"
    rows = [
        ("status", f"in the catalogue, not downloaded: 'restore models pull {entry.name}' downloads it "
                   f"('restore apply --model {entry.name}' does on first use)"),
        ("network", f"{entry.arch or '?'}" + (f" x{entry.scale}" if entry.scale else "")),
        ("task", entry.task or "-"),
        ("scale", f"x{entry.scale}" if entry.scale else "-"),
        ("size", size),
        ("licence", entry.licence or "not stated"),
        ("URL", entry.url or ""),
        ("SHA-256", entry.sha256 or ""),
        ("homepage", entry.source or "-"),
        ("plugin", entry.plugin),
        ("description", entry.description or "-"),
        ("downloads to", str(download_path(entry))),
    ]  # fmt: skip
    table = Table(show_header=False, title=f"{entry.name} (catalogue)", title_justify="left")
    table.add_column(style="bold", no_wrap=True)
    # The URL and the path are only useful whole: fold them, never crop.
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, Text(value))
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
