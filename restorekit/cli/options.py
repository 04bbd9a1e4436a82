"""Command-line options shared by ``restore apply`` and ``restore eval``, declared once.

:func:`inference_options` gives a command the ``--tile``, ``--overlap``, ``--batch``, ``--precision``,
``--device``, ``--compile`` and ``--threads`` flags and hands it one validated
:class:`~restorekit.inference.options.InferenceOptions` (parameter ``options``) instead of loose values.
Defaults and the rules behind them come from :mod:`restorekit.inference.options`; nothing is written twice
here.

Example:
    >>> @inference_options
    ... def command(name: str = typer.Option(...), *, options: InferenceOptions) -> None:
    ...     print(options.tile)
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, Optional

import typer

from restorekit.cli.common import EXIT_USAGE, fail
from restorekit.inference.options import (
    AUTO,
    CLI_NAMES,
    DEFAULT_OVERLAP,
    DEFAULT_TILE,
    PRECISIONS,
    InferenceOptions,
    InferenceOptionsError,
)

_DEFAULTS = InferenceOptions()


def _option(name: str, default: Any, annotation: Any, **info: Any) -> inspect.Parameter:
    """A keyword-only command parameter carrying a typer option named as in :data:`CLI_NAMES`."""
    option = typer.Option(default, CLI_NAMES[name], **info)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)


# tile and overlap take None on the command line for "not given", which InferenceOptions calls "auto":
# the network then decides (a whole-image pass, a larger overlap for a wide receptive field).
_PARAMETERS = (
    _option(
        "tile",
        None,
        Optional[int],  # noqa: UP007 - typer needs Optional on 3.11
        min=0,
        help="Tile side in input pixels; 0: whole image at once. Default: the largest tile that fits the memory "
        f"budget (a quarter of the free RAM, at most 4 GiB; {DEFAULT_TILE} for the plain path), or the whole image "
        "for models that pool over it.",
        show_default=False,
    ),
    _option(
        "overlap",
        None,
        Optional[int],  # noqa: UP007
        min=0,
        help=f"Context margin per tile side, in input pixels. Default: {DEFAULT_OVERLAP}, or the model's "
        "receptive-field margin if larger.",
        show_default=False,
    ),
    _option("batch_size", _DEFAULTS.batch_size, int, min=1, help="Tiles per forward pass."),
    _option(
        "device",
        _DEFAULTS.device,
        Optional[str],  # noqa: UP007
        help="cpu, cuda, cuda:1, ... Default: CUDA when available.",
        show_default=False,
    ),
    _option(
        "precision",
        _DEFAULTS.precision,
        str,
        help=f"{'|'.join(PRECISIONS)} (auto: half on CUDA where the model allows; bf16 is honoured on CPUs "
        "that compute it natively).",
    ),
    _option(
        "compile",
        _DEFAULTS.compile,
        bool,
        help="torch.compile the network, one graph per tile shape (seconds to minutes per shape; measured not to "
        "pay on CPU).",
    ),
    _option(
        "threads",
        _DEFAULTS.threads,
        Optional[int],  # noqa: UP007
        min=1,
        help="CPU threads for the network. Default: one per core.",
        show_default=False,
    ),
)
_NAMES = tuple(p.name for p in _PARAMETERS)

#: ``--arch NAME`` for foreign checkpoints whose architecture tensor shapes cannot tell.
ARCH_OPTION: Any = typer.Option(
    None,
    "--arch",
    help="Architecture of a foreign checkpoint (.pth), for converters that cannot tell from its tensors.",
    show_default=False,
)

#: ``--max-pixels N``: the decompression-bomb limit, shared by the commands that read images.
MAX_PIXELS_OPTION: Any = typer.Option(
    None,
    "--max-pixels",
    min=1,
    help="Largest image (width × height) to read; raises Pillow's decompression-bomb limit.",
    show_default=False,
)


def options_from_flags(values: Mapping[str, Any]) -> InferenceOptions:
    """Build the options from parsed flag values; a bad combination ends in one usage line (exit 2)."""
    given = {name: values[name] for name in _NAMES}
    for name in ("tile", "overlap"):
        if given[name] is None:
            given[name] = AUTO
    try:
        return InferenceOptions(**given)
    except InferenceOptionsError as exc:
        fail(exc.render(CLI_NAMES), EXIT_USAGE)


def inference_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a typer command: add the shared inference flags, pass ``options=InferenceOptions``.

    The command declares a keyword parameter ``options``; the decorated function's signature shows typer
    the flags instead, so ``--help`` lists them with the command's own options.
    """
    signature = inspect.signature(command)
    own = [p for p in signature.parameters.values() if p.name != "options"]
    if len(own) == len(signature.parameters):
        raise TypeError(f"{command.__name__} must take an 'options' parameter to use @inference_options")

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        flags = {name: kwargs.pop(name) for name in _NAMES if name in kwargs}
        defaults = {p.name: p.default.default for p in _PARAMETERS}  # direct calls without the flags
        return command(*args, options=options_from_flags({**defaults, **flags}), **kwargs)

    wrapper.__signature__ = signature.replace(parameters=[*own, *_PARAMETERS])  # type: ignore[attr-defined]
    # typer resolves annotations with typing.get_type_hints, which reads __annotations__ (a copy here:
    # functools.wraps shares the command's dict).
    annotations = {k: v for k, v in command.__annotations__.items() if k != "options"}
    wrapper.__annotations__ = {**annotations, **{p.name: p.annotation for p in _PARAMETERS}}
    return wrapper
