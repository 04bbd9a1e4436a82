"""What every command shares: the consoles, and turning every error into one clean line.

The CLI boundary is :func:`handle_errors`. Whatever a command raises ends as one line on stderr and a
non-zero exit code, never a traceback:

======================================  ==========================================================
raised                                  shown
======================================  ==========================================================
``RecipeError``                         every problem, one line each, then a count (exit 2)
``InferenceOptionsError``               the option as typed on the command line (exit 2)
a non-finite float option (``inf``)     the option's name (exit 2), before the command runs
out of memory (``torch.OutOfMemoryError``, ``MemoryError``, torch's CPU allocator failing)
                                        advice for this command: smaller batch / crop / tile (exit 1)
bad input (``WeightsError``, ``ConvertError``, ``DataError``, ``ImageReadError``, ``TrainingError``,
``RegistryError``, ``SizeLimitError``, ``OSError``, a ``ValueError`` raised by restorekit itself)
                                        its message, which names the file or key (exit 1)
anything plugin code raised (``SystemExit`` and a ``KeyboardInterrupt`` it raised itself included)
                                        the plugin's name and what it raised (exit 1)
Ctrl-C                                  ``interrupted`` (exit 130)
anything else (a bug)                   ``internal error`` with where it happened (exit 70);
                                        ``RESTOREKIT_DEBUG=1`` shows the traceback instead
======================================  ==========================================================

Everything printed goes through consoles that escape control characters (:func:`restorekit.fileio.printable`),
so a file name cannot forge a line or drive the terminal, and Python warnings become one
``warning:`` line each.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from restorekit.fileio import printable

F = TypeVar("F", bound=Callable[..., Any])

EXIT_ERROR = 1
EXIT_USAGE = 2  # invalid recipe or arguments, as click uses for usage errors
EXIT_INTERNAL = 70  # a bug (sysexits' EX_SOFTWARE): not the user's input
EXIT_INTERRUPTED = 130

RECIPE_DATA_CHECKS: ContextVar[bool] = ContextVar("restorekit_recipe_data_checks", default=False)
"""On while a command runs: a recipe loaded then is about to be trained (or checked to be), so
:func:`restorekit.recipe.load_recipe` also checks its data (folders, images, the crop, the metrics)."""

DEBUG_ENV = "RESTOREKIT_DEBUG"
"""Set to 1 to see the traceback of an unexpected error instead of its one-line summary."""

# Where torch and friends name their own build tree: "[enforce fail at alloc_cpu.cpp:127]",
# "(Triggered internally at /pytorch/aten/src/...cpp:12.)", ".../site-packages/torch/nn/x.py:3".
_BUILD_PATHS = (
    re.compile(r"\s*\[enforce fail at [^\]]*\]"),
    re.compile(r"\s*\(Triggered internally at [^)]*\)\.?"),
    re.compile(r"\s*Exception raised from \S+ at \S+"),
    re.compile(r"\s*(?:[A-Za-z]:)?(?:[/\\][^\s/\\]+)*[/\\](?:site|dist)-packages[/\\]\S*"),
    re.compile(r"\s*(?:[A-Za-z]:)?(?:[/\\][^\s/\\]+)+[/\\][^\s/\\]+\.(?:cpp|cc|cu|cuh|c|h|hpp):\d+"),
)


def scrub(text: str) -> str:
    """*text* without the build paths third-party libraries put in their messages."""
    for pattern in _BUILD_PATHS:
        text = pattern.sub("", text)
    return text.strip()


class SafeConsole(Console):
    """A rich console that escapes control characters in whatever it prints.

    Strings, :class:`~rich.text.Text` and tables (title, headers, cells) are escaped before rendering,
    so a newline in a file name stays ``\\n`` instead of starting a forged line; as a last guard every
    rendered segment is escaped too (rich's own styling and cursor codes are not segment text).
    """

    def __init__(self, *args: Any, scrub_build_paths: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._scrub = scrub_build_paths

    def print(self, *objects: Any, **kwargs: Any) -> None:  # type: ignore[override]
        super().print(*(self._safe(obj) for obj in objects), **kwargs)

    def _safe(self, obj: Any) -> Any:
        if isinstance(obj, str):
            return printable(scrub(obj) if self._scrub else obj)
        if isinstance(obj, Text):
            return _safe_text(obj)
        if isinstance(obj, Table):
            _safe_table(obj)
        return obj

    def _render_buffer(self, buffer: Any) -> str:
        safe = (
            seg
            if seg.control or seg.text == "\n" or seg.text.isprintable()
            else Segment(_printable_keeping_lines(seg.text), seg.style, seg.control)
            for seg in buffer
        )
        return super()._render_buffer(safe)


def _printable_keeping_lines(text: str) -> str:
    return "\n".join(printable(line) for line in text.split("\n"))


def _safe_text(text: Text) -> Text:
    if text.plain.isprintable():
        return text
    # Escaping changes lengths, so spans cannot follow; such text is rare (a hostile name) and keeps its style.
    return Text(printable(text.plain), style=text.style, justify=text.justify, no_wrap=text.no_wrap)


def _safe_table(table: Table) -> None:
    for attr in ("title", "caption"):
        value = getattr(table, attr)
        if isinstance(value, str):
            setattr(table, attr, printable(value))
        elif isinstance(value, Text):
            setattr(table, attr, _safe_text(value))
    for column in table.columns:
        if isinstance(column.header, str):
            column.header = printable(column.header)
        cells = column._cells  # rich keeps them here; there is no public way to rewrite them
        for i, cell in enumerate(cells):
            if isinstance(cell, str):
                cells[i] = printable(cell)
            elif isinstance(cell, Text):
                cells[i] = _safe_text(cell)


console = SafeConsole(highlight=False)
err_console = SafeConsole(stderr=True, highlight=False, scrub_build_paths=True)


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """Print one error line (markup-safe, control characters escaped) and exit with *code*."""
    err_console.print(f"[bold red]error:[/] {_escape(printable(scrub(str(message))))}", soft_wrap=True)
    raise typer.Exit(code)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input, not a bug: shown as one line, no traceback."""
    from restorekit.registry import RegistryError

    errors: list[type[BaseException]] = [RegistryError, OSError]
    for module, name in (
        ("restorekit.weights", "WeightsError"),
        ("restorekit.data.folders", "DataError"),
        ("restorekit.data.images", "ImageReadError"),
        ("restorekit.data.picture", "ImageWriteError"),
        ("restorekit.train.errors", "TrainingError"),
        ("restorekit.convert", "ConvertError"),
        ("restorekit.limits", "SizeLimitError"),
    ):
        mod = sys.modules.get(module)
        if mod is not None and hasattr(mod, name):
            errors.append(getattr(mod, name))
    return tuple(errors)


def handle_errors(func: F) -> F:
    """Decorate a command: recipe problems exit 2 (all listed), other errors one line each (see the module).

    Example:
        >>> @handle_errors
        ... def info(file: str) -> None:
        ...     raise FileNotFoundError(f"{file}: no such file")
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _check_float_options(kwargs)
        token = RECIPE_DATA_CHECKS.set(True)
        try:
            return _run_command(func, args, kwargs)
        finally:
            RECIPE_DATA_CHECKS.reset(token)

    return wrapper  # type: ignore[return-value]


def _run_command(func: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    from restorekit.plugins import user_interrupts

    with user_interrupts() as interrupts, _warnings_as_lines():
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt as exc:
            # A Ctrl-C ends in our handler (or the trainer's): the innermost frame says who raised it.
            plugin = _raising_plugin(exc, innermost=True)
            if interrupts.user or plugin is None:
                err_console.print("[yellow]interrupted[/]")
                raise typer.Exit(EXIT_INTERRUPTED) from None
            _report_plugin(exc, plugin)
        except Exception as exc:
            if type(exc).__module__.startswith(("typer", "click")):
                raise  # usage errors raised the command-line library's way: it prints them itself
            _report(exc, func.__name__)
        except BaseException as exc:  # SystemExit, GeneratorExit, ... from plugin code
            plugin = _raising_plugin(exc)
            if plugin is None or os.environ.get(DEBUG_ENV):
                raise
            _report_plugin(exc, plugin)


def _report(exc: Exception, command: str) -> NoReturn:
    """Turn an exception out of a command into its line and exit code."""
    recipe_mod = sys.modules.get("restorekit.recipe.loader")
    if recipe_mod is not None and isinstance(exc, recipe_mod.RecipeError):
        for problem in exc.problems:
            err_console.print(f"[bold red]error:[/] {_escape(printable(str(problem)))}", soft_wrap=True)
        count = len(exc.problems)
        err_console.print(f"{count} problem{'s' if count != 1 else ''} found; nothing was run")
        raise typer.Exit(EXIT_USAGE) from None
    options_mod = sys.modules.get("restorekit.inference.options")
    if options_mod is not None and isinstance(exc, options_mod.InferenceOptionsError):
        # Options a network cannot run with are usage errors, spelled with the flags as typed.
        fail(exc.render(options_mod.CLI_NAMES), EXIT_USAGE)
    if is_out_of_memory(exc):
        fail(out_of_memory_message(exc, command))
    plugin = _raising_plugin(exc)
    if isinstance(exc, RuntimeError) and str(exc).startswith("Error(s) in loading state_dict"):
        # A checkpoint or weight file whose tensors do not fit the networks it claims to be for.
        fail(f"the weights being loaded do not fit the network: {scrub(str(exc).splitlines()[0])}")
    if isinstance(exc, _expected_errors()):
        fail(_os_message(exc) if isinstance(exc, OSError) and exc.filename else str(exc))
    debug = os.environ.get(DEBUG_ENV)
    if isinstance(exc, ValueError) and plugin is None and _raised_by_restorekit(exc) and not debug:
        fail(str(exc))  # restorekit's own checks raise ValueError with a message meant for the user
    if debug:
        raise exc
    if plugin is not None:
        _report_plugin(exc, plugin)
    fail(
        f"internal error: {_describe(exc)} at {_where(exc)}; this is a bug, please report it "
        f"({DEBUG_ENV}=1 shows the traceback)",
        EXIT_INTERNAL,
    )


def _report_plugin(exc: BaseException, plugin: str) -> NoReturn:
    fail(
        f"plugin '{plugin}' failed ({_describe(exc)}); 'restore plugins' lists it, "
        f"RESTOREKIT_DISABLE_PLUGINS={plugin} turns it off"
    )


def _describe(exc: BaseException) -> str:
    from restorekit.plugins import describe_exception

    return describe_exception(exc)


def _raising_plugin(exc: BaseException, *, innermost: bool = False) -> str | None:
    from restorekit.plugins import plugin_of_traceback

    return plugin_of_traceback(exc, innermost=innermost)


def _innermost_frame(exc: BaseException) -> Any:
    tb = exc.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb


def _raised_by_restorekit(exc: BaseException) -> bool:
    tb = _innermost_frame(exc)
    module = tb.tb_frame.f_globals.get("__name__", "") if tb is not None else ""
    return module == "restorekit" or module.startswith(("restorekit.", "restorekit_plugins."))


def _where(exc: BaseException) -> str:
    tb = _innermost_frame(exc)
    if tb is None:
        return "?"
    module = tb.tb_frame.f_globals.get("__name__", "?")
    return f"{module}:{tb.tb_lineno}"


# --- out of memory ---------------------------------------------------------------------------------

_OOM_TEXT = ("can't allocate memory", "out of memory", "not enough memory", "cannot allocate memory")

_OOM_ADVICE = {
    "run": "lower data.batch_size or data.train.crop (train.accumulate keeps the effective batch); "
    "checkpoints written so far are kept, continue with --resume",
    "apply": "use a smaller --tile or --batch (or --tile 0 only for small images)",
    "evaluate": "use a smaller --tile or --batch",
    "check": "the networks of this recipe do not fit in memory; make them smaller",
}


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether *exc* says that memory ran out (CPU or CUDA, however the library reports it)."""
    if isinstance(exc, MemoryError):
        return True
    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    if oom is not None and isinstance(exc, oom):
        return True
    # torch's CPU allocator reports failure as a RuntimeError ("DefaultCPUAllocator: can't allocate memory").
    return isinstance(exc, RuntimeError) and any(text in str(exc).lower() for text in _OOM_TEXT)


def out_of_memory_message(exc: BaseException, command: str) -> str:
    """The one line for running out of memory in *command*, with what to change."""
    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    where = "GPU memory" if oom is not None and isinstance(exc, oom) else "memory"
    asked = re.search(r"(?:tried to allocate|allocate)\s+([\d.]+\s*[KMGTP]?i?B|\d+ bytes)", str(exc))
    size = f" (an allocation of {_bytes(asked.group(1))} failed)" if asked else ""
    advice = _OOM_ADVICE.get(command, "use smaller inputs (batch, crop or tile)")
    return f"not enough {where}{size}; {advice}"


def _bytes(text: str) -> str:
    match = re.fullmatch(r"(\d+) bytes", text.strip())
    if not match:
        return text
    value = float(match.group(1))
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return text


# --- options and warnings --------------------------------------------------------------------------


def _check_float_options(values: dict[str, Any]) -> None:
    """``--outscale inf`` and friends: a float option must be a finite number (click accepts inf/nan)."""
    for name, value in values.items():
        items = value if isinstance(value, (list, tuple)) else [value]
        for item in items:
            if isinstance(item, float) and not math.isfinite(item):
                fail(f"{_flag(name)} must be a finite number, got {item}", EXIT_USAGE)


def _flag(name: str) -> str:
    try:  # typer vendors click; a plain click install is the fallback
        from typer._click.globals import get_current_context
    except ImportError:  # pragma: no cover - other typer versions
        try:
            from click import get_current_context
        except ImportError:
            get_current_context = None  # type: ignore[assignment]
    ctx = get_current_context(silent=True) if get_current_context is not None else None
    if ctx is not None:
        for param in ctx.command.params:
            if param.name == name and getattr(param, "opts", None):
                return max(param.opts, key=len)
    return f"--{name.replace('_', '-')}"


@contextlib.contextmanager
def _warnings_as_lines() -> Iterator[None]:
    """Show each Python warning as one ``warning:`` line (no source path, no code excerpt)."""
    previous = warnings.showwarning

    def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        err_console.print(f"[yellow]warning:[/] {_escape(printable(scrub(str(message))))}", soft_wrap=True)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous


def _os_message(exc: OSError) -> str:
    return f"{exc.filename}: {exc.strerror or exc}"
