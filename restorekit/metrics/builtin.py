"""The core's metrics as registry factories: each takes ``border`` (and its own options) and scores images.

Registered by :mod:`restorekit.core_plugin`. The fidelity metrics wrap :func:`~restorekit.metrics.psnr`
and :func:`~restorekit.metrics.ssim` unchanged, so a task scoring through the registry gives the very
floats it gave before the registry existed.
"""

from __future__ import annotations

import os

from torch import Tensor

from restorekit.metrics.psnr_ssim import psnr, ssim

__all__ = [
    "NIQE",
    "PSNR",
    "SSIM",
    "dists",
    "lpips_alex",
    "lpips_vgg",
    "psnr_rgb",
    "psnr_y",
    "ssim_rgb",
    "ssim_y",
]


class PSNR:
    """PSNR in dB (peak 255) of the 8-bit-rounded output, on ``channel`` with ``border`` pixels shaved."""

    def __init__(self, *, border: int = 0, channel: str = "y") -> None:
        self.border, self.channel = border, channel

    def __call__(self, output: Tensor, target: Tensor) -> Tensor:
        return psnr(output, target, border=self.border, channel=self.channel)


class SSIM:
    """SSIM (Wang et al. 2004, 11x11 Gaussian, valid region) on ``channel`` with ``border`` pixels shaved."""

    def __init__(self, *, border: int = 0, channel: str = "y") -> None:
        self.border, self.channel = border, channel

    def __call__(self, output: Tensor, target: Tensor) -> Tensor:
        return ssim(output, target, border=self.border, channel=self.channel)


def psnr_y(*, border: int = 0) -> PSNR:
    """PSNR on the BT.601 luma (the SR tables' PSNR)."""
    return PSNR(border=border, channel="y")


def psnr_rgb(*, border: int = 0) -> PSNR:
    """PSNR over the R, G and B channels together."""
    return PSNR(border=border, channel="rgb")


def ssim_y(*, border: int = 0) -> SSIM:
    """SSIM on the BT.601 luma (the SR tables' SSIM)."""
    return SSIM(border=border, channel="y")


def ssim_rgb(*, border: int = 0) -> SSIM:
    """The mean of the SSIMs of R, G and B."""
    return SSIM(border=border, channel="rgb")


class NIQE:
    """NIQE of the output alone (no reference), on MATLAB's integer Y, ``border`` pixels shaved first.

    Args:
        border: pixels shaved from each side.
        params: the pristine-model ``.npz``; None: the verified download (see
            :func:`restorekit.metrics.niqe.pristine_model`).
    """

    def __init__(self, *, border: int = 0, params: str | os.PathLike[str] | None = None) -> None:
        from restorekit.metrics.niqe import pristine_model

        self.border = border
        self.model = pristine_model(params)

    def __call__(self, output: Tensor, target: Tensor | None = None) -> Tensor:  # noqa: ARG002 - no reference
        from restorekit.metrics.niqe import niqe

        return niqe(output, border=self.border, model=self.model)


def lpips_alex(*, border: int = 0, weights: str = "imagenet", weights_path: str | None = None):  # noqa: ANN201
    """LPIPS with the AlexNet backbone (the usual one in SR papers)."""
    from restorekit.metrics.perceptual import LPIPS

    return LPIPS(net="alex", border=border, weights=weights, weights_path=weights_path)


def lpips_vgg(*, border: int = 0, weights: str = "imagenet", weights_path: str | None = None):  # noqa: ANN201
    """LPIPS with the VGG16 backbone."""
    from restorekit.metrics.perceptual import LPIPS

    return LPIPS(net="vgg", border=border, weights=weights, weights_path=weights_path)


def dists(*, border: int = 0, weights: str = "imagenet", weights_path: str | None = None):  # noqa: ANN201
    """DISTS on VGG16."""
    from restorekit.metrics.perceptual import DISTS

    return DISTS(border=border, weights=weights, weights_path=weights_path)
