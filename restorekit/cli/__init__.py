"""The ``restore`` command line.

Each command group lives in its own module; heavy imports (torch) happen inside the commands, so
``restore --help`` answers at once.
"""

from __future__ import annotations

from typing import Optional

import typer

from restorekit._version import __version__
from restorekit.cli import apply, compare, components, convert, evaluate, info, models, prepare, recipes
from restorekit.cli import serve
from restorekit.cli import degrade

app = typer.Typer(
    name="restore",
    # Every example here works on a fresh install, or its comment names what it needs
    # (tests/test_cli_help.py parses each one against the commands' real options).
    help=(
        "restorekit: super-resolution and deblurring with GANs.\n\n"
        "Train from a recipe, restore photos of any size, reproduce published PSNR/SSIM tables. "
        "'restore COMMAND --help' shows a command's options and examples.\n\n"
        "Examples:\n\n"
        "  # restore a photo 4x with Real-ESRGAN (67 MB, downloaded on first use)\n"
        "  restore apply --model realesrgan-x4plus photo.jpg\n\n"
        "  # the quick start: trains in minutes on a CPU; needs restorekit\\[samples]\n"
        "  restore run quickstart\n"
        "  restore apply --model quickstart photo.jpg\n\n"
        "  # stored and downloadable models\n"
        "  restore models\n\n"
        "  # PSNR/SSIM of bicubic on a folder of high-resolution images\n"
        "  restore eval --model bicubic --data Set5/HR --scale 4"
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
serve.register(app)
compare.register(app)
prepare.register(app)
degrade.register(app)


def main() -> None:
    """Entry point of the ``restore`` script."""
    app()
