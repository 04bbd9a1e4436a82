"""The hooks a restorekit plugin can implement.

A plugin is a module (or object) exposed through the ``restorekit`` entry-point group::

    [project.entry-points.restorekit]
    myplugin = "my_package.plugin"

and implements any of the hooks below with :data:`restorekit.hookimpl`. Collector hooks receive a
``register`` callback, so restorekit owns the registries: it catches duplicates, records which plugin
registered what, and keeps the registry unchanged when a plugin fails.

``register(name, target, description="", **info)`` takes a class or function with explicit keyword
arguments, or a lazy ``"module:attr"`` string (give ``description`` then, so listing imports nothing).
Known ``info`` keys: ``task`` (the task a generator is made for), ``tiny_args`` (a small configuration
that restorekit's contract tests build), ``test_size`` (the input side those tests use), and the facts
of the model descriptor that hold for every configuration (``tiling``, ``size_multiple``,
``supports_fp16``, ``supports_bf16``, ``tile_margin``, ...; see :mod:`restorekit.descriptor`, where a
network attribute of the same name wins).
"""

from __future__ import annotations

from typing import Any

import pluggy

PROJECT = "restorekit"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --- component registries -------------------------------------------------------------------------


@hookspec
def register_generators(register: Any) -> None:
    """Register generator networks (``nn.Module`` factories with a ``scale`` attribute)."""


@hookspec
def register_discriminators(register: Any) -> None:
    """Register discriminator (critic) networks."""


@hookspec
def register_losses(register: Any) -> None:
    """Register losses: content losses ``forward(output, target)`` or adversarial ones."""


@hookspec
def register_tasks(register: Any) -> None:
    """Register tasks, which make training batches and validate (super-resolution, deblurring)."""


@hookspec
def register_metrics(register: Any) -> None:
    """Register image-quality metrics: ``register(name, target, description="", *, higher_is_better, ...)``.

    Besides ``higher_is_better`` (the direction, required), a metric says ``needs_reference`` (default
    True; False for no-reference scores such as NIQE), ``colour`` (the colour space it measures: ``"y"``,
    ``"rgb"``, ...) and optionally ``label`` (a table header). The factory takes explicit keyword
    arguments including ``border`` (the pixels the task shaves); what it builds is called as
    ``metric(output, target)`` on ``(N, C, H, W)`` images in [0, 1] and returns one value per image.
    """


# --- shipped files --------------------------------------------------------------------------------


@hookspec
def register_recipes(register: Any) -> None:
    """Register recipe files: ``register(name, path, description="")``."""


@hookspec
def register_models(register: Any) -> None:
    """Register named weights: ``register(name, path=..., description=...)`` or ``url=..., sha256=...``.

    A downloadable entry may also say ``size`` (bytes), ``licence``, ``arch`` (the generator it converts
    to), ``scale``, ``task``, ``source`` (homepage) and ``filename`` (default: the URL's last segment).
    """


# --- resolvers ------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def convert_state_dict(state_dict: dict[str, Any], path: str, hints: dict[str, Any]) -> Any:
    """Recognise a foreign checkpoint's state dict; first result wins.

    Return ``(generator_name, constructor_args, converted_state_dict)`` or ``(..., layout)`` where
    ``layout`` names the recognised key layout (stored as ``source_layout``), else ``None``. May raise
    :class:`restorekit.convert.ConvertError` for a recognised but unsupported variant.

    ``hints`` holds what the user said about the file (``restore convert/apply --scale 3 --arch pan``):
    ``scale`` (int) and ``arch`` (a generator name), each only when given. Use them where tensor shapes
    cannot tell (PAN x2 and x3 have identical shapes); an implementation may leave the argument out
    (``def convert_state_dict(state_dict, path)`` keeps working). restorekit checks the answer against
    the hints, and with ``arch`` given only an answer naming that generator is taken.

    Order: implementations are asked from the last registered to the first, so third-party plugins come
    before restorekit's built-ins (which load first). ``@hookimpl(tryfirst=True)`` or ``trylast=True``
    moves an implementation to the front or the back.
    """
