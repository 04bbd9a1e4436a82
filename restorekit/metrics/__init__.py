"""Image-quality metrics: the published SR protocol's ``psnr`` and ``ssim`` (Y or RGB, 8-bit rounding,
border shaving, with the helpers ``rgb_to_y`` and ``quantize``), NIQE (:mod:`restorekit.metrics.niqe`),
LPIPS and DISTS (:mod:`restorekit.metrics.perceptual`), and the metric registry that names them for
tasks, ``restore eval --metrics`` and plugins (:mod:`restorekit.metrics.registry`,
:mod:`restorekit.metrics.selection`).

Importing this package imports no torch (the plugin manager reads the registry at start-up); the
functions load on first access.
"""

from __future__ import annotations

from typing import Any

__all__ = ["psnr", "quantize", "rgb_to_y", "ssim"]

_LAZY = {
    "psnr": "restorekit.metrics.psnr_ssim",
    "ssim": "restorekit.metrics.psnr_ssim",
    "quantize": "restorekit.metrics.psnr_ssim",
    "rgb_to_y": "restorekit.metrics.psnr_ssim",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
