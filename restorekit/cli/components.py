"""``restore list`` and ``restore plugins``: what is installed."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table
from rich.text import Text

from restorekit.cli.common import console, err_console, fail, handle_errors

KIND_NAMES = {
    "generator": "generators",
    "discriminator": "discriminators",
    "loss": "losses",
    "task": "tasks",
    "recipe": "recipes",
}


def register(app: typer.Typer) -> None:
    app.command("list")(list_components)
    app.command("plugins")(list_plugins)


@handle_errors
def list_components(
    kind: Optional[str] = typer.Argument(  # noqa: UP007
        None, help="generators, discriminators, losses, tasks or recipes (singular works too); all if omitted."
    ),
) -> None:
    """List registered components with the plugin each came from.

    Examples:

      restore list

      restore list generators

      restore list recipes
    """
    from restorekit.plugins import get_plugins
    from restorekit.registry import KINDS

    plugins = get_plugins()
    kinds = (*KINDS, "recipes")
    if kind is not None:
        wanted = KIND_NAMES.get(kind, kind)
        if wanted not in kinds:
            fail(f"unknown kind '{kind}'; choose from {', '.join(kinds)}")
        kinds = (wanted,)
    table = Table(title="restorekit components", title_justify="left")
    table.add_column("name", style="bold cyan", no_wrap=True)
    table.add_column("kind")
    table.add_column("plugin", style="magenta")
    table.add_column("description")
    for k in kinds:
        singular = next(s for s, p in KIND_NAMES.items() if p == k)
        if k == "recipes":
            for entry in sorted(plugins.recipes.values(), key=lambda e: e.name):
                table.add_row(entry.name, singular, entry.plugin, Text(entry.description))
        else:
            for comp in plugins.registry(k):
                table.add_row(comp.name, singular, comp.plugin, Text(comp.description))
    console.print(table)
    _warn_broken(plugins)


def _warn_broken(plugins) -> None:
    broken = [i for i in plugins.info.values() if i.state == "broken"]
    for info in broken:
        err_console.print(Text.assemble(("warning:", "yellow"), f" plugin '{info.name}' is broken: {info.error}"))


@handle_errors
def list_plugins() -> None:
    """List installed plugins: distribution, version, state (loaded, broken, disabled) and what they add.

    A broken plugin is shown with its error; the others keep working. RESTOREKIT_DISABLE_PLUGINS=name,... blocks plugins, RESTOREKIT_ONLY_PLUGINS=name,... loads only those (and the core).

    Examples:

      restore plugins

      RESTOREKIT_DISABLE_PLUGINS=realesrgan restore plugins
    """
    from restorekit.plugins import get_plugins

    plugins = get_plugins()
    table = Table(title="restorekit plugins", title_justify="left")
    table.add_column("plugin", style="bold magenta", no_wrap=True)
    table.add_column("distribution")
    table.add_column("version")
    table.add_column("state")
    table.add_column("provides / error")
    for info in sorted(plugins.info.values(), key=lambda i: (i.name != "core", i.name)):
        style = {"loaded": "green", "broken": "bold red", "disabled": "dim"}[info.state]
        if info.state == "broken":
            detail = info.error
        else:
            detail = ", ".join(f"{n} {k}" for k, n in info.counts.items() if n)
        table.add_row(info.name, info.distribution, info.version, Text(info.state, style=style), Text(detail))
    console.print(table)
