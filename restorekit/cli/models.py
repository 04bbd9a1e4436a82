"""``restore models``: the model store (``restore info`` lives in :mod:`restorekit.cli.info`).

Listing reads safetensors headers only (:func:`restorekit.store.list_models`) and this module imports
nothing heavy, so ``restore models`` answers without loading torch.

The list is written for an 80-column terminal and for a pipe alike: one line of short columns per model,
then its file or URL on a line of its own, printed whole (never cut or broken by restorekit; a terminal
narrower than a path wraps it, copying and ``grep`` still get it in one piece). ``--wide`` puts every
field of a model on one line, the location last, for wide terminals and scripts.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.cells import cell_len
from rich.text import Text

from restorekit.cli.common import console, err_console, handle_errors

if TYPE_CHECKING:
    from rich.console import Console

    from restorekit.store import StoredModel

#: How each :attr:`~restorekit.store.StoredModel.source` is shown: short words that fit 80 columns.
SOURCE_LABELS = {
    "run": "run",
    "user": "user",
    "plugin": "plugin",
    "catalogue-downloaded": "downloaded",
    "catalogue-available": "available",
}

_GAP = "  "

# No help= here: the listing's docstring (with its examples) is the help of `restore models`.
models_app = typer.Typer(invoke_without_command=True, no_args_is_help=False)


def register(app: typer.Typer) -> None:
    """Add ``restore models`` (list, ``pull``, ``add``) to *app*."""
    app.add_typer(models_app, name="models")


@models_app.callback()
@handle_errors
def models_list(
    ctx: typer.Context,
    wide: bool = typer.Option(
        False, "--wide", "-w", help="One line per model with every field (created, metrics, location last)."
    ),
) -> None:
    """Named weights: trained by 'restore run', added by you, downloaded, or available to download.

    Each model's file or URL is printed whole on its own line; --wide puts all fields on one line.

    'available' models are in a plugin's catalogue: 'restore models pull NAME' downloads one, and 'restore apply --model NAME' does on first use.

    Examples:

      restore models

      restore models --wide | grep realesrgan

      restore models pull realesrgan-x4plus

      restore models add mymodel runs/quickstart/quickstart.safetensors
    """
    if ctx.invoked_subcommand is not None:
        return
    from restorekit.store import list_models, models_dir

    entries = list_models()
    stored = [e for e in entries if e.source != "catalogue-available"]
    if wide:
        _print_wide(entries)
        if not stored:
            _print_how_to_get_one(entries, err_console)  # keep stdout to the table for scripts
        return
    console.print(Text(f"models in {models_dir()}", style="bold"), soft_wrap=True)
    if not stored:
        _print_how_to_get_one(entries, console)
    if entries:
        console.print()
        _print_list(entries)
        console.print()
        _print_footer(entries)


# --- the two layouts --------------------------------------------------------------------------------


def _columns(entry: StoredModel) -> list[str]:
    network = entry.arch + (f" x{entry.scale}" if entry.scale else "")
    return [entry.name, SOURCE_LABELS.get(entry.source, entry.source), network, _size(entry.size), entry.licence]


def _location(entry: StoredModel) -> str:
    return str(entry.path) if entry.path else entry.url or ""


def _details(entry: StoredModel) -> str:
    """Training results of a stored model ('' for the others): when, which recipe, validation metrics."""
    if not entry.metrics:
        return ""
    when = entry.created[:10]
    recipe = f"recipe {entry.recipe}" if entry.recipe else ""
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in entry.metrics.items())
    return ", ".join(part for part in (when, recipe) if part) + f": {metrics}"


def _print_list(entries: list[StoredModel]) -> None:
    """Short columns that fit the terminal, then the location (and results) indented below each model."""
    header = ["name", "source", "network", "size", "licence"]
    rows = [_columns(e) for e in entries]
    widths = _widths([header, *rows])
    # A name too long for the terminal gets a line of its own instead of pushing the columns past the edge.
    rest = sum(widths[1:]) + len(_GAP) * (len(widths) - 1)
    widths[0] = max(len(header[0]), min(widths[0], console.width - rest))
    console.print(_line(header, widths, style="bold"), soft_wrap=True)
    for entry, row in zip(entries, rows):
        if cell_len(row[0]) > widths[0]:
            console.print(Text(row[0], style="bold cyan"), soft_wrap=True)
            row = ["", *row[1:]]
        console.print(_line(row, widths, first_style="bold cyan"), soft_wrap=True)
        # soft_wrap: the location is never cut or broken by rich, only wrapped by the terminal if too long.
        console.print(Text(f"  {_location(entry)}"), soft_wrap=True)
        details = _details(entry)
        if details:
            console.print(Text(f"  {details}", style="dim"), soft_wrap=True)


def _print_wide(entries: list[StoredModel]) -> None:
    """Every field on one line per model, aligned, location last; lines are as long as they need."""
    header = ["name", "source", "network", "size", "licence", "created", "metrics", "file or URL"]
    rows = [
        [
            *_columns(e),
            e.created[:19],
            ", ".join(f"{k} {v:.4g}" for k, v in e.metrics.items()),
            _location(e),
        ]
        for e in entries
    ]
    widths = _widths([header, *rows])
    console.print(_line(header, widths, style="bold"), soft_wrap=True)
    for row in rows:
        console.print(_line(row, widths, first_style="bold cyan"), soft_wrap=True)


def _widths(rows: list[list[str]]) -> list[int]:
    """Terminal cells each column needs (a wide character counts two, as the terminal shows it)."""
    return [max(cell_len(row[i]) for row in rows) for i in range(len(rows[0]))]


def _line(cells: list[str], widths: list[int], *, style: str = "", first_style: str = "") -> Text:
    text = Text(style=style)
    for index, (cell, width) in enumerate(zip(cells, widths)):
        last = index == len(cells) - 1
        padded = cell if last else cell + " " * max(0, width - cell_len(cell))
        text.append(padded, style=first_style if index == 0 else "")
        if not last:
            text.append(_GAP)
    text.rstrip()
    return text


def _print_footer(entries: list[StoredModel]) -> None:
    """What the user can do next with what is listed."""
    tips = [("restore info NAME", "everything about one model"), ("restore apply --model NAME IMAGE", "restore photos")]
    if any(e.source == "catalogue-available" for e in entries):
        tips.append(("restore models pull NAME", "download an 'available' model"))
    _print_pairs(console, tips)


def _print_how_to_get_one(entries: list[StoredModel], out: Console) -> None:
    """An empty store: the three ways to get a model, with commands that work as printed."""
    available = [e.name for e in entries if e.source == "catalogue-available"]
    pick = "realesrgan-x4plus" if "realesrgan-x4plus" in available else (available[0] if available else "NAME")
    out.print("No model is stored yet. Three ways to get one:")
    _print_pairs(out, [
        ("restore run quickstart", "train the quick start (minutes, CPU)"),
        (f"restore models pull {pick}", "download a catalogue model" + (" (below)" if available else "")),
        ("restore models add NAME FILE", "store a restorekit .safetensors file"),
    ])  # fmt: skip
    out.print(Text('The quick start trains on sample photos: pip install "restorekit[samples]"'), soft_wrap=True)


def _print_pairs(out: Console, pairs: list[tuple[str, str]]) -> None:
    """Commands and what they do, aligned; plain lines (no table padding), so pipes get no trailing blanks."""
    width = max(len(command) for command, _ in pairs)
    for command, what in pairs:
        out.print(Text.assemble(f"  {command.ljust(width)}   ", (what, "dim")), soft_wrap=True)


def _size(size: int | None) -> str:
    if size is None:
        return ""
    for unit in ("B", "KB", "MB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


# --- pull and add -------------------------------------------------------------------------------------


@models_app.command("pull")
@handle_errors
def models_pull(
    name: str = typer.Argument(..., help="A catalogue model ('restore models' lists them).", show_default=False),
    force: bool = typer.Option(False, "--force", help="Download and convert again even if already stored."),
) -> None:
    """Download a catalogue model, verify its SHA-256, convert it and store it under NAME.

    A partial download is resumed; a model already stored is not downloaded again (unless --force).

    Offline (RESTOREKIT_OFFLINE=1) nothing is downloaded; a file put by hand where the error message says is verified and used.

    Examples:

      restore models pull realesrgan-x4plus

      restore models pull realesr-general-x4v3 --force
    """
    from restorekit.store import pull

    target = pull(name, force=force)
    console.print(Text(f"stored {name} → {target}"), soft_wrap=True)


@models_app.command("add")
@handle_errors
def models_add(
    name: str = typer.Argument(..., help="Name to store the weights under.", show_default=False),
    file: Path = typer.Argument(..., help="A restorekit .safetensors file.", show_default=False),
) -> None:
    """Add a weight file to the store under NAME (the newest file of a name wins).

    The file is copied; 'restore apply --model NAME' and 'restore eval --model NAME' then find it. A foreign checkpoint (.pth) is converted first with 'restore convert'.

    Examples:

      restore models add mymodel runs/quickstart/quickstart.safetensors

      restore models add esrgan RRDB_ESRGAN_x4.safetensors
    """
    from restorekit.store import add_to_store

    target = add_to_store(name, file)
    console.print(Text(f"stored {name} → {target}"), soft_wrap=True)
