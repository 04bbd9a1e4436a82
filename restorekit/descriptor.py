"""One record of what a network *is*: the model descriptor.

Scale, task, channels, the size a network needs its input to be a multiple of, which half-precision
formats it tolerates and whether it may be cut into tiles are facts about one built network. They are
gathered once, by :func:`describe`, from two places a plugin author controls:

1. keyword *info* given at registration (``register("mynet", MyNet, task="super_resolution",
   tiling="whole_image_only")``): facts that hold for every configuration;
2. attributes of the built network (``self.scale = scale`` in ``__init__``): facts that depend on the
   constructor arguments. An attribute wins over registration info.

The descriptor is then written verbatim into the weight file's metadata (key ``descriptor``) and read
back by everything that uses the network: the trainer, ``restore convert``, :func:`restorekit.load_model`,
``restore apply`` and ``restore eval``. Nothing else guesses these values.

Attributes a plugin may set (on the network, or as registration info):

==================  ===========  ==================================================================
name                default      meaning
==================  ===========  ==================================================================
``scale``           1            output size / input size (integer); generators must set it
``in_channels``     3            channels the network reads
``out_channels``    in_channels  channels it writes
``size_multiple``   1            input sides must be multiples of this; inference pads (reflect)
``supports_half``   True         shorthand for both of the next two (older plugins set only this)
``supports_fp16``   True         float16 autocast gives finite, faithful results
``supports_bf16``   True         bfloat16 autocast gives finite, faithful results
``tiling``          "tileable"   ``tileable``: tiles with enough overlap equal a whole-image pass;
                                 ``whole_image_only``: global operations (channel attention over the
                                 whole image, global statistics), so tiles would change the result;
                                 ``tile_with_warning``: tiling changes the result slightly (e.g. a
                                 large receptive field); allowed, with a warning
``tile_margin``     0            receptive-field radius in input pixels (0: unknown); the default tile
                                 overlap is at least this
``task``            ""           registration info only: the task the network is made for
==================  ===========  ==================================================================

Example:
    >>> from restorekit.plugins import registry
    >>> comp = registry("generators").get("srresnet")
    >>> d = describe(comp, {"num_features": 8, "num_blocks": 1, "scale": 2})
    >>> d.scale, d.task, d.tiling
    (2, 'super_resolution', 'tileable')
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from restorekit.fileio import printable

if TYPE_CHECKING:
    from torch import nn

    from restorekit.registry import Component

TILEABLE = "tileable"
WHOLE_IMAGE_ONLY = "whole_image_only"
TILE_WITH_WARNING = "tile_with_warning"
TILING_RULES = (TILEABLE, WHOLE_IMAGE_ONLY, TILE_WITH_WARNING)

#: Facts a plugin may state, by registration info or network attribute (see the module docstring).
DESCRIBED = (
    "scale",
    "in_channels",
    "out_channels",
    "size_multiple",
    "supports_half",
    "supports_fp16",
    "supports_bf16",
    "tiling",
    "tile_margin",
)

#: Upper bounds that keep a damaged or hostile record from steering inference into absurd work.
_LIMITS = {"scale": 64, "in_channels": 64, "out_channels": 64, "size_multiple": 1024, "tile_margin": 4096}


class DescriptorError(ValueError):
    """A descriptor value that cannot be right; the message names the network and the field."""


@dataclass(frozen=True)
class ModelDescriptor:
    """What a network is, independent of its weights.

    Attributes:
        name: registry name (``srresnet``).
        args: constructor arguments, as given (defaults are not filled in).
        kind: ``generator`` or ``discriminator``.
        plugin: the plugin that registered the network.
        task: the task it is made for (``super_resolution``, ``deblurring``; "" when unknown).
        scale: output size / input size.
        in_channels: channels read.
        out_channels: channels written.
        size_multiple: input sides must be multiples of this (inference pads to it).
        supports_fp16: float16 inference is safe.
        supports_bf16: bfloat16 inference is safe.
        tiling: ``tileable``, ``whole_image_only`` or ``tile_with_warning``.
        tile_margin: receptive-field radius in input pixels; 0 when unknown.
    """

    name: str
    args: Mapping[str, Any] = field(default_factory=dict)
    kind: str = "generator"
    plugin: str = ""
    task: str = ""
    scale: int = 1
    in_channels: int = 3
    out_channels: int = 3
    size_multiple: int = 1
    supports_fp16: bool = True
    supports_bf16: bool = True
    tiling: str = TILEABLE
    tile_margin: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise DescriptorError("a model descriptor needs the network's registry name")
        if not isinstance(self.plugin, str) or not isinstance(self.task, str):
            raise DescriptorError(f"network '{printable(self.name)}': plugin and task must be strings")
        where = f"network '{printable(self.name)}'" + (f" (plugin '{printable(self.plugin)}')" if self.plugin else "")
        if not isinstance(self.args, Mapping):
            raise DescriptorError(f"{where}: args must be a table of constructor arguments")
        for key, limit in _LIMITS.items():
            value = getattr(self, key)
            low = 0 if key == "tile_margin" else 1
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= limit:
                raise DescriptorError(
                    f"{where}: {key} must be an integer from {low} to {limit}, got {printable(repr(value))[:60]}"
                )
        for key in ("supports_fp16", "supports_bf16"):
            if not isinstance(getattr(self, key), bool):
                raise DescriptorError(f"{where}: {key} must be true or false, got {getattr(self, key)!r}")
        if not isinstance(self.tiling, str) or self.tiling not in TILING_RULES:
            got = printable(repr(self.tiling))[:60]
            raise DescriptorError(f"{where}: tiling must be one of {', '.join(TILING_RULES)}, got {got}")
        if not isinstance(self.kind, str) or self.kind not in ("generator", "discriminator"):
            got = printable(repr(self.kind))[:60]
            raise DescriptorError(f"{where}: kind must be generator or discriminator, got {got}")

    # -- derived --------------------------------------------------------------------------------------

    @property
    def supports_half(self) -> bool:
        """Both half-precision formats are safe (the older single flag)."""
        return self.supports_fp16 and self.supports_bf16

    @property
    def tileable(self) -> bool:
        """Tiles may be used at all (``tileable`` or ``tile_with_warning``)."""
        return self.tiling != WHOLE_IMAGE_ONLY

    # -- metadata ------------------------------------------------------------------------------------

    def to_json(self) -> str:
        """The record as written into weight-file metadata (key ``descriptor``)."""
        data = asdict(self)
        data["args"] = dict(self.args)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "") -> ModelDescriptor:
        """Read a record written by :meth:`to_json`; unknown keys (from newer versions) are ignored.

        Raises:
            DescriptorError: not JSON, not an object, or a value out of range; the message names *source*.
        """
        prefix = f"{source}: " if source else ""
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise DescriptorError(f"{prefix}damaged model descriptor ({exc})") from None
        except RecursionError:
            raise DescriptorError(f"{prefix}damaged model descriptor (nested too deeply)") from None
        if not isinstance(data, dict):
            raise DescriptorError(f"{prefix}damaged model descriptor (not a JSON object)")
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except DescriptorError as exc:
            raise DescriptorError(f"{prefix}{exc}") from None
        except (TypeError, ValueError) as exc:  # a required field missing, a value that cannot be compared
            raise DescriptorError(f"{prefix}damaged model descriptor ({exc})") from None

    def replace(self, **changes: Any) -> ModelDescriptor:
        """A copy with some fields changed (validated again)."""
        from dataclasses import replace

        return replace(self, **changes)


def _stated(source: Any, key: str) -> Any:
    """A fact from a mapping (registration info) or an object's attribute, else ``None``."""
    if isinstance(source, Mapping):
        return source.get(key)
    return getattr(source, key, None)


def _gather(*sources: Any) -> dict[str, Any]:
    """The stated facts of *sources*, later sources winning, normalised to the descriptor's fields."""
    facts: dict[str, Any] = {}
    for source in sources:
        for key in DESCRIBED:
            value = _stated(source, key)
            if value is not None and not callable(value):
                facts[key] = value
    half = facts.pop("supports_half", None)
    for key in ("supports_fp16", "supports_bf16"):
        if key not in facts and half is not None:
            facts[key] = bool(half)
    for key in ("scale", "in_channels", "out_channels", "size_multiple", "tile_margin"):
        if isinstance(facts.get(key), float) and facts[key].is_integer():
            facts[key] = int(facts[key])
    facts.setdefault("out_channels", facts.get("in_channels", 3))
    return facts


def describe(
    component: Component,
    args: Mapping[str, Any],
    network: nn.Module | None = None,
    *,
    task: str | None = None,
) -> ModelDescriptor:
    """Produce the descriptor of *component* built with *args*: the one place these facts are derived.

    Args:
        component: the registry entry (its ``info`` holds registration facts).
        args: constructor arguments.
        network: the built network; None builds one on the ``meta`` device (no memory, no weights),
            stopped beyond :mod:`restorekit.limits`' budget.
        task: overrides the registered task (a recipe's or a weight file's).

    Returns:
        The descriptor.

    Raises:
        DescriptorError: a stated fact is out of range or of the wrong type.
        restorekit.limits.SizeLimitError: *network* is None and *args* describe a network too large to build.
    """
    if network is None:
        from restorekit.limits import build_on_meta

        network = build_on_meta(component, args)  # stopped if the arguments describe an absurd network
    # Network attributes win over registration info: they depend on the constructor arguments.
    return ModelDescriptor(
        name=component.name,
        args=dict(args),
        kind="discriminator" if component.kind == "discriminators" else "generator",
        plugin=component.plugin,
        task=task if task else str(component.info.get("task", "") or ""),
        **_gather(component.info, network),
    )


def describe_network(
    name: str, args: Mapping[str, Any], network: nn.Module, *, task: str = "", plugin: str = ""
) -> ModelDescriptor:
    """A descriptor from a network's attributes alone, for a network that is not in the registry.

    Used for weight files written before descriptors existed whose plugin is gone, and for ad-hoc
    networks wrapped in a :class:`~restorekit.inference.model.RestorationModel`.
    """
    return ModelDescriptor(name=name, args=dict(args), plugin=plugin, task=task, **_gather(network))
