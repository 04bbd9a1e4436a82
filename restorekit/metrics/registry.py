"""The metric registry: every image-quality score restorekit can report, with the facts a table needs.

Metrics are registered by plugins through the ``register_metrics(register)`` hook, the core's among
them (``psnr_y``, ``ssim_y``, ``lpips``, ``niqe``, ...), and are strict like the component registries:
a duplicate name is an error naming both plugins, an unknown name lists the closest ones.

Each entry states what a results table needs to print and rank it:

- ``higher_is_better``: the direction (PSNR: higher; LPIPS, NIQE: lower);
- ``needs_reference``: whether it compares with a ground truth (NIQE does not, so it also scores photos
  that have none);
- ``colour``: the colour space it measures (``"y"``: BT.601 luma, ``"rgb"``), part of its protocol; the
  other part, the border shaved from each side, belongs to the task (super-resolution: the scale) and
  is handed to the metric's factory as ``border``.

A factory is a class (or function) taking explicit keyword arguments, ``border`` among them, whose
result ``metric(output, target)`` scores ``(N, C, H, W)`` (or ``(C, H, W)``) float images in [0, 1]
and returns one float64 value per image (``target`` is None for a metric without reference).

Example:
    >>> from restorekit.metrics.registry import metric_registry
    >>> spec = metric_registry().get("lpips")
    >>> spec.higher_is_better, spec.needs_reference, spec.colour
    (False, True, 'rgb')
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from restorekit.registry import RegistryError

__all__ = [
    "COLOURS",
    "MetricImportError",
    "MetricRegistry",
    "MetricSpec",
    "UnknownMetricError",
    "metric_registry",
]

COLOURS = {"y": "Y (BT.601 luma)", "rgb": "RGB"}
"""The colour spaces restorekit's own metrics use; a plugin may name another (it is shown as given)."""


class UnknownMetricError(RegistryError, KeyError):
    """A metric name no plugin registered; the message lists the closest names."""

    def __init__(self, name: str, known: Iterable[str]):
        self.name, self.known = name, sorted(known)
        close = difflib.get_close_matches(name, self.known, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(self.known) or 'none'}"
        super().__init__(f"unknown metric '{name}'; {hint}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class MetricImportError(RegistryError):
    """A lazily registered metric could not be imported (its plugin is broken)."""


@dataclass
class MetricSpec:
    """One registered metric.

    Attributes:
        name: the name recipes and ``--metrics`` use (``psnr_y``, ``lpips``); also the result key.
        target: the factory, or a lazy ``"module:attr"`` string imported on first use.
        plugin: the plugin that registered it.
        description: one line for listings.
        higher_is_better: the direction of the score.
        needs_reference: whether it compares the output with a ground-truth image.
        colour: the colour space it measures (``"y"``, ``"rgb"``, or a plugin's own).
        label: the column header of tables (default: the name).
    """

    name: str
    target: Callable[..., Any] | str
    plugin: str
    description: str = ""
    higher_is_better: bool = True
    needs_reference: bool = True
    colour: str = "rgb"
    label: str = ""

    @property
    def factory(self) -> Callable[..., Any]:
        """The callable that builds the metric, importing it on first use."""
        if isinstance(self.target, str):
            module_name, _, attr = self.target.partition(":")
            try:
                obj: Any = importlib.import_module(module_name)
                for part in attr.split("."):
                    obj = getattr(obj, part)
            except Exception as exc:  # any import failure belongs to the plugin
                raise MetricImportError(
                    f"metric '{self.name}' from plugin '{self.plugin}' cannot be imported ({self.target}): "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            self.target = obj
        return self.target

    @property
    def direction(self) -> str:
        """``"higher"`` or ``"lower"``: which way is better."""
        return "higher" if self.higher_is_better else "lower"

    @property
    def arrow(self) -> str:
        """``↑`` or ``↓`` after a column header."""
        return "↑" if self.higher_is_better else "↓"

    @property
    def header(self) -> str:
        return self.label or self.name

    def protocol(self, border: int | None = None) -> str:
        """The measurement protocol in words, e.g. ``Y (BT.601 luma), 4 border pixels shaved, reference``."""
        parts = [COLOURS.get(self.colour, self.colour)]
        if border is None:
            parts.append("the task's border shaved")
        elif border:
            parts.append(f"{border} border pixel{'s' if border != 1 else ''} shaved")
        else:
            parts.append("no border shaved")
        parts.append("against the reference" if self.needs_reference else "no reference")
        return ", ".join(parts)

    def build(self, *, border: int = 0, **args: Any) -> Any:
        """Build the metric for a protocol shaving *border* pixels, with the factory's other arguments."""
        return self.factory(border=border, **args)

    def accepts(self) -> list[str]:
        """The keyword arguments the factory takes besides ``border``."""
        params = inspect.signature(self.factory).parameters
        return [n for n, p in params.items() if n != "border" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]

    def to_dict(self, border: int | None = None) -> dict[str, Any]:
        """What a JSON report says about the metric."""
        return {
            "name": self.name,
            "label": self.header,
            "higher_is_better": self.higher_is_better,
            "needs_reference": self.needs_reference,
            "colour": self.colour,
            "border": border,
            "protocol": self.protocol(border),
            "plugin": self.plugin,
        }


def check_spec(spec: MetricSpec) -> None:
    """Refuse a registration that a results table could not use; the message names metric and plugin."""
    where = f"metric '{spec.name}' from plugin '{spec.plugin}'"
    if not spec.name or not spec.name.replace("_", "").replace("-", "").isalnum():
        raise RegistryError(f"invalid metric name {spec.name!r} from plugin '{spec.plugin}'")
    for flag in ("higher_is_better", "needs_reference"):
        if not isinstance(getattr(spec, flag), bool):
            raise RegistryError(f"{where}: {flag} must be True or False, got {getattr(spec, flag)!r}")
    if not isinstance(spec.colour, str) or not spec.colour:
        raise RegistryError(f"{where}: colour must name a colour space ('y', 'rgb', ...), got {spec.colour!r}")
    if not isinstance(spec.target, str) and not callable(spec.target):
        raise RegistryError(f"{where}: target must be a class, a function or a 'module:attr' string")


class MetricRegistry:
    """Name → :class:`MetricSpec`; filled by :mod:`restorekit.plugins`, strict like the component registries."""

    def __init__(self) -> None:
        self._entries: dict[str, MetricSpec] = {}

    def add_all(self, specs: Iterable[MetricSpec]) -> None:
        """Add several metrics at once: either all are added or none (duplicates name both plugins)."""
        seen: dict[str, MetricSpec] = {}
        for spec in specs:
            check_spec(spec)
            other = self._entries.get(spec.name) or seen.get(spec.name)
            if other is not None:
                raise RegistryError(
                    f"duplicate metric '{spec.name}': registered by plugin '{other.plugin}' and by plugin '{spec.plugin}'"
                )
            seen[spec.name] = spec
        self._entries.update(seen)

    def copy(self) -> MetricRegistry:
        probe = MetricRegistry()
        probe._entries = dict(self._entries)
        return probe

    def get(self, name: str) -> MetricSpec:
        """The metric called *name*.

        Raises:
            UnknownMetricError: no such metric; the message lists the closest names.
        """
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownMetricError(str(name), self._entries) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[MetricSpec]:
        return iter(sorted(self._entries.values(), key=lambda s: s.name))

    def __len__(self) -> int:
        return len(self._entries)


def metric_registry() -> MetricRegistry:
    """The metrics every loaded plugin registered (loads the plugins on first use)."""
    from restorekit.plugins import get_plugins

    return get_plugins().metrics
