"""The ``restore`` command line.

Each command group lives in its own module; heavy imports (torch) happen inside the commands, so
``restore --help`` answers at once.
"""

from __future__ import annotations

from typing import Optional

import typer

from restorekit._version import __version__
from restorekit.cli import apply, components, convert, evaluate, info, models, recipes

app = typer.Typer(
    name="restore",
    help=(
        "restorekit: super-resolution and deblurring with GANs.\n\n"
        "Train from a recipe, restore photos of any size, reproduce published PSNR/SSIM tables.\n\n"
        "Examples:\n\n"
        "  restore run recipes/quickstart.toml\n\n"
        "  restore apply --model srresnet photo.jpg\n\n"
        "  restore eval --model bicubic --data ../shared/data/sr-bench/Set5/HR --scale 4"
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"restorekit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(  # noqa: UP007 - typer needs Optional on 3.11
        None, "--version", "-V", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """restorekit command line."""


components.register(app)
recipes.register(app)
info.register(app)
models.register(app)
convert.register(app)
apply.register(app)
evaluate.register(app)


def main() -> None:
    """Entry point of the ``restore`` script."""
    app()
