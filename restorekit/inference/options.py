"""How to run a model over an image, as one validated value: tile, overlap, batch, precision, device.

:class:`InferenceOptions` is built once (by ``restore apply`` / ``restore eval`` from their flags, or by
Python callers) and checked once, in its constructor. What can only be checked once the network is known
(its size multiple, its tiling rule, the half-precision formats it tolerates, its receptive field) is
checked by :meth:`InferenceOptions.plan`, which returns the :class:`TilePlan` inference follows. The tile
geometry rule itself lives in one function, :func:`check_geometry`, which :mod:`restorekit.inference.tiling`
applies too.

``tile`` and ``overlap`` default to ``"auto"`` rather than a number, so that a value the user chose can be
told from the default: an explicit ``tile`` is refused for a network that pools over the whole image,
while the default quietly becomes a whole-image pass there; the default overlap grows to cover the
network's receptive-field margin, an explicit one is kept (with a warning when it is too small).

Example:
    >>> opts = InferenceOptions(tile=256, overlap=16, batch_size=2, precision="fp32", device="cpu")
    >>> opts.tile, opts.overlap
    (256, 16)
    >>> InferenceOptions(tile=30, overlap=12)
    Traceback (most recent call last):
    ...
    restorekit.inference.options.InferenceOptionsError: tile 30 must be larger than 3 × overlap (36): ...
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, Union

if TYPE_CHECKING:
    from restorekit.descriptor import ModelDescriptor

AUTO = "auto"
#: Tile side used when the user gives none and the network may be tiled.
DEFAULT_TILE = 512
#: Context margin per tile side when the user gives none (raised to the network's ``tile_margin``).
DEFAULT_OVERLAP = 32
DEFAULT_BATCH_SIZE = 4
PRECISIONS = ("auto", "fp32", "fp16", "bf16")

#: How each option is spelled on the command line; error messages are rendered with these by the CLI.
CLI_NAMES: Mapping[str, str] = {
    "tile": "--tile",
    "overlap": "--overlap",
    "batch_size": "--batch",
    "precision": "--precision",
    "device": "--device",
    "compile": "--compile",
    "threads": "--threads",
}
_NAME = re.compile(r"`(" + "|".join(CLI_NAMES) + r")`")

TileValue = Union[int, None, Literal["auto"]]


class InferenceOptionsError(ValueError):
    """An option that cannot work, alone or with this network; one line naming the option.

    The message is kept as a template in which option names are written in backticks, so that the same
    error reads ``tile 30 ...`` from Python and ``--tile 30 ...`` from the command line.
    """

    def __init__(self, template: str) -> None:
        self.template = template
        super().__init__(self.render())

    def render(self, names: Mapping[str, str] | None = None) -> str:
        """The message with option names spelled as *names* maps them (e.g. :data:`CLI_NAMES`)."""
        return render(self.template, names)


def render(template: str, names: Mapping[str, str] | None = None) -> str:
    """A message written with option names in backticks, spelled as *names* maps them (default: bare)."""
    names = names or {}
    return _NAME.sub(lambda m: names.get(m.group(1), m.group(1)), template)


def check_geometry(tile: int | None, overlap: int, multiple: int = 1) -> None:
    """The tile geometry rule: tiles must leave room to advance after their shared overlap.

    Neighbouring tiles share ``3 × overlap`` pixels (context margin plus cross-fade, see
    :mod:`restorekit.inference.tiling`), and tiles are rounded down to, and advance by, multiples of the
    network's size multiple. So a tile, once rounded down, must be at least ``3 × overlap + multiple``;
    with ``multiple == 1`` that is ``tile > 3 × overlap``.

    Args:
        tile: Tile side in input pixels, or None for a whole-image pass (always fine).
        overlap: Context margin per tile side in input pixels.
        multiple: The network's size multiple.

    Raises:
        InferenceOptionsError: The rule is broken; the message says which values to change.
    """
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
        raise InferenceOptionsError(f"size multiple must be a positive integer, got {multiple!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
        raise InferenceOptionsError(f"`overlap` must be a non-negative integer, got {overlap!r}")
    if tile is None:
        return
    usable = tile - tile % multiple
    if multiple == 1 and usable <= 3 * overlap:
        raise InferenceOptionsError(
            f"`tile` {tile} must be larger than 3 × `overlap` ({3 * overlap}): neighbouring tiles share "
            "3 × overlap pixels; use a larger `tile`, a smaller `overlap`, or `tile` 0 (whole image)"
        )
    if usable < 3 * overlap + multiple:
        raise InferenceOptionsError(
            f"`tile` {tile} is too small for `overlap` {overlap} with a network whose input sides must be "
            f"multiples of {multiple}: tiles share 3 × overlap pixels and advance by multiples of {multiple}, "
            f"so use `tile` ≥ {3 * overlap + multiple}, a smaller `overlap`, or `tile` 0 (whole image)"
        )


@dataclass(frozen=True)
class TilePlan:
    """How one network runs under some options, decided once by :meth:`InferenceOptions.plan`.

    Attributes:
        tile: Tile side in input pixels, or None for a whole-image pass.
        overlap: Context margin per tile side in input pixels.
        multiple: The network's size multiple (tiles and whole passes are padded to it).
        note: Something the user may want to know (a whole-image pass chosen for them), or "".
        warning: Something that may make the result worse (tiling a network that should not be), or "".
            Both are templates with option names in backticks: pass them through :func:`render`.
    """

    tile: int | None
    overlap: int
    multiple: int
    note: str = ""
    warning: str = ""


@dataclass(frozen=True)
class InferenceOptions:
    """Tiling, batching, precision and device for inference, validated on construction.

    Attributes:
        tile: Tile side in input pixels; ``None`` or ``0``: the whole image in one pass; ``"auto"`` (the
            default): :data:`DEFAULT_TILE`, or a whole-image pass for networks that must not be tiled. On
            the fast path the default grows or shrinks to the largest tile that fits the memory budget
            (``RestorationModel.working_tile``); an explicit tile is always kept.
        overlap: Context margin per tile side in input pixels; ``"auto"`` (the default):
            :data:`DEFAULT_OVERLAP`, raised to the network's receptive-field margin.
        batch_size: Tiles per forward pass.
        precision: ``auto`` (bf16 or fp16 on CUDA when the network supports it, else fp32), ``fp32``,
            ``fp16`` or ``bf16``.
        device: ``cpu``, ``cuda``, ``cuda:1``, ``mps``; None: CUDA when available, else the CPU.
        fast: Run the device's fast path (see :mod:`restorekit.inference.runner`: channels-last, packed
            oneDNN convolutions on the CPU, CUDA graphs on CUDA; balanced tiles, batches kept inside a
            memory budget); False runs the network exactly as given, the reference the fast path is
            tested against (equal within one 8-bit level).
        compile: Also ``torch.compile`` the network, one graph per tile shape (falls back to the fast
            path when compiling fails). Off by default: on the CPU it was measured not to pay.
        threads: CPU threads torch uses (process-wide); None: torch's default, one per core.

    Raises:
        InferenceOptionsError: A value out of range, an impossible tile geometry, or a device this
            machine does not have.

    Example:
        >>> InferenceOptions(tile=0).tile is None
        True
        >>> InferenceOptions(precision="fp8")
        Traceback (most recent call last):
        ...
        restorekit.inference.options.InferenceOptionsError: precision must be one of auto, fp32, fp16, bf16, got 'fp8'
    """

    tile: TileValue = AUTO
    overlap: int | Literal["auto"] = AUTO
    batch_size: int = DEFAULT_BATCH_SIZE
    precision: str = AUTO
    device: str | None = None
    fast: bool = True
    compile: bool = False
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.tile != AUTO and self.tile is not None:
            if not _is_int(self.tile) or self.tile < 0:
                raise InferenceOptionsError(f"`tile` must be a non-negative integer or 'auto', got {self.tile!r}")
            if self.tile == 0:
                # 0 is how the command line says "no tiles"; one spelling inside.
                object.__setattr__(self, "tile", None)
        if self.overlap != AUTO and (not _is_int(self.overlap) or self.overlap < 0):
            raise InferenceOptionsError(f"`overlap` must be a non-negative integer or 'auto', got {self.overlap!r}")
        if not _is_int(self.batch_size) or self.batch_size < 1:
            raise InferenceOptionsError(f"`batch_size` must be at least 1, got {self.batch_size!r}")
        if self.precision not in PRECISIONS:
            raise InferenceOptionsError(f"`precision` must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.device is not None:
            object.__setattr__(self, "device", _checked_device(self.device))
        for flag in ("fast", "compile"):
            if not isinstance(getattr(self, flag), bool):
                name = f"`{flag}`" if flag in CLI_NAMES else flag  # fast has no flag: no backticks to render
                raise InferenceOptionsError(f"{name} must be true or false, got {getattr(self, flag)!r}")
        if self.threads is not None and (not _is_int(self.threads) or self.threads < 1):
            raise InferenceOptionsError(f"`threads` must be a positive integer, got {self.threads!r}")
        # The part of the geometry rule that holds for every network (size multiple 1); the rest waits
        # for plan(), when the network's multiple and margin are known.
        check_geometry(self.tile_or_default, self.overlap_or_default)

    # -- resolved values -------------------------------------------------------------------------------

    @property
    def tile_given(self) -> bool:
        """The caller chose the tile size (or chose no tiles), rather than leaving it to the network."""
        return self.tile != AUTO

    @property
    def tile_or_default(self) -> int | None:
        """The tile side for a network that may be tiled."""
        return DEFAULT_TILE if self.tile == AUTO else self.tile  # type: ignore[return-value]

    @property
    def overlap_or_default(self) -> int:
        """The overlap before the network's margin is known."""
        return DEFAULT_OVERLAP if self.overlap == AUTO else int(self.overlap)

    def replace(self, **changes: Any) -> InferenceOptions:
        """A copy with some options changed (validated again)."""
        return replace(self, **changes)

    def plan(self, descriptor: ModelDescriptor) -> TilePlan:
        """Decide tile, overlap and padding for *descriptor*'s network, checking what needs the network.

        Args:
            descriptor: What the network is (tiling rule, size multiple, receptive-field margin).

        Returns:
            The plan inference follows.

        Raises:
            InferenceOptionsError: An explicit tile for a network that must run on whole images, or a
                tile too small for the network's size multiple.
        """
        from restorekit.descriptor import TILE_WITH_WARNING, WHOLE_IMAGE_ONLY

        name = descriptor.name
        multiple = descriptor.size_multiple
        overlap = self.overlap_or_default
        if self.overlap == AUTO:
            overlap = max(overlap, descriptor.tile_margin)
        tile = self.tile_or_default
        note = warning = ""
        if descriptor.tiling == WHOLE_IMAGE_ONLY:
            if self.tile_given and tile is not None:
                raise InferenceOptionsError(
                    f"model '{name}' runs on whole images only (it pools over the whole image, so tiles would "
                    f"change the result); leave out `tile` or give `tile` 0"
                )
            if not self.tile_given:
                note = (
                    f"model '{name}' runs on whole images (it pools over the whole image; tiles would change "
                    "the result)"
                )
            tile = None
        elif tile is not None and descriptor.tiling == TILE_WITH_WARNING:
            warning = (
                f"model '{name}' gives slightly different results in tiles than on the whole image; "
                "use `tile` 0 for an exact whole-image pass if memory allows"
            )
        elif tile is not None and self.overlap != AUTO and overlap < descriptor.tile_margin:
            warning = (
                f"`overlap` {overlap} is below model '{name}''s receptive-field margin of "
                f"{descriptor.tile_margin} pixels; tile seams may show"
            )
        if self.overlap == AUTO and tile is not None and tile - tile % multiple < 3 * overlap + multiple:
            # The default overlap was raised to the network's margin: say that, not just "too small".
            raise InferenceOptionsError(
                f"`tile` {tile} is too small for model '{name}': its receptive-field margin of {overlap} "
                f"pixels needs `tile` ≥ {3 * overlap + multiple}; use a larger `tile` or `tile` 0 (whole image)"
            )
        check_geometry(tile, overlap, multiple)
        return TilePlan(tile=tile, overlap=overlap, multiple=multiple, note=note, warning=warning)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _checked_device(device: Any) -> str:
    """The device as a string, refused at once when this machine does not have it."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise InferenceOptionsError(f"`device` {device!r} is not a device (cpu, cuda, cuda:1, mps)") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise InferenceOptionsError(f"`device` {device}: no CUDA device is available on this machine")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise InferenceOptionsError(
                f"`device` {device}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    return str(parsed)
