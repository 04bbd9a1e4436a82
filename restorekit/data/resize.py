"""MATLAB-compatible bicubic resizing.

Published super-resolution tables (Set5, Set14, BSD100, ...) are computed on low-resolution images made by
MATLAB's ``imresize(hr, 1/scale, 'bicubic')``, and their bicubic baselines upscale with the same function.
PIL, OpenCV and ``torch.nn.functional.interpolate`` all differ from it (kernel coefficient, antialiasing,
boundary handling), which is enough to move PSNR by tenths of a dB. :func:`imresize` reproduces MATLAB:

- the cubic convolution kernel with ``a = -0.5`` (Keys);
- MATLAB's coordinate mapping ``u = x / s + 0.5 * (1 - 1 / s)`` (1-based pixel centres);
- antialiasing when shrinking by stretching the kernel to ``4 / s`` input pixels and scaling it by ``s``;
- weights normalised to sum to one per output pixel;
- out-of-range taps mirrored with the edge pixel repeated (MATLAB's ``[1:n, n:-1:1]`` index table);
- separable passes, the dimension with the smaller scale first;
- for ``uint8`` images, MATLAB's ``uint8`` arithmetic: the intermediate image after the first pass is rounded
  and saturated to ``uint8`` too. This is what makes the shipped ``LR_bicubic`` files bit-exact; a float
  image resized without that intermediate rounding differs from them by about 0.1 grey levels on average
  (up to 2, more where the first pass overshoots 0 or 255).

Each axis becomes a dense ``(out, in)`` weight matrix (or, for very long axes, a compact gather table), so a
batch is resized by two matrix products with no Python loop over pixels.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

__all__ = ["imresize"]

# Above this many weight-matrix entries per axis the dense (out, in) matrix gets wasteful (a 4K frame
# upscaled x4 would need ~240 MB); the gather path then stores only (out, taps). With the cache size below
# this bounds the cached tables to about 256 MB in the worst case, a few MB in practice.
_DENSE_LIMIT = 2_000_000

# Tolerance for ``ceil(in * scale)``: 0.7 * 10 is 7.000000000000001 in binary floating point, and an output
# one pixel larger than the user meant would misalign it with its HR image.
_SIZE_EPS = 1e-9


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5, as in MATLAB's ``imresize``."""
    absx = np.abs(x)
    absx2 = absx * absx
    absx3 = absx2 * absx
    inner = (1.5 * absx3 - 2.5 * absx2 + 1.0) * (absx <= 1.0)
    outer = (-0.5 * absx3 + 2.5 * absx2 - 4.0 * absx + 2.0) * ((absx > 1.0) & (absx <= 2.0))
    return inner + outer


@lru_cache(maxsize=64)
def _contributions(
    in_length: int, out_length: int, scale: float, antialias: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-pixel taps for one axis, computed in float64 as MATLAB does.

    Returns:
        ``(indices, weights)``, both ``(out_length, taps)``; indices are 0-based and already mirrored into
        ``[0, in_length)``; each row of weights sums to one.
    """
    shrinking = scale < 1.0 and antialias
    kernel_width = 4.0 / scale if shrinking else 4.0
    # 1-based output coordinates mapped into 1-based input space: pixel centres line up, not corners.
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    taps = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    distance = u[:, None] - indices
    if shrinking:
        weights = scale * _cubic(scale * distance)
    else:
        weights = _cubic(distance)
    weights = weights / weights.sum(axis=1, keepdims=True)
    # Symmetric boundary with the edge sample repeated: MATLAB indexes the table [1..n, n..1] cyclically.
    mirror = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
    indices = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_length)]
    # Taps that are zero for every output pixel (the two spare columns) only cost time.
    keep = np.any(weights != 0.0, axis=0)
    return indices[:, keep], weights[:, keep]


def _dense_matrix(in_length: int, out_length: int, scale: float, antialias: bool) -> np.ndarray:
    """The ``(out, in)`` float64 matrix of one axis; mirrored taps landing on the same pixel are summed."""
    indices, weights = _contributions(in_length, out_length, scale, antialias)
    matrix = np.zeros((out_length, in_length), dtype=np.float64)
    rows = np.broadcast_to(np.arange(out_length)[:, None], indices.shape)
    np.add.at(matrix, (rows, indices), weights)
    return matrix


@lru_cache(maxsize=16)
def _device_tables(
    in_length: int,
    out_length: int,
    scale: float,
    antialias: bool,
    dense: bool,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[Tensor, Tensor | None]:
    """Weight tables moved to the compute device once; bounded so long-running jobs do not grow."""
    if dense:
        matrix = _dense_matrix(in_length, out_length, scale, antialias)
        return torch.from_numpy(matrix).to(device=device, dtype=dtype), None
    indices, weights = _contributions(in_length, out_length, scale, antialias)
    return (
        torch.from_numpy(weights).to(device=device, dtype=dtype),
        torch.from_numpy(indices).to(device=device),
    )


def _resize_last_axis(x: Tensor, out_length: int, scale: float, antialias: bool) -> Tensor:
    """Resize the last dimension of ``x``."""
    in_length = x.shape[-1]
    dense = out_length * in_length <= _DENSE_LIMIT
    weights, indices = _device_tables(in_length, out_length, scale, antialias, dense, x.device, x.dtype)
    if indices is None:
        return x @ weights.T
    # Gather the taps: (..., out, taps) then a weighted sum, without an (out, in) matrix.
    gathered = x[..., indices]
    return (gathered * weights).sum(dim=-1)


def _check_scale(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"imresize: {name} must be a positive number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"imresize: {name} must be a positive finite number, got {value!r}")
    return value


def _round_uint8(t: Tensor) -> Tensor:
    """MATLAB's conversion of a double to ``uint8``: saturate, then round half away from zero."""
    return torch.floor(t.clamp(0.0, 255.0) + 0.5)


def imresize(
    x: Tensor,
    scale: float | None = None,
    *,
    size: tuple[int, int] | None = None,
    antialias: bool = True,
) -> Tensor:
    """Resize images with MATLAB's ``imresize(..., 'bicubic')``.

    Give either ``scale`` (output size ``ceil(in * scale)`` per side, like MATLAB) or ``size``. Float
    values are neither clamped nor rounded (callers do that). A ``uint8`` tensor is treated as MATLAB treats
    a ``uint8`` image: computed in float64, rounded half away from zero and saturated after each pass, and
    returned as ``uint8``; this reproduces MATLAB-made benchmark files bit for bit.

    Args:
        x: Float or ``uint8`` tensor shaped ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)``, on any device.
            Half precision is computed in float32; float64 stays float64.
        scale: Scale factor for both sides (``0.25`` shrinks by 4, ``4`` enlarges by 4).
        size: Output ``(height, width)``; each side then uses the scale ``out / in``.
        antialias: Widen the kernel when shrinking (MATLAB's default). ``False`` gives plain cubic
            interpolation.

    Returns:
        The resized tensor with the same leading dimensions, dtype and device as ``x``.

    Raises:
        ValueError: If ``x`` is not a 2-, 3- or 4-D floating-point or ``uint8`` tensor, is empty, if
            neither or both of ``scale`` and ``size`` are given, or if they are not positive.

    Example:
        >>> import torch
        >>> hr = torch.rand(2, 3, 48, 48)
        >>> imresize(hr, 1 / 4).shape
        torch.Size([2, 3, 12, 12])
        >>> imresize(hr, size=(30, 40)).shape
        torch.Size([2, 3, 30, 40])
    """
    if not isinstance(x, Tensor):
        raise ValueError(f"imresize: x must be a torch.Tensor, got {type(x).__name__}")
    if not (x.is_floating_point() or x.dtype == torch.uint8):
        raise ValueError(f"imresize: x must be a floating-point or uint8 tensor, got dtype {x.dtype}")
    if x.dim() not in (2, 3, 4):
        raise ValueError(
            f"imresize: x must be shaped (H, W), (C, H, W) or (N, C, H, W), got {tuple(x.shape)}"
        )
    in_h, in_w = x.shape[-2], x.shape[-1]
    if in_h == 0 or in_w == 0:
        raise ValueError(f"imresize: x has an empty spatial size {(in_h, in_w)}")
    if (scale is None) == (size is None):
        raise ValueError("imresize: give exactly one of scale and size")

    if scale is not None:
        scale_h = scale_w = _check_scale(scale, "scale")
        out_h = max(1, math.ceil(in_h * scale_h - _SIZE_EPS))
        out_w = max(1, math.ceil(in_w * scale_w - _SIZE_EPS))
    else:
        if not isinstance(size, (tuple, list)) or len(size) != 2:
            raise ValueError(f"imresize: size must be (height, width), got {size!r}")
        for side in size:
            if isinstance(side, bool) or not isinstance(side, int) or side <= 0:
                raise ValueError(f"imresize: size must hold two positive integers, got {size!r}")
        out_h, out_w = int(size[0]), int(size[1])
        scale_h, scale_w = out_h / in_h, out_w / in_w

    out_dtype = x.dtype
    is_uint8 = x.dtype == torch.uint8
    # uint8 follows MATLAB's double arithmetic so that rounding ties fall the same way.
    compute_dtype = torch.float64 if x.dtype == torch.float64 or is_uint8 else torch.float32
    y = x.to(compute_dtype)

    def finish_pass(t: Tensor) -> Tensor:
        return _round_uint8(t) if is_uint8 else t

    def resize_h(t: Tensor) -> Tensor:
        resized = _resize_last_axis(t.transpose(-1, -2), out_h, scale_h, antialias).transpose(-1, -2)
        return finish_pass(resized)

    def resize_w(t: Tensor) -> Tensor:
        return finish_pass(_resize_last_axis(t, out_w, scale_w, antialias))

    # MATLAB sorts the scales and resizes the most-shrunk dimension first (rows on a tie); this changes
    # the result slightly, and also keeps the intermediate image small.
    if scale_h <= scale_w:
        if (out_h, scale_h) != (in_h, 1.0):
            y = resize_h(y)
        if (out_w, scale_w) != (in_w, 1.0):
            y = resize_w(y)
    else:
        if (out_w, scale_w) != (in_w, 1.0):
            y = resize_w(y)
        if (out_h, scale_h) != (in_h, 1.0):
            y = resize_h(y)
    return y.to(out_dtype).contiguous()
