"""Synthetic camera-shake blur (Boracchi & Foi 2012, as used by DeblurGAN) and real blur kernels.

DeblurGAN (Kupyn et al. 2018, Sec. 4.1) synthesises motion blur with the trajectory model of Boracchi and
Foi, "Modeling the performance of image restoration from motion blur" (IEEE TIP 2012):

1. **Trajectory.** A particle moves in the continuous plane for ``num_steps`` time steps at constant speed,
   so the whole path has length ``max_length`` pixels. At every step its velocity receives a Gaussian
   perturbation (hand tremor) and an inertial pull back towards the origin (the hand returning to where it
   aimed); with a small probability an *impulsive* shake reverses the direction, give or take half a
   radian (an abrupt jerk). ``anxiety`` scales the perturbations and the impulse probability; the
   per-trajectory strengths of the three terms are drawn at random, so one ``anxiety`` gives anything
   from near-straight lines to tangled scribbles.
2. **PSF.** The trajectory is integrated over the first ``exposure`` fraction of the time and rasterised
   at sub-pixel accuracy: each sample spreads its weight over its four neighbouring pixels by bilinear
   interpolation. The result is non-negative and normalised to sum 1. Short exposures give small blurs
   from the same shake.
3. **Blur.** The sharp image is convolved with the PSF (:func:`blur`).

:func:`random_motion_kernel` wraps steps 1 and 2 into a fixed-size kernel whose centroid sits exactly on
the kernel's centre, so blurring does not shift the image against its sharp target.

Real kernels (Levin et al. 2009, the 12 kernels of Köhler-style benchmarks, large PNG kernels) are read by
:func:`load_kernels`.

Conventions: a kernel ``k`` of size ``Kh x Kw`` has its anchor at ``(Kh // 2, Kw // 2)`` (the centre for
odd sizes) and :func:`blur` computes the true convolution
``y(p) = sum_q k(anchor + q) x(p - q)``, as MATLAB's ``conv2``/``imfilter(..., 'conv')``: blurring a single
bright pixel draws the kernel itself, unflipped, centred on it.
"""

from __future__ import annotations

import cmath
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = [
    "blur",
    "center_kernel",
    "load_kernels",
    "random_motion_kernel",
    "random_trajectory",
    "trajectory_to_psf",
]

# DeblurGAN's choices when a trajectory parameter is not given: shake levels and exposure fractions
# (its blur script draws the anxiety from this list and keeps the 1/10, 1/2 and full-exposure PSFs).
DEBLURGAN_ANXIETIES = (0.003, 0.005, 0.007, 0.008, 0.009, 0.01)
DEBLURGAN_EXPOSURES = (0.1, 0.5, 1.0)

# Upper bounds of the per-trajectory strengths of Boracchi & Foi's model, each drawn uniformly from
# [0, bound): the inertial pull to the origin, the probability factor of an impulsive shake, and the
# scale of the Gaussian perturbation.
_CENTRIPETAL_MAX = 0.7
_IMPULSE_PROB_MAX = 0.2
_GAUSSIAN_MAX = 10.0

# Kernels with a side of at least this many taps are applied by FFT in "auto" mode; direct convolution
# wins below (measured on CPU, batches of 16 crops of 256x256: 15 taps conv 2x faster, 31 taps FFT 1.6x).
_FFT_MIN_SIDE = 21

_MAT_SUFFIXES = {".mat"}


# --- trajectories and PSFs ------------------------------------------------------------------------


def random_trajectory(
    *,
    canvas: int = 64,
    max_length: float = 60.0,
    anxiety: float = 0.005,
    num_steps: int = 2000,
    generator: torch.Generator,
) -> Tensor:
    """A random camera-shake trajectory, after Boracchi & Foi (2012).

    The particle moves at constant speed ``max_length / (num_steps - 1)`` per step, so the path length is
    ``max_length`` exactly; its bounding box is centred on the ``canvas x canvas`` grid.

    Args:
        canvas: side of the pixel grid the trajectory is placed on.
        max_length: total path length in pixels; at most ``canvas - 1`` so that the path fits.
        anxiety: amount of shake in [0, 1]: scales the Gaussian and inertial perturbations and the
            probability of impulsive shakes (0 gives a straight line).
        num_steps: number of samples along the path.
        generator: source of every random draw (the result is a function of its state alone).

    Returns:
        float64 tensor ``(num_steps, 2)`` of positions ``(x, y)`` = (column, row) in pixels.

    Raises:
        ValueError: an argument is out of range.

    Example:
        >>> import torch
        >>> path = random_trajectory(generator=torch.Generator().manual_seed(0))
        >>> path.shape
        torch.Size([2000, 2])
    """
    if canvas < 2:
        raise ValueError(f"canvas must be at least 2; got {canvas}")
    if not 0 < max_length <= canvas - 1:
        raise ValueError(f"max_length must be in (0, canvas - 1 = {canvas - 1}] so the path fits; got {max_length}")
    if not 0.0 <= anxiety <= 1.0:
        raise ValueError(f"anxiety must be in [0, 1]; got {anxiety}")
    if num_steps < 2:
        raise ValueError(f"num_steps must be at least 2; got {num_steps}")

    strengths = torch.rand(4, generator=generator, dtype=torch.float64).tolist()
    centripetal = _CENTRIPETAL_MAX * strengths[0]
    impulse_prob = _IMPULSE_PROB_MAX * strengths[1] * anxiety
    gaussian = _GAUSSIAN_MAX * strengths[2]
    heading = 2 * math.pi * strengths[3]
    # All per-step draws at once: the loop below is then plain Python complex arithmetic.
    uniforms = torch.rand(num_steps - 1, 2, generator=generator, dtype=torch.float64).tolist()
    normals = torch.randn(num_steps - 1, 2, generator=generator, dtype=torch.float64).tolist()

    step = max_length / (num_steps - 1)
    velocity = cmath.exp(1j * heading) * step
    position = 0j
    points = [position]
    for (u_jump, u_angle), (n_x, n_y) in zip(uniforms, normals):
        change = anxiety * (gaussian * complex(n_x, n_y) - centripetal * position) * step
        if u_jump < impulse_prob:
            # An abrupt jerk: the velocity turns round, give or take half a radian.
            change += 2 * velocity * cmath.exp(1j * (math.pi + u_angle - 0.5))
        moved = velocity + change
        speed = abs(moved)
        # A perturbation that cancels the velocity exactly leaves no heading: keep the old one then.
        if speed > 0:
            velocity = moved / speed * step
        position += velocity
        points.append(position)

    path = torch.view_as_real(torch.tensor(points, dtype=torch.complex128))
    low, high = path.min(dim=0).values, path.max(dim=0).values
    return path - low + ((canvas - 1) - (high - low)) / 2


def _exposure_weights(num_steps: int, exposure: float, dtype: torch.dtype = torch.float64) -> Tensor:
    """Weight of each trajectory sample when integrating over the first ``exposure`` of the time.

    Sample ``t`` covers ``[t, t + 1)`` in sample units; the exposure ends at ``exposure * num_steps``, so the
    last sample it reaches may count partly. At least part of the first sample always counts.
    """
    end = max(exposure * num_steps, 1e-6)
    return (end - torch.arange(num_steps, dtype=dtype)).clamp(0.0, 1.0)


def _as_positions(trajectory: Tensor) -> Tensor:
    if trajectory.is_complex():
        trajectory = torch.stack([trajectory.real, trajectory.imag], dim=-1)
    if trajectory.dim() != 2 or trajectory.shape[1] != 2 or trajectory.shape[0] < 1:
        raise ValueError(f"trajectory must be (T, 2) positions or a complex (T,) vector; got {tuple(trajectory.shape)}")
    return trajectory.to(torch.float64)


def trajectory_to_psf(trajectory: Tensor, *, canvas: int = 64, exposure: float = 1.0) -> Tensor:
    """Rasterise a trajectory into a point-spread function by sub-pixel (bilinear) interpolation.

    Args:
        trajectory: positions ``(T, 2)`` as ``(x, y)`` pixels, or a complex ``(T,)`` vector ``x + iy``.
            Positions outside the grid are clamped onto its edge.
        canvas: side of the PSF.
        exposure: fraction in (0, 1] of the trajectory's time that the shutter is open.

    Returns:
        float32 ``(canvas, canvas)`` PSF, non-negative, summing to 1 (rows are ``y``, columns ``x``).

    Raises:
        ValueError: malformed trajectory, ``canvas < 2`` or ``exposure`` outside (0, 1].

    Example:
        >>> import torch
        >>> psf = trajectory_to_psf(random_trajectory(generator=torch.Generator().manual_seed(0)), exposure=0.5)
        >>> round(float(psf.sum()), 4)
        1.0
    """
    if canvas < 2:
        raise ValueError(f"canvas must be at least 2; got {canvas}")
    if not 0.0 < exposure <= 1.0:
        raise ValueError(f"exposure must be in (0, 1]; got {exposure}")
    positions = _as_positions(trajectory)
    return _rasterise(positions, _exposure_weights(positions.shape[0], exposure), canvas)


def _rasterise(positions: Tensor, weights: Tensor, canvas: int) -> Tensor:
    """Bilinear splatting of weighted ``(x, y)`` samples onto a ``canvas x canvas`` grid, normalised."""
    used = weights > 0
    positions, weights = positions[used].clamp(0.0, canvas - 1.0), weights[used]
    # The right/bottom neighbour of a sample on the last column/row would fall off the grid; anchoring it
    # one pixel earlier with a fractional part of 1 spreads the same weight to the same pixel.
    corner = positions.floor().clamp(0.0, canvas - 2.0)
    frac = positions - corner
    ix, iy = corner[:, 0].long(), corner[:, 1].long()
    fx, fy = frac[:, 0], frac[:, 1]
    psf = torch.zeros(canvas * canvas, dtype=torch.float64)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            psf.index_add_(0, (iy + dy) * canvas + (ix + dx), weights * wy * wx)
    psf = psf.view(canvas, canvas)
    return (psf / psf.sum()).to(torch.float32)


def _choose(value: float | Sequence[float], generator: torch.Generator, name: str) -> float:
    """A fixed value, or one element of a sequence picked uniformly."""
    if isinstance(value, (int, float)):
        return float(value)
    options = list(value)
    if not options:
        raise ValueError(f"{name} must be a number or a non-empty list of numbers")
    return float(options[int(torch.randint(len(options), (1,), generator=generator))])


def random_motion_kernel(
    *,
    size: int = 31,
    generator: torch.Generator,
    max_length: float | None = None,
    anxiety: float | Sequence[float] = DEBLURGAN_ANXIETIES,
    exposure: float | Sequence[float] = DEBLURGAN_EXPOSURES,
    num_steps: int = 2000,
) -> Tensor:
    """A random camera-shake kernel of a fixed size, centred on its centroid.

    A trajectory (:func:`random_trajectory`) is integrated over the exposure; the samples the exposure
    covers are shifted so that their weighted centroid — which is also the PSF's centroid, since bilinear
    splatting preserves it — lands exactly on the kernel's centre. When a curled path then reaches past the
    kernel's edge it is shrunk about the centre just enough to fit (a slightly shorter blur, never a
    cropped one). Finally it is rasterised as in :func:`trajectory_to_psf`.

    Args:
        size: kernel side (odd, so that the centre is a pixel).
        generator: source of every random draw.
        max_length: path length in pixels at full exposure; default ``size - 1``. At most ``size - 1``.
        anxiety: shake level, or a list to pick one from uniformly (default: DeblurGAN's levels
            0.003 to 0.01).
        exposure: fraction of the path integrated, or a list to pick from (default: DeblurGAN's 1/10, 1/2
            and 1).
        num_steps: samples along the path.

    Returns:
        float32 ``(size, size)`` kernel, non-negative, summing to 1.

    Raises:
        ValueError: ``size`` is even or below 3, or another argument is out of range.

    Example:
        >>> import torch
        >>> kernel = random_motion_kernel(size=21, generator=torch.Generator().manual_seed(1))
        >>> kernel.shape, round(float(kernel.sum()), 4)
        (torch.Size([21, 21]), 1.0)
    """
    if size < 3 or size % 2 == 0:
        raise ValueError(f"size must be odd and at least 3; got {size}")
    length = float(size - 1) if max_length is None else float(max_length)
    chosen_anxiety = _choose(anxiety, generator, "anxiety")
    chosen_exposure = _choose(exposure, generator, "exposure")
    if not 0.0 < chosen_exposure <= 1.0:
        raise ValueError(f"exposure must be in (0, 1]; got {chosen_exposure}")
    path = random_trajectory(
        canvas=size, max_length=length, anxiety=chosen_anxiety, num_steps=num_steps, generator=generator
    )
    weights = _exposure_weights(num_steps, chosen_exposure)
    used = weights > 0
    path, weights = path[used], weights[used]
    centre = (size - 1) / 2
    centroid = (weights[:, None] * path).sum(dim=0) / weights.sum()
    offsets = path - centroid
    reach = float(offsets.abs().max())
    if reach > centre:
        offsets = offsets * (centre / reach)
    return _rasterise(offsets + centre, weights, size)


def center_kernel(kernel: Tensor, size: int) -> Tensor:
    """Zero-pad a kernel to ``size x size`` keeping its anchor (``K // 2``) on the centre.

    Args:
        kernel: ``(Kh, Kw)`` kernel.
        size: odd side of the result, at least as large as the kernel's sides.

    Returns:
        ``(size, size)`` kernel with the same values and the same blur.

    Raises:
        ValueError: ``size`` is even, or smaller than the kernel.
    """
    if size % 2 == 0:
        raise ValueError(f"size must be odd; got {size}")
    kh, kw = kernel.shape[-2:]
    if kh > size or kw > size:
        raise ValueError(f"a {kh}x{kw} kernel does not fit in {size}x{size}; raise the kernel size")
    top, left = size // 2 - kh // 2, size // 2 - kw // 2
    out = kernel.new_zeros(size, size)
    out[top : top + kh, left : left + kw] = kernel
    return out


# --- blurring -------------------------------------------------------------------------------------


def blur(image: Tensor, kernel: Tensor, *, padding: str = "reflect", method: str = "auto") -> Tensor:
    """Convolve images with blur kernels (true convolution, anchor at ``K // 2``).

    Args:
        image: ``(C, H, W)`` or ``(N, C, H, W)`` floating-point images.
        kernel: one ``(Kh, Kw)`` kernel for all images, or ``(N, Kh, Kw)``: one per image (all channels of
            an image share it). Cast to the image's device and dtype.
        padding: ``"reflect"`` (replicate where the image is too small to reflect), ``"replicate"`` or
            ``"circular"`` keep the size; ``"valid"`` returns only the ``(H - Kh + 1) x (W - Kw + 1)``
            pixels the kernel sees entirely — give it a crop with a ``K // 2`` margin of real image
            around the region wanted to blur without any edge effect.
        method: ``"conv"`` (grouped direct convolution), ``"fft"`` or ``"auto"`` (FFT for kernels with a
            side of 21 or more). Both give the same result up to rounding.

    Returns:
        The blurred images: same shape as ``image`` except with ``padding="valid"``.

    Raises:
        ValueError: malformed shapes, a batch of kernels that does not match the images, or an unknown
            ``padding`` or ``method``.

    Example:
        >>> import torch
        >>> delta = torch.zeros(1, 9, 9); delta[0, 4, 4] = 1
        >>> kernel = torch.arange(9.0).view(3, 3)
        >>> torch.equal(blur(delta, kernel)[0, 3:6, 3:6], kernel)
        True
    """
    if image.dim() not in (3, 4) or not image.is_floating_point():
        raise ValueError(f"image must be a floating-point (C, H, W) or (N, C, H, W) tensor; got {tuple(image.shape)}")
    if padding not in ("reflect", "replicate", "circular", "valid"):
        raise ValueError(f"padding must be reflect, replicate, circular or valid; got {padding!r}")
    if method not in ("auto", "conv", "fft"):
        raise ValueError(f"method must be auto, conv or fft; got {method!r}")
    single = image.dim() == 3
    x = image[None] if single else image
    n, c, h, w = x.shape
    k = kernel.to(device=x.device, dtype=x.dtype)
    if k.dim() == 2:
        k = k[None].expand(n, -1, -1)
    if k.dim() != 3 or k.shape[0] != n:
        raise ValueError(f"kernel must be (Kh, Kw) or one per image (N={n}, Kh, Kw); got {tuple(kernel.shape)}")
    kh, kw = k.shape[-2:]
    if padding != "valid":
        # Anchor at K // 2: the kernel reaches K - 1 - K // 2 pixels to the left/top, K // 2 to the right.
        pads = (kw - 1 - kw // 2, kw // 2, kh - 1 - kh // 2, kh // 2)
        mode = padding
        if mode == "reflect" and (max(pads[:2]) >= w or max(pads[2:]) >= h):
            mode = "replicate"
        x = F.pad(x, pads, mode=mode)
    elif h < kh or w < kw:
        raise ValueError(f"a {h}x{w} image is smaller than the {kh}x{kw} kernel; no valid pixels")
    if method == "fft" or (method == "auto" and max(kh, kw) >= _FFT_MIN_SIDE):
        out = _convolve_valid_fft(x, k)
    else:
        out = _convolve_valid_direct(x, k)
    return out[0] if single else out


def _convolve_valid_direct(x: Tensor, k: Tensor) -> Tensor:
    n, c, h, w = x.shape
    kh, kw = k.shape[-2:]
    # conv2d correlates; flipping the kernel makes it a convolution. One group per (image, channel).
    weight = k.flip(-1, -2)[:, None].expand(n, c, kh, kw).reshape(n * c, 1, kh, kw)
    out = F.conv2d(x.reshape(1, n * c, h, w), weight, groups=n * c)
    return out.view(n, c, h - kh + 1, w - kw + 1)


def _convolve_valid_fft(x: Tensor, k: Tensor) -> Tensor:
    n, c, h, w = x.shape
    kh, kw = k.shape[-2:]
    # Half precision FFTs are restricted to power-of-two sizes; compute in float32 at least.
    work = torch.promote_types(x.dtype, torch.float32)
    spectrum = torch.fft.rfft2(x.to(work), s=(h, w))
    kernel_spectrum = torch.fft.rfft2(k.to(work), s=(h, w))
    full = torch.fft.irfft2(spectrum * kernel_spectrum[:, None], s=(h, w))
    # Circular convolution of length h: outputs from index K - 1 on never wrap around.
    return full[..., kh - 1 :, kw - 1 :].to(x.dtype)


# --- real kernels ---------------------------------------------------------------------------------


def load_kernels(path: str | Path) -> list[Tensor]:
    """Read blur kernels from a ``.mat`` file, an image file, or a folder of them.

    ``.mat`` files: every numeric 2-D variable is a kernel, every 3-D one a stack ``(Kh, Kw, N)`` (MATLAB
    stacks along the last axis), and cell arrays are searched element by element; this reads Levin et
    al.'s ``Levin09.mat`` (a cell of 8 kernels) and the 12-kernel sets in the same format. MATLAB v5 files
    are read with SciPy, v7.3 (HDF5) files with h5py. Images (PNG, ...) are grayscale kernels; colour
    images are averaged over their channels. A folder gives the kernels of every ``.mat`` and image file
    below it, in path order.

    Every kernel is made non-negative (tiny negative values from kernel estimation are set to zero) and
    normalised to sum 1.

    Args:
        path: a file or folder; ``pkg:`` paths work as in recipes.

    Returns:
        float32 ``(Kh, Kw)`` kernels.

    Raises:
        restorekit.data.folders.DataError: missing path, unsupported file, no kernel found, or a kernel with
            no positive value.
        ImportError: SciPy (or, for v7.3 files, h5py) is not installed.

    Example:
        >>> kernels = load_kernels("../shared/data/deblur/blur-kernels/Levin09.mat")  # doctest: +SKIP
        >>> len(kernels), kernels[0].shape  # doctest: +SKIP
        (8, torch.Size([19, 19]))
    """
    from restorekit.data.folders import DataError, resolve_data_path
    from restorekit.data.images import IMAGE_EXTENSIONS

    source = resolve_data_path(path)
    if source.is_dir():
        files = sorted(
            p
            for p in source.rglob("*")
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in _MAT_SUFFIXES | set(IMAGE_EXTENSIONS)
        )
        if not files:
            raise DataError(f"{source}: no kernel files (.mat or images) in this folder")
    elif source.is_file():
        files = [source]
    else:
        raise DataError(f"{source}: no such kernel file or folder")

    kernels: list[Tensor] = []
    for file in files:
        suffix = file.suffix.lower()
        if suffix in _MAT_SUFFIXES:
            arrays = _read_mat_kernels(file)
        elif suffix in IMAGE_EXTENSIONS:
            arrays = [_read_image_kernel(file)]
        else:
            raise DataError(f"{file}: not a kernel file (.mat or an image)")
        if not arrays:
            raise DataError(f"{file}: no 2-D numeric arrays (kernels) in this file")
        for index, array in enumerate(arrays):
            kernels.append(_normalise_kernel(array, f"{file} (kernel {index})"))
    return kernels


def _normalise_kernel(array: Any, where: str) -> Tensor:
    from restorekit.data.folders import DataError

    kernel = torch.as_tensor(array, dtype=torch.float64).clamp_min(0.0)
    if not bool(torch.isfinite(kernel).all()):
        raise DataError(f"{where}: the kernel has non-finite values")
    total = float(kernel.sum())
    if total <= 0:
        raise DataError(f"{where}: the kernel has no positive value")
    return (kernel / total).to(torch.float32)


def _read_image_kernel(file: Path) -> Tensor:
    from restorekit.data.images import load_rgb

    return load_rgb(file).to(torch.float64).mean(dim=0)


def _read_mat_kernels(file: Path) -> list[Any]:
    from restorekit.data.folders import DataError

    try:
        import scipy.io
    except ImportError as exc:
        raise ImportError(f"{file}: reading .mat kernels needs SciPy: pip install scipy") from exc
    try:
        contents = scipy.io.loadmat(str(file))
    except NotImplementedError:
        # SciPy reads MATLAB v4-v7.2; v7.3 files are HDF5 containers.
        return _read_mat73_kernels(file)
    except Exception as exc:
        raise DataError(f"{file}: not a readable MATLAB file ({type(exc).__name__}: {exc})") from exc
    arrays: list[Any] = []
    for name, value in contents.items():
        if not name.startswith("__"):
            _collect_arrays(value, arrays)
    return arrays


def _collect_arrays(value: Any, arrays: list[Any]) -> None:
    """Append the kernels found in one MATLAB value (numeric array or cell array) to *arrays*."""
    import numpy as np

    if not isinstance(value, np.ndarray):
        return
    if value.dtype == object:
        # A cell array: MATLAB's column-major order is the natural kernel order.
        for element in value.ravel(order="F"):
            _collect_arrays(element, arrays)
    elif value.dtype.kind in "fiu" and value.dtype.names is None:
        squeezed = value.squeeze() if value.ndim > 2 else value
        if squeezed.ndim == 2 and min(squeezed.shape) > 1:
            arrays.append(squeezed.astype(np.float64))
        elif squeezed.ndim == 3:
            arrays.extend(squeezed[:, :, i].astype(np.float64) for i in range(squeezed.shape[2]))


def _read_mat73_kernels(file: Path) -> list[Any]:
    try:
        import h5py
    except ImportError as exc:
        raise ImportError(f"{file} is a MATLAB v7.3 (HDF5) file; reading it needs h5py: pip install h5py") from exc
    import numpy as np

    arrays: list[Any] = []
    with h5py.File(file, "r") as mat:

        def visit(node: Any) -> None:
            # HDF5 stores MATLAB arrays column-major: a MATLAB (rows, cols) matrix reads back transposed.
            if isinstance(node, h5py.Group):
                return
            kind = node.attrs.get("MATLAB_class", b"")
            kind = kind.decode() if isinstance(kind, bytes) else str(kind)
            if kind == "cell":
                for ref in np.asarray(node[()]).ravel():
                    visit(mat[ref])
                return
            if node.attrs.get("MATLAB_empty", 0):
                return
            data = np.asarray(node[()])
            if data.dtype.kind not in "fiu" or data.dtype.names is not None:
                return
            data = data.T
            if data.ndim == 2 and min(data.shape) > 1:
                arrays.append(data.astype(np.float64))
            elif data.ndim == 3:
                arrays.extend(data[:, :, i].astype(np.float64) for i in range(data.shape[2]))

        for name in mat:
            if not name.startswith("#"):  # "#refs#" holds cell contents, reached through their references
                visit(mat[name])
    return arrays
