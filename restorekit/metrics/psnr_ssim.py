"""PSNR and SSIM under the protocol of the published super-resolution tables.

The numbers in SR papers (bicubic Set5 x4 = 28.42 dB / 0.810, ...) come from a fixed MATLAB recipe, and every
detail moves the result:

- the output is rounded to 8 bits first (``uint8``: saturate, round half away from zero);
- the luma is the BT.601 "studio swing" Y, ``16 + (65.481 R + 128.553 G + 24.966 B) / 255`` with R, G, B in
  0..255, kept as a float (MATLAB's ``rgb2ycbcr`` on a double image, times 255);
- ``border`` pixels (usually the scale) are shaved from each side;
- PSNR is ``20 log10(255 / sqrt(MSE))``;
- SSIM is Wang et al.'s: an 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, L = 255, evaluated
  only where the window fits inside the image (no padding), averaged over that map.

A 1-channel image is a grayscale one (R = G = B), so it scores the same as its RGB replication. Everything
is computed in float64 on the inputs' device, vectorised over the batch (on the CPU, large images a few at a
time, which keeps them in cache and is faster).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import torch
from torch import Tensor

__all__ = ["psnr", "quantize", "rgb_to_y", "ssim"]

# BT.601 luma weights for R, G, B in 0..255 giving Y in 16..235 (MATLAB's rgb2ycbcr, first row).
_Y_WEIGHTS = (65.481, 128.553, 24.966)
_Y_OFFSET = 16.0

_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_K1 = 0.01
_SSIM_K2 = 0.03
_DATA_RANGE = 255.0

_CHANNELS = ("y", "rgb")


def rgb_to_y(x: Tensor) -> Tensor:
    """BT.601 luma of an RGB image in [0, 1], on the 16..235 scale, as a float.

    A 1-channel input is taken as a grayscale image, i.e. as RGB with R = G = B, so a grayscale file gives
    the same Y whether it is read as ``L`` or as replicated RGB.

    Args:
        x: Tensor shaped ``(..., 3, H, W)`` or ``(..., 1, H, W)`` with values in [0, 1].

    Returns:
        Y shaped ``(..., 1, H, W)`` in the input's floating dtype (float32 for integer input).

    Raises:
        ValueError: If the channel dimension is neither 1 nor 3.

    Example:
        >>> import torch
        >>> rgb_to_y(torch.ones(3, 2, 2)).flatten().tolist()
        [235.0, 235.0, 235.0, 235.0]
    """
    if x.dim() < 3 or x.shape[-3] not in (1, 3):
        raise ValueError(f"rgb_to_y: x must be shaped (..., 3, H, W) or (..., 1, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.float()
    return _luma(x, 1.0)


def _luma(x: Tensor, peak: float) -> Tensor:
    """Y on 16..235 from R, G, B on 0..``peak``; a single channel counts as R = G = B."""
    if x.shape[-3] == 1:
        return x * (sum(_Y_WEIGHTS) / peak) + _Y_OFFSET
    r, g, b = x.unbind(dim=-3)
    # In-place accumulation: on full benchmark images every temporary costs a pass over memory.
    y = r * (_Y_WEIGHTS[0] / peak)
    y.add_(g, alpha=_Y_WEIGHTS[1] / peak).add_(b, alpha=_Y_WEIGHTS[2] / peak).add_(_Y_OFFSET)
    return y.unsqueeze(-3)


def _to_8bit_levels(x: Tensor) -> Tensor:
    """[0, 1] values to integer levels 0..255 (as floats), rounding like MATLAB's ``im2uint8``."""
    # torch.round rounds ties to even; MATLAB rounds half away from zero. Rounding before clamping gives
    # the same levels as clamping first and saves a pass.
    return (x * 255.0).add_(0.5).floor_().clamp_(0.0, 255.0)


def quantize(x: Tensor) -> Tensor:
    """Clamp to [0, 1] and round to the nearest 1/255 step, as saving an 8-bit image would.

    Args:
        x: Floating-point tensor of any shape.

    Returns:
        A tensor of the same shape and dtype whose values are multiples of 1/255 in [0, 1].

    Raises:
        ValueError: If ``x`` is not floating-point.
    """
    if not x.is_floating_point():
        raise ValueError(f"quantize: x must be a floating-point tensor, got dtype {x.dtype}")
    return _to_8bit_levels(x) / 255.0


def _validate(output: Tensor, target: Tensor, border: int, channel: str, metric: str) -> None:
    for name, t in (("output", output), ("target", target)):
        if not isinstance(t, Tensor):
            raise ValueError(f"{metric}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() not in (3, 4):
            raise ValueError(
                f"{metric}: {name} must be shaped (C, H, W) or (N, C, H, W), got {tuple(t.shape)}"
            )
        if t.shape[-3] not in (1, 3):
            raise ValueError(
                f"{metric}: {name} must have 1 (grayscale) or 3 (RGB) channels, got {t.shape[-3]}"
            )
    if output.shape != target.shape:
        raise ValueError(
            f"{metric}: output and target shapes differ: {tuple(output.shape)} vs {tuple(target.shape)}"
        )
    if channel not in _CHANNELS:
        raise ValueError(f"{metric}: channel must be one of {_CHANNELS}, got {channel!r}")
    if isinstance(border, bool) or not isinstance(border, int) or border < 0:
        raise ValueError(f"{metric}: border must be a non-negative integer, got {border!r}")
    height, width = output.shape[-2:]
    if 2 * border >= min(height, width):
        raise ValueError(f"{metric}: border {border} leaves nothing of a {height}x{width} image")


def _levels(output: Tensor, target: Tensor, channel: str, quantize_output: bool) -> tuple[Tensor, Tensor]:
    """Quantize and convert to the evaluated channel(s): float64 on 0..255 (Y: 16..235)."""
    output = output.to(torch.float64)
    target = target.to(device=output.device, dtype=torch.float64)
    # Targets come from 8-bit files; rounding them is a no-op there and keeps 16-bit targets comparable.
    target = _to_8bit_levels(target)
    output = _to_8bit_levels(output) if quantize_output else output * 255.0
    if channel == "y":
        output = _luma(output, 255.0)
        target = _luma(target, 255.0)
    return output, target


# On the CPU, a float64 image of a few megabytes falls out of cache between the dozen passes a metric
# makes over it: evaluating large images a few at a time is 2-3 times faster than the whole batch at once.
_CPU_CHUNK_PIXELS = 1 << 18


def _evaluate(
    output: Tensor,
    target: Tensor,
    border: int,
    channel: str,
    quantize_output: bool,
    metric: str,
    score: Callable[[Tensor, Tensor], Tensor],
) -> Tensor:
    """Validate, shave the border, then ``score`` chunks of the batch; one float64 value per image."""
    _validate(output, target, border, channel, metric)
    batched = output.dim() == 4
    if not batched:
        output, target = output.unsqueeze(0), target.unsqueeze(0)
    # Every conversion is per pixel, so shaving first gives the same result on less data.
    if border:
        output = output[..., border:-border, border:-border]
        target = target[..., border:-border, border:-border]
    if output.device.type == "cpu":
        chunk = max(1, _CPU_CHUNK_PIXELS // max(1, output[0].numel()))
    else:
        chunk = max(1, output.shape[0])
    values = torch.cat(
        [
            score(*_levels(output_part, target_part, channel, quantize_output))
            for output_part, target_part in zip(output.split(chunk), target.split(chunk))
        ]
    )
    return values if batched else values[0]


def psnr(
    output: Tensor,
    target: Tensor,
    *,
    border: int = 0,
    channel: str = "y",
    quantize_output: bool = True,
) -> Tensor:
    """Peak signal-to-noise ratio in dB with peak 255, per image.

    Args:
        output: Restored images in [0, 1], ``(C, H, W)`` or ``(N, C, H, W)``, 3 (RGB) or 1 (grayscale)
            channels.
        target: Reference images, same shape; rounded to 8 bits.
        border: Pixels shaved from each side before measuring (the scale factor in SR tables).
        channel: ``"y"`` for the BT.601 luma, ``"rgb"`` for all channels (MSE over all of them).
        quantize_output: Round ``output`` to 8 bits first, as the published protocol does.

    Returns:
        float64 tensor shaped ``(N,)``, or 0-dim for 3-D input; ``inf`` where the images are identical.

    Raises:
        ValueError: On mismatched or malformed shapes, an unknown ``channel`` or a too-large ``border``.

    Example:
        >>> import torch
        >>> hr = torch.rand(2, 3, 32, 32)
        >>> psnr(hr, hr, border=4).tolist()
        [inf, inf]
    """
    return _evaluate(output, target, border, channel, quantize_output, "psnr", _psnr_levels)


def _psnr_levels(output: Tensor, target: Tensor) -> Tensor:
    mse = (output - target).square_().mean(dim=(1, 2, 3))
    return 20.0 * torch.log10(_DATA_RANGE / mse.sqrt())


@lru_cache(maxsize=1)
def _gaussian_window_1d() -> tuple[float, ...]:
    """The normalised 1-D factor of MATLAB's ``fspecial('gaussian', 11, 1.5)``, in float64."""
    radius = _SSIM_WINDOW // 2
    coords = torch.arange(-radius, radius + 1, dtype=torch.float64)
    window = torch.exp(-(coords**2) / (2.0 * _SSIM_SIGMA**2))
    return tuple((window / window.sum()).tolist())


def _filter_valid(x: Tensor) -> Tensor:
    """Separable 11x11 Gaussian filtering of every plane of ``x``, keeping only the 'valid' region."""
    # Shift-and-add over the 11 taps of each axis: float64 conv2d has no optimised CPU kernel and is
    # 2-4 times slower than these 22 whole-tensor operations (which also run as-is on a GPU).
    window = _gaussian_window_1d()
    taps = len(window)
    rows = x.shape[-2] - taps + 1
    filtered = x[..., 0:rows, :] * window[0]
    for k in range(1, taps):
        filtered.add_(x[..., k : k + rows, :], alpha=window[k])
    cols = x.shape[-1] - taps + 1
    out = filtered[..., 0:cols] * window[0]
    for k in range(1, taps):
        out.add_(filtered[..., k : k + cols], alpha=window[k])
    return out


def ssim(
    output: Tensor,
    target: Tensor,
    *,
    border: int = 0,
    channel: str = "y",
    quantize_output: bool = True,
) -> Tensor:
    """Structural similarity (Wang et al. 2004) with the published SR protocol, per image.

    Args:
        output: Restored images in [0, 1], ``(C, H, W)`` or ``(N, C, H, W)``, 3 (RGB) or 1 (grayscale)
            channels.
        target: Reference images, same shape; rounded to 8 bits.
        border: Pixels shaved from each side before measuring.
        channel: ``"y"`` for the BT.601 luma, ``"rgb"`` for the mean of the per-channel SSIMs.
        quantize_output: Round ``output`` to 8 bits first, as the published protocol does.

    Returns:
        float64 tensor shaped ``(N,)``, or 0-dim for 3-D input; 1 for identical images.

    Raises:
        ValueError: On mismatched or malformed shapes, an unknown ``channel``, or when less than 11x11
            pixels remain after shaving ``border``.

    Example:
        >>> import torch
        >>> hr = torch.rand(3, 32, 32)
        >>> float(ssim(hr, hr))
        1.0
    """
    _validate(output, target, border, channel, "ssim")
    if min(output.shape[-2:]) - 2 * border < _SSIM_WINDOW:
        raise ValueError(
            f"ssim: needs at least {_SSIM_WINDOW}x{_SSIM_WINDOW} pixels after shaving the border, "
            f"got {output.shape[-2] - 2 * border}x{output.shape[-1] - 2 * border}"
        )
    return _evaluate(output, target, border, channel, quantize_output, "ssim", _ssim_levels)


def _ssim_levels(output: Tensor, target: Tensor) -> Tensor:
    c1 = (_SSIM_K1 * _DATA_RANGE) ** 2
    c2 = (_SSIM_K2 * _DATA_RANGE) ** 2
    channels = output.shape[1]
    # One filtering pass over the five local statistics of every channel.
    planes = torch.cat([output, target, output * output, target * target, output * target], dim=1)
    stats = _filter_valid(planes)
    mu_x, mu_y, xx, yy, xy = stats.split(channels, dim=1)
    mu_xy = mu_x * mu_y
    mu_x2, mu_y2 = mu_x.square(), mu_y.square()
    # (2 mu_x mu_y + C1)(2 cov_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(var_x + var_y + C2)), built in place.
    numerator = (2.0 * mu_xy + c1).mul_((xy - mu_xy).mul_(2.0).add_(c2))
    variances = (xx - mu_x2).add_(yy).sub_(mu_y2).add_(c2)
    denominator = (mu_x2 + mu_y2).add_(c1).mul_(variances)
    ssim_map = numerator.div_(denominator)
    # Mean over the map of each channel, then over channels (all maps have the same size).
    return ssim_map.mean(dim=(1, 2, 3))
