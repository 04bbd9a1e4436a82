"""Image-quality metrics under the published SR protocol: ``psnr``, ``ssim`` (Y or RGB, 8-bit rounding,
border shaving), with the helpers ``rgb_to_y`` and ``quantize``."""

from __future__ import annotations

from restorekit.metrics.psnr_ssim import psnr, quantize, rgb_to_y, ssim

__all__ = ["psnr", "quantize", "rgb_to_y", "ssim"]
