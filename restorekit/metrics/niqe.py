"""NIQE, the Natural Image Quality Evaluator (Mittal, Soundararajan & Bovik 2013), as the MATLAB release computes it.

NIQE needs no reference image: it measures how far the local statistics of an image are from those of
pristine natural photographs. Lower is better. The algorithm of ``niqe.m`` / ``computequality.m``:

1. the image is the luma, rounded to integers as MATLAB's ``rgb2ycbcr`` on a ``uint8`` image gives it
   (BT.601 studio swing, 16..235), cropped to whole 96x96 blocks from the top left;
2. at two scales (the image, then MATLAB's bicubic ``imresize(.., 0.5)`` of it) the mean-subtracted,
   contrast-normalised coefficients ``(I - mu) / (sigma + 1)`` are computed with the model's 7x7 Gaussian
   window and replicated borders;
3. in every block (96x96, then 48x48) an asymmetric generalised Gaussian is fitted, by moment matching
   on a grid of shapes 0.2:0.001:10, to the coefficients and to the products of horizontally,
   vertically and diagonally adjacent ones (circularly shifted): 18 numbers per scale, 36 per block;
4. a multivariate Gaussian is fitted to the blocks' features (NaN-aware mean; covariance over the
   complete rows) and compared with the pristine model: ``sqrt((mu_p - mu)^T pinv((C_p + C) / 2) (mu_p - mu))``.

The local statistics are computed in single precision like the reference (see :func:`_normalised`),
the fits in float64, with torch, vectorised over the blocks. Reproduces MATLAB's
NIQE(baboon, Y, no crop) = 5.7296 (``tests/test_metrics_niqe.py``).

The pristine model (``mu_pris_param``, ``cov_pris_param``, ``gaussian_window``, estimated by the authors
from 125 pristine photographs) is the file BasicSR distributes (Apache-2.0). It is not shipped with
restorekit: :func:`pristine_model` reads the file given, or fetches it once through
:func:`restorekit.hub.fetch` (SHA-256-checked) into ``$RESTOREKIT_HOME/downloads``; offline, the error
names the URL and the exact path where a copy downloaded by hand is picked up.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["NIQE_PARAMS_FILE", "NIQE_PARAMS_SHA256", "NIQE_PARAMS_URL", "NIQEModel", "niqe", "pristine_model"]

NIQE_PARAMS_FILE = "niqe_pris_params.npz"
NIQE_PARAMS_URL = (
    "https://raw.githubusercontent.com/XPixelGroup/BasicSR/8d56e3a045f9fb3e1d8872f92ee4a4f07f886b0a/"
    "basicsr/metrics/niqe_pris_params.npz"
)
"""BasicSR's copy of the authors' pristine model, pinned to a commit (a module attribute, so tests can
point it at a local server)."""
NIQE_PARAMS_SHA256 = "2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296"
NIQE_PARAMS_SIZE = 11850

BLOCK = 96  # computequality.m's blocksizerow / blocksizecol, without overlap
_FEATURES = 36


class NIQEError(ValueError):
    """An image NIQE cannot score, or a pristine-model file that is not one; the message says which."""


@dataclass(frozen=True)
class NIQEModel:
    """The pristine multivariate Gaussian and the smoothing window NIQE compares an image with.

    Attributes:
        mu: mean feature vector, float64 ``(36,)``.
        cov: feature covariance, float64 ``(36, 36)``.
        window: the 7x7 Gaussian window of the local statistics, float64, summing to 1.
        source: the file it was read from (for messages).
    """

    mu: Tensor
    cov: Tensor
    window: Tensor
    source: str = ""


def pristine_model(path: str | os.PathLike[str] | None = None) -> NIQEModel:
    """The NIQE pristine model: read from *path*, or the verified download (fetched on first use).

    Args:
        path: an ``.npz`` holding ``mu_pris_param`` (1, 36), ``cov_pris_param`` (36, 36) and
            ``gaussian_window`` (7, 7), as BasicSR ships it; None: the hash-checked copy in
            ``$RESTOREKIT_HOME/downloads`` (downloaded when missing).

    Returns:
        The model (cached per file).

    Raises:
        restorekit.hub.DownloadError: the file is missing and cannot be downloaded (offline included);
            the message names the URL and where to put the file.
        NIQEError: the file is not a pristine model.

    Example:
        >>> model = pristine_model("../shared/data/metrics/niqe_pris_params.npz")  # doctest: +SKIP
        >>> tuple(model.cov.shape)  # doctest: +SKIP
        (36, 36)
    """
    if path is None:
        from restorekit.hub import fetch
        from restorekit.store import downloads_dir

        path = fetch(
            NIQE_PARAMS_URL,
            downloads_dir() / NIQE_PARAMS_FILE,
            sha256=NIQE_PARAMS_SHA256,
            size=NIQE_PARAMS_SIZE,
            label=f"the NIQE pristine model {NIQE_PARAMS_FILE}",
        )
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_file():
        raise FileNotFoundError(f"{path}: no such NIQE pristine-model file")
    stat = resolved.stat()
    return _read_model(str(resolved), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=4)
def _read_model(path: str, size: int, mtime_ns: int) -> NIQEModel:  # noqa: ARG001 - size/mtime key the cache
    try:
        # allow_pickle=False: an .npz can embed pickled objects; a model file needs none.
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: np.asarray(data[key], dtype=np.float64) for key in data.files}
    except Exception as exc:  # noqa: BLE001 - numpy raises many types for a bad file
        raise NIQEError(f"{path}: not a NIQE pristine-model .npz ({type(exc).__name__}: {exc})") from None
    expected = {"mu_pris_param": (_FEATURES,), "cov_pris_param": (_FEATURES, _FEATURES), "gaussian_window": (7, 7)}
    for key, shape in expected.items():
        if key not in arrays:
            raise NIQEError(f"{path}: not a NIQE pristine model (no {key!r}; it holds {', '.join(arrays) or 'nothing'})")
        if int(np.prod(arrays[key].shape)) != int(np.prod(shape)):
            raise NIQEError(f"{path}: {key} has shape {arrays[key].shape}, expected {shape}")
    return NIQEModel(
        mu=torch.from_numpy(arrays["mu_pris_param"].reshape(_FEATURES)),
        cov=torch.from_numpy(arrays["cov_pris_param"].reshape(_FEATURES, _FEATURES)),
        window=torch.from_numpy(arrays["gaussian_window"].reshape(7, 7)),
        source=path,
    )


# --- the AGGD fit ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ShapeGrid:
    """MATLAB's grid of AGGD shapes 0.2:0.001:10 and the gamma-function ratios the fit reads from it."""

    shapes: Tensor  # a
    ratio: Tensor  # G(2/a)^2 / (G(1/a) G(3/a)): the moment ratio the fit matches
    scale: Tensor  # sqrt(G(1/a) / G(3/a)): standard deviation to AGGD scale
    mean: Tensor  # G(2/a) / G(1/a): the AGGD mean per unit of (right - left) scale


@lru_cache(maxsize=1)
def _grid() -> _ShapeGrid:
    shapes = np.arange(0.2, 10.001, 0.001)  # the very grid MATLAB builds (9801 values)
    # math.gamma is accurate to about an ulp; the ratio is matched against a moment estimate, and gammas
    # from lgamma (a few ulps off) could move a near-tie of the argmin.
    gamma = np.vectorize(math.gamma, otypes=[np.float64])
    g1, g2, g3 = gamma(1.0 / shapes), gamma(2.0 / shapes), gamma(3.0 / shapes)
    return _ShapeGrid(*(torch.from_numpy(a) for a in (shapes, g2 * g2 / (g1 * g3), np.sqrt(g1 / g3), g2 / g1)))


def _aggd(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Grid index of the shape and the left/right scales of an AGGD fitted to each row of *x*."""
    grid = _grid()
    negative, positive = x < 0, x > 0
    squares = x * x
    # A mean over an empty selection is NaN, as in MATLAB: such a block drops out of the covariance.
    left = (squares * negative).sum(1).div(negative.sum(1)).sqrt()
    right = (squares * positive).sum(1).div(positive.sum(1)).sqrt()
    gamma_hat = left / right
    r_hat = x.abs().mean(1).square() / squares.mean(1)
    r_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1).square()
    ratio = grid.ratio.to(x.device)
    # In chunks, so that a large image does not build a (blocks, 9801) matrix at once.
    index = torch.cat([(ratio[None, :] - part[:, None]).square().argmin(1) for part in r_norm.split(256)])
    index = torch.where(torch.isnan(r_norm), torch.zeros_like(index), index)  # MATLAB's min: the first
    scale = grid.scale.to(x.device)[index]
    return index, left * scale, right * scale


def _block_features(blocks: Tensor) -> Tensor:
    """NIQE's 18 features of each ``(B, h, w)`` block of normalised coefficients."""
    grid = _grid()
    shapes, mean = grid.shapes.to(blocks.device), grid.mean.to(blocks.device)
    index, left, right = _aggd(blocks.flatten(1))
    features = [shapes[index], (left + right) / 2]
    # Products of neighbours, horizontal, vertical and both diagonals: circular shifts within the block,
    # as MATLAB's circshift (the pairs of (1, -1) are those of its (-1, 1)).
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
        product = blocks * torch.roll(blocks, shifts=shift, dims=(1, 2))
        index, left, right = _aggd(product.flatten(1))
        features += [shapes[index], (right - left) * mean[index], left, right]
    return torch.stack(features, dim=1)


# --- the image ------------------------------------------------------------------------------------


def _normalised(image: Tensor, window: Tensor) -> Tensor:
    """Mean-subtracted, contrast-normalised coefficients with replicated borders (MATLAB's imfilter).

    The local statistics are single precision, as in the reference: ``sigma`` comes from the
    cancelling difference ``E[x^2] - mu^2`` of numbers near 255^2, and computing it in float64 instead
    moves the score in the 4th decimal (baboon: 5.72996 against MATLAB's 5.72957). The filter sums are
    accumulated in float64 and rounded once to float32.
    """
    x = image.to(torch.float32)
    rows, cols = window.shape
    # A convolution flips the window (a no-op for the symmetric Gaussian, kept exact).
    taps = window.flip(0, 1).to(torch.float64).tolist()

    def smooth(plane: Tensor) -> Tensor:
        padded = F.pad(plane.to(torch.float64)[None, None], (cols // 2,) * 2 + (rows // 2,) * 2, mode="replicate")[0, 0]
        height, width = plane.shape
        # Shift-and-add over the 49 taps: float64 conv2d has no fast CPU kernel and is several times slower.
        out = torch.zeros(height, width, dtype=torch.float64, device=plane.device)
        for i in range(rows):
            for j in range(cols):
                out.add_(padded[i : i + height, j : j + width], alpha=taps[i][j])
        return out.to(torch.float32)

    mu = smooth(x)
    sigma = (smooth(x * x) - mu * mu).abs().sqrt()
    return ((x - mu) / (sigma + 1)).to(torch.float64)


def _blocks(x: Tensor, size: int) -> Tensor:
    rows, cols = x.shape[0] // size, x.shape[1] // size
    return x[: rows * size, : cols * size].reshape(rows, size, cols, size).permute(0, 2, 1, 3).reshape(-1, size, size)


def _luma_levels(image: Tensor) -> Tensor:
    """``(H, W)`` float64 grey levels: Y of an RGB image (integer 16..235) or a grey image on 0..255."""
    from restorekit.metrics.psnr_ssim import _to_8bit_levels

    levels = _to_8bit_levels(image.to(torch.float64))
    if image.shape[0] == 3:
        from restorekit.metrics.psnr_ssim import _luma

        # MATLAB's rgb2ycbcr on a uint8 image returns uint8 Y: rounded half away from zero.
        return _luma(levels, 255.0)[0].add_(0.5).floor_()
    return levels[0]


def niqe_levels(levels: Tensor, model: NIQEModel) -> float:
    """NIQE of one ``(H, W)`` image of grey levels on 0..255 (float), as ``computequality.m``.

    Raises:
        NIQEError: the image is smaller than one 96x96 block, or too flat for the covariance.
    """
    height, width = levels.shape
    rows, cols = height // BLOCK, width // BLOCK
    if rows < 1 or cols < 1:
        raise NIQEError(f"niqe needs at least {BLOCK}x{BLOCK} pixels (one block), got {width}x{height}")
    if rows * cols < 2:
        raise NIQEError(
            f"niqe needs at least two {BLOCK}x{BLOCK} blocks to fit its Gaussian, got {width}x{height}"
        )
    # Grey levels are integers below 2^24 (exact in float32); the second scale is single precision too.
    image = levels[: rows * BLOCK, : cols * BLOCK].to(torch.float32)
    window = model.window.to(image.device)
    features = []
    for scale in (1, 2):
        coefficients = _normalised(image, window)
        features.append(_block_features(_blocks(coefficients, BLOCK // scale)))
        if scale == 1:
            from restorekit.data.resize import imresize

            image = imresize(image / 255.0, 0.5) * 255.0
    feats = torch.cat(features, dim=1)
    valid = feats[~torch.isnan(feats).any(dim=1)]
    if len(valid) < 2:
        raise NIQEError(f"niqe: fewer than two blocks of the {width}x{height} image have usable statistics")
    mu = torch.nanmean(feats, dim=0)
    cov = torch.cov(valid.T)
    mu_p, cov_p = model.mu.to(image.device), model.cov.to(image.device)
    diff = (mu_p - mu)[None]
    quality = diff @ torch.linalg.pinv((cov_p + cov) / 2) @ diff.T
    return float(quality.squeeze().sqrt())


def niqe(
    image: Tensor,
    *,
    border: int = 0,
    model: NIQEModel | None = None,
    params: str | os.PathLike[str] | None = None,
) -> Tensor:
    """NIQE of images in [0, 1] on their luma, as MATLAB's ``niqe`` (lower is better), per image.

    The image is rounded to 8 bits, converted to MATLAB's integer Y (BT.601; a 1-channel image is taken
    as grey levels), *border* pixels are shaved from each side, and the rest is cropped to whole 96x96
    blocks from the top left.

    Args:
        image: ``(C, H, W)`` or ``(N, C, H, W)`` with 3 (RGB) or 1 (grey) channels, values in [0, 1].
        border: pixels shaved from each side first (the scale, for SR tables).
        model: the pristine model; default: :func:`pristine_model` of *params*.
        params: the pristine-model file when *model* is not given (None: the verified download).

    Returns:
        float64 tensor shaped ``(N,)``, or 0-dim for 3-D input.

    Raises:
        NIQEError: the image is smaller than two 96x96 blocks after shaving, or has no usable statistics.
        ValueError: malformed shapes or a negative border.

    Example:
        >>> import torch
        >>> model = pristine_model("../shared/data/metrics/niqe_pris_params.npz")  # doctest: +SKIP
        >>> float(niqe(torch.rand(3, 192, 192), model=model)) > 10  # doctest: +SKIP
        True
    """
    if not isinstance(image, Tensor) or image.dim() not in (3, 4) or image.shape[-3] not in (1, 3):
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"niqe: image must be shaped (C, H, W) or (N, C, H, W) with 1 or 3 channels, got {shape}")
    if isinstance(border, bool) or not isinstance(border, int) or border < 0:
        raise ValueError(f"niqe: border must be a non-negative integer, got {border!r}")
    model = model or pristine_model(params)
    batched = image.dim() == 4
    images = image if batched else image[None]
    values = []
    for one in images:
        if border:
            if 2 * border >= min(one.shape[-2:]):
                raise NIQEError(f"niqe: border {border} leaves nothing of a {one.shape[-1]}x{one.shape[-2]} image")
            one = one[..., border:-border, border:-border]
        values.append(niqe_levels(_luma_levels(one), model))
    out = torch.tensor(values, dtype=torch.float64)
    return out if batched else out[0]
