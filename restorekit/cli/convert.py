"""``restore convert``: a foreign checkpoint (ESRGAN, Real-ESRGAN, ...) to a restorekit weight file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table
from rich.text import Text

from restorekit.cli.common import console, handle_errors


def register(app: typer.Typer) -> None:
    """Add ``restore convert`` to *app*."""
    app.command("convert")(convert)


@handle_errors
def convert(
    src: Path = typer.Argument(..., metavar="IN", help="Foreign checkpoint: .pth, .pt, .ckpt or .safetensors."),
    dst: Optional[Path] = typer.Argument(  # noqa: UP007 - typer needs Optional on 3.11
        None,
        metavar="OUT",
        help="restorekit .safetensors to write; default IN with the suffix .safetensors "
        "(IN.restorekit.safetensors when IN is a .safetensors).",
        show_default=False,
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists."),
    scale: Optional[int] = typer.Option(  # noqa: UP007
        None, "--scale", help="Hint: the checkpoint's scale, where tensor shapes cannot tell.", show_default=False
    ),
    arch: Optional[str] = typer.Option(  # noqa: UP007
        None, "--arch", help="Hint: the generator (registry name) the checkpoint is for.", show_default=False
    ),
) -> None:
    """Convert a community checkpoint into a restorekit .safetensors that rebuilds its network alone.

    The file is read without unpickling code (torch.load weights_only); the plugins recognise the key
    layout (ESRGAN old/new, BasicSR / Real-ESRGAN) and infer the architecture from tensor shapes.

    Examples:

      restore convert RRDB_ESRGAN_x4.pth

      restore convert RealESRGAN_x2plus.pth models/realesrgan-x2.safetensors --overwrite

      restore convert PAN_x3.pth --arch pan --scale 3
    """
    from restorekit.convert import convert_file
    from restorekit.weights import read_info

    hints = {key: value for key, value in (("scale", scale), ("arch", arch)) if value is not None}
    out = convert_file(src, dst, overwrite=overwrite, hints=hints)
    info = read_info(out)
    table = Table(show_header=False, title=f"{src} -> {out}", title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in (
        ("network", f"{info.name} (plugin {info.plugin or '?'})"),
        ("arguments", json.dumps(info.args, sort_keys=True)),
        ("scale", f"x{info.scale}"),
        ("layout", info.extra.get("source_layout") or "-"),
        ("converted by", f"plugin {info.extra.get('converted_by') or '?'}"),
        ("written", str(out)),
    ):
        table.add_row(key, Text(value))
    console.print(table)
