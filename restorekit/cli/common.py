"""What every command shares: the consoles, and turning expected errors into one clean line."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

F = TypeVar("F", bound=Callable[..., Any])

EXIT_ERROR = 1
EXIT_USAGE = 2  # invalid recipe or arguments, as click uses for usage errors


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """Print one error line (markup-safe) and exit with *code*."""
    err_console.print(f"[bold red]error:[/] {_escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input, not a bug: shown as one line, no traceback."""
    from restorekit.registry import RegistryError

    errors: list[type[BaseException]] = [RegistryError, FileNotFoundError, PermissionError, IsADirectoryError]
    for module, name in (
        ("restorekit.weights", "WeightsError"),
        ("restorekit.data.folders", "DataError"),
        ("restorekit.data.images", "ImageReadError"),
        ("restorekit.train.errors", "TrainingError"),
        ("restorekit.convert", "ConvertError"),
    ):
        mod = sys.modules.get(module)
        if mod is not None and hasattr(mod, name):
            errors.append(getattr(mod, name))
    return tuple(errors)


def handle_errors(func: F) -> F:
    """Decorate a command: recipe problems exit 2 (all listed), other expected errors exit 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None
        except Exception as exc:
            recipe_mod = sys.modules.get("restorekit.recipe.loader")
            if recipe_mod is not None and isinstance(exc, recipe_mod.RecipeError):
                for problem in exc.problems:
                    err_console.print(f"[bold red]error:[/] {_escape(str(problem))}", soft_wrap=True)
                count = len(exc.problems)
                err_console.print(f"{count} problem{'s' if count != 1 else ''} found; nothing was run")
                raise typer.Exit(EXIT_USAGE) from None
            options_mod = sys.modules.get("restorekit.inference.options")
            if options_mod is not None and isinstance(exc, options_mod.InferenceOptionsError):
                # Options a network cannot run with are usage errors, spelled with the flags as typed.
                fail(exc.render(options_mod.CLI_NAMES), EXIT_USAGE)
            if isinstance(exc, _expected_errors()):
                fail(str(exc) if not isinstance(exc, OSError) or not exc.filename else _os_message(exc))
            raise

    return wrapper  # type: ignore[return-value]


def _os_message(exc: OSError) -> str:
    return f"{exc.filename}: {exc.strerror or exc}"
