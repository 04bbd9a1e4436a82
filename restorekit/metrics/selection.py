"""A chosen list of registered metrics, bound to a task's protocol, scoring one image at a time.

A task's metrics (``task.args.metrics`` in a recipe, ``restore eval --metrics``) are names from the
metric registry. :class:`MetricSet` resolves them (with the task's aliases, e.g. super-resolution's
``psnr`` meaning its ``psnr_y``), checks them (an unknown name lists the closest ones), and builds each
metric once, on first use, with the task's border: listing or validating a recipe loads no network
and downloads nothing.

Example:
    >>> import torch
    >>> scores = MetricSet(["psnr_y", "ssim_y"], border=4)
    >>> hr = torch.rand(3, 32, 32)
    >>> scores(hr, hr)["ssim_y"]
    1.0
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from restorekit.metrics.registry import MetricRegistry, MetricSpec, metric_registry

__all__ = ["MetricSet", "parse_metric_names", "resolve_metric_names"]


def parse_metric_names(text: str | Iterable[str]) -> list[str]:
    """``"psnr, ssim lpips"`` (commas and/or spaces; or a list of such strings) to ``["psnr", "ssim", "lpips"]``.

    Raises:
        ValueError: no name at all.
    """
    parts = [text] if isinstance(text, str) else list(text)
    names = [name for part in parts for name in re.split(r"[,\s]+", str(part).strip().lower()) if name]
    if not names:
        raise ValueError("no metric named; give e.g. psnr,ssim,lpips,niqe")
    return names


def resolve_metric_names(
    names: Iterable[str], *, aliases: Mapping[str, str] | None = None, registry: MetricRegistry | None = None
) -> tuple[str, ...]:
    """Registered names for *names*: aliases applied, duplicates dropped, order kept.

    Raises:
        restorekit.metrics.registry.UnknownMetricError: a name no plugin registered (with did-you-mean).
        ValueError: *names* is not a list of strings.
    """
    registry = registry or metric_registry()
    aliases = aliases or {}
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"metrics must be a list of metric names, got {names!r}")
    resolved: list[str] = []
    for name in names:
        key = aliases.get(name, name)
        registry.get(key)  # raises with did-you-mean
        if key not in resolved:
            resolved.append(key)
    return tuple(resolved)


class MetricSet:
    """Registered metrics bound to one protocol; calling it scores one output (and its reference).

    Args:
        names: registered metric names (aliases must already be resolved, see :func:`resolve_metric_names`).
        border: pixels every metric shaves from each side (the task's: the scale for super-resolution).
        registry: where the names are looked up (default: the loaded plugins').

    Raises:
        restorekit.metrics.registry.UnknownMetricError: an unregistered name.
    """

    def __init__(self, names: Sequence[str], *, border: int = 0, registry: MetricRegistry | None = None) -> None:
        registry = registry or metric_registry()
        self.specs: tuple[MetricSpec, ...] = tuple(registry.get(name) for name in names)
        self.names: tuple[str, ...] = tuple(spec.name for spec in self.specs)
        self.border = border
        self._built: dict[str, Any] = {}

    @property
    def needs_reference(self) -> bool:
        """Whether any of the metrics compares with a reference."""
        return any(spec.needs_reference for spec in self.specs)

    def metric(self, name: str) -> Any:
        """The built metric *name* (built on first use: LPIPS loads its network then)."""
        if name not in self._built:
            spec = next(s for s in self.specs if s.name == name)
            self._built[name] = spec.build(border=self.border)
        return self._built[name]

    def __call__(self, output: Any, target: Any | None) -> dict[str, float]:
        """Each metric's value for one image (``(C, H, W)``; a batch gives the mean), in the set's order.

        Raises:
            ValueError: a metric needs a reference and *target* is None, or cannot measure the images
                (too small for the border, shapes that differ).
        """
        scores: dict[str, float] = {}
        for spec in self.specs:
            if spec.needs_reference and target is None:
                raise ValueError(f"{spec.name} compares with a reference image, and there is none")
            values = self.metric(spec.name)(output, target if spec.needs_reference else None)
            scores[spec.name] = float(values.mean()) if hasattr(values, "mean") else float(values)
        return scores

    def describe(self) -> list[dict[str, Any]]:
        """What a report says about each metric: direction, reference, colour, border, protocol."""
        return [spec.to_dict(self.border) for spec in self.specs]

    def __repr__(self) -> str:
        return f"MetricSet({list(self.names)!r}, border={self.border})"
