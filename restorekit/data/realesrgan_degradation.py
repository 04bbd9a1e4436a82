"""The operations of Real-ESRGAN's second-order degradation model (Wang et al. 2021), batched on the device.

Real-ESRGAN synthesises its low-resolution inputs from HR crops by applying *blur -> random resize ->
noise -> JPEG* twice, then a final 2-D sinc filter and JPEG in random order. This module holds the
operations, each working on a whole batch with per-image parameters:

* blur kernels in closed form — isotropic and anisotropic Gaussian, generalized Gaussian, plateau and the
  circular low-pass (2-D sinc) filter — and :class:`BlurKernels`, which draws a mixed bank of them with
  the paper's probabilities and ranges;
* :func:`filter2d`, a per-image 2-D convolution with reflect padding;
* :func:`gaussian_noise_map` and :func:`poisson_noise`, colour or gray;
* :func:`jpeg_torch`, a JPEG codec in tensor operations (JFIF YCbCr, 4:2:0 chroma subsampling, 8x8 DCT,
  libjpeg's quality-scaled quantisation tables and its "fancy" chroma upsampling) that runs on the
  images' device and agrees with libjpeg to a fraction of a level;
* :func:`usm_sharpen`, the unsharp-masked ground truth Real-ESRGAN trains against.

The recipe-level chain (which step, with which probabilities, in which order) is
:class:`restorekit.data.degradations.DegradationPipeline`; the shipped ``realesrgan_*`` recipes spell
out the official settings. Random draws go through torch's global generator on the batch's device, which
the trainer saves in its checkpoints, so a resumed run degrades exactly as an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "KERNEL_KINDS",
    "RESIZE_MODES",
    "BlurKernels",
    "filter2d",
    "filter2d_ragged",
    "gaussian_kernels",
    "gaussian_noise_map",
    "generalized_gaussian_kernels",
    "jpeg_quality_tables",
    "jpeg_torch",
    "plateau_kernels",
    "poisson_noise",
    "resize",
    "sinc_kernels",
    "usm_sharpen",
]

#: The blur kernel families of Real-ESRGAN's ``kernel_list``, in its order.
KERNEL_KINDS = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
_ISOTROPIC = frozenset({"iso", "generalized_iso", "plateau_iso"})
_FAMILY = {"iso": 0, "aniso": 0, "generalized_iso": 1, "generalized_aniso": 1, "plateau_iso": 2, "plateau_aniso": 2}


# --- blur kernels in closed form -----------------------------------------------------------------------


def _vector(value: Tensor | float) -> Tensor:
    """A float64 ``(N,)`` view of a per-image parameter."""
    tensor = torch.as_tensor(value, dtype=torch.float64)
    return tensor.reshape(-1) if tensor.dim() else tensor.reshape(1)


def _check_size(size: int, function: str) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1 or size % 2 == 0:
        raise ValueError(f"{function}: size must be a positive odd integer, got {size!r}")
    return size


def _grid(size: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Offsets from the kernel centre: ``x`` along columns, ``y`` along rows, each ``(size, size)``."""
    axis = torch.arange(-(size // 2), size // 2 + 1, dtype=torch.float64, device=device)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return x, y


def _quadratic_form(size: int, sigma_x: Tensor, sigma_y: Tensor, theta: Tensor) -> Tensor:
    """``p^T Sigma^-1 p`` on the grid, with ``Sigma = R(theta) diag(sx^2, sy^2) R(theta)^T``: ``(N, size, size)``."""
    x, y = _grid(size, sigma_x.device)
    cos, sin = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    # Coordinates in the kernel's principal axes: R^T p.
    u = cos * x + sin * y
    v = -sin * x + cos * y
    return (u / sigma_x[:, None, None]) ** 2 + (v / sigma_y[:, None, None]) ** 2


def _normalised(kernels: Tensor, dtype: torch.dtype) -> Tensor:
    return (kernels / kernels.sum(dim=(-2, -1), keepdim=True)).to(dtype)


def _per_kernel(function: str, **values: Tensor | float) -> list[Tensor]:
    """Per-kernel parameters as float64 ``(N,)`` vectors; single values are broadcast."""
    vectors = {name: _vector(value) for name, value in values.items()}
    n = max(v.numel() for v in vectors.values())
    out = []
    for name, vector in vectors.items():
        if vector.numel() not in (1, n):
            raise ValueError(f"{function}: {name} has {vector.numel()} values, the other parameters {n}")
        if not bool(torch.isfinite(vector).all()):
            raise ValueError(f"{function}: {name} must be finite")
        out.append(vector.expand(n))
    return out


def _shape_arguments(
    function: str,
    sigma_x: Tensor | float,
    sigma_y: Tensor | float | None,
    theta: Tensor | float | None,
    beta: Tensor | float = 1.0,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    sx, sy, th, b = _per_kernel(
        function, sigma_x=sigma_x, sigma_y=sigma_x if sigma_y is None else sigma_y,
        theta=0.0 if theta is None else theta, beta=beta,
    )  # fmt: skip
    if bool((sx <= 0).any()) or bool((sy <= 0).any()):
        raise ValueError(f"{function}: sigma_x and sigma_y must be positive")
    if bool((b <= 0).any()):
        raise ValueError(f"{function}: beta must be positive")
    return sx, sy, th, b


def gaussian_kernels(
    size: int,
    sigma_x: Tensor | float,
    sigma_y: Tensor | float | None = None,
    theta: Tensor | float | None = None,
    *,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Bivariate Gaussian kernels ``exp(-p^T Sigma^-1 p / 2)``, normalised to sum 1.

    Args:
        size: Odd kernel side.
        sigma_x: Standard deviation along the kernel's first principal axis, one value or one per kernel.
        sigma_y: Along the second axis; None for isotropic kernels (``sigma_y = sigma_x``).
        theta: Rotation of the principal axes in radians; None for 0.
        dtype: Of the result (computed in float64).

    Returns:
        ``(N, size, size)`` kernels.

    Raises:
        ValueError: An even or non-positive *size*, a non-positive sigma, or parameters of unequal lengths.

    Example:
        >>> gaussian_kernels(7, 1.5).shape
        torch.Size([1, 7, 7])
    """
    _check_size(size, "gaussian_kernels")
    sx, sy, th, _ = _shape_arguments("gaussian_kernels", sigma_x, sigma_y, theta)
    return _normalised(torch.exp(-0.5 * _quadratic_form(size, sx, sy, th)), dtype)


def generalized_gaussian_kernels(
    size: int,
    sigma_x: Tensor | float,
    sigma_y: Tensor | float | None,
    theta: Tensor | float | None,
    beta: Tensor | float,
    *,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Generalized Gaussian kernels ``exp(-(p^T Sigma^-1 p)^beta / 2)``, normalised (``beta = 1``: Gaussian).

    Args:
        size: Odd kernel side.
        sigma_x: See :func:`gaussian_kernels`.
        sigma_y: See :func:`gaussian_kernels`.
        theta: See :func:`gaussian_kernels`.
        beta: Shape (> 0): below 1 heavier tails, above 1 flatter tops.
        dtype: Of the result.

    Returns:
        ``(N, size, size)`` kernels.

    Raises:
        ValueError: As :func:`gaussian_kernels`, or a non-positive *beta*.

    Example:
        >>> generalized_gaussian_kernels(9, 2.0, 1.0, 0.3, 2.0).sum().item()  # doctest: +ELLIPSIS
        1.0...
    """
    _check_size(size, "generalized_gaussian_kernels")
    sx, sy, th, b = _shape_arguments("generalized_gaussian_kernels", sigma_x, sigma_y, theta, beta)
    q = _quadratic_form(size, sx, sy, th)
    return _normalised(torch.exp(-0.5 * q.pow(b[:, None, None])), dtype)


def plateau_kernels(
    size: int,
    sigma_x: Tensor | float,
    sigma_y: Tensor | float | None,
    theta: Tensor | float | None,
    beta: Tensor | float,
    *,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Plateau-shaped kernels ``1 / (1 + (p^T Sigma^-1 p)^beta)``, normalised.

    Args:
        size: Odd kernel side.
        sigma_x: See :func:`gaussian_kernels`.
        sigma_y: See :func:`gaussian_kernels`.
        theta: See :func:`gaussian_kernels`.
        beta: Shape (> 0); larger values give a flatter top and a sharper fall.
        dtype: Of the result.

    Returns:
        ``(N, size, size)`` kernels.

    Raises:
        ValueError: As :func:`generalized_gaussian_kernels`.

    Example:
        >>> plateau_kernels(9, 2.0, None, None, 1.5).shape
        torch.Size([1, 9, 9])
    """
    _check_size(size, "plateau_kernels")
    sx, sy, th, b = _shape_arguments("plateau_kernels", sigma_x, sigma_y, theta, beta)
    q = _quadratic_form(size, sx, sy, th)
    return _normalised(1.0 / (1.0 + q.pow(b[:, None, None])), dtype)


def sinc_kernels(size: int, cutoff: Tensor | float, *, dtype: torch.dtype = torch.float32) -> Tensor:
    """Circular low-pass (2-D sinc) kernels ``wc J1(wc r) / (2 pi r)``, normalised; they make ringing.

    The centre takes the limit ``wc^2 / (4 pi)``.

    Args:
        size: Odd kernel side.
        cutoff: Cut-off frequency ``wc`` in radians per pixel (``pi``: no filtering), one or one per kernel.
        dtype: Of the result.

    Returns:
        ``(N, size, size)`` kernels.

    Raises:
        ValueError: An even or non-positive *size*, or a cut-off outside ``(0, pi]``.

    Example:
        >>> sinc_kernels(11, 1.2).shape
        torch.Size([1, 11, 11])
    """
    _check_size(size, "sinc_kernels")
    wc = _vector(cutoff)
    if bool((wc <= 0).any()) or bool((wc > math.pi + 1e-9).any()):
        raise ValueError("sinc_kernels: cutoff must lie in (0, pi]")
    x, y = _grid(size, wc.device)
    r = torch.sqrt(x**2 + y**2)[None]
    w = wc[:, None, None]
    safe = torch.where(r > 0, r, torch.ones_like(r))
    kernels = torch.where(r > 0, w * torch.special.bessel_j1(w * safe) / (2 * math.pi * safe), w**2 / (4 * math.pi))
    return _normalised(kernels, dtype)


# --- a random bank of kernels ----------------------------------------------------------------------------


def _uniform(n: int, low: float, high: float, device: torch.device, generator: torch.Generator | None) -> Tensor:
    return low + (high - low) * torch.rand(n, dtype=torch.float64, device=device, generator=generator)


def _beta(n: int, low: float, high: float, device: torch.device, generator: torch.Generator | None) -> Tensor:
    """Real-ESRGAN's shape draw: half below 1 and half above when the range straddles 1, else uniform."""
    branch = torch.rand(n, dtype=torch.float64, device=device, generator=generator) < 0.5
    below = _uniform(n, low, min(high, 1.0), device, generator)
    above = _uniform(n, max(low, 1.0), high, device, generator)
    if low < 1.0 < high:
        return torch.where(branch, below, above)
    return _uniform(n, low, high, device, generator)


@dataclass(frozen=True)
class BlurKernels:
    """A random bank of blur kernels: family, side and shape drawn per image (Real-ESRGAN's kernel model).

    With probability ``sinc_prob`` an image gets a 2-D sinc kernel (cut-off ``sinc_cutoff`` for sides
    below 13, ``sinc_cutoff_large`` from 13 up, as the official code); otherwise a family from *kinds*
    with its probability. Sigmas along both axes are drawn from *sigma* (isotropic families use one),
    the rotation from *rotation*, the generalized-Gaussian shape from *betag* and the plateau shape from
    *betap*. The side is an odd number drawn uniformly from *sizes*; every kernel is returned centred in
    the largest side, zero outside its own.

    Attributes:
        kinds: ``(family, probability)`` pairs over :data:`KERNEL_KINDS`, summing to 1 (empty if ``sinc_prob`` is 1).
        sizes: smallest and largest odd side.
        sigma: range of the standard deviations, in pixels.
        rotation: range of the rotation, in radians.
        betag: range of the generalized Gaussian's shape.
        betap: range of the plateau's shape.
        sinc_prob: probability of a sinc kernel instead.
        sinc_cutoff: cut-off range for sides below 13.
        sinc_cutoff_large: cut-off range for sides of 13 and more.

    Example:
        >>> bank = BlurKernels(kinds=(("iso", 0.5), ("aniso", 0.5)), sizes=(7, 21), sigma=(0.2, 3.0))
        >>> bank.sample(4, torch.device("cpu")).shape
        torch.Size([4, 21, 21])
    """

    kinds: tuple[tuple[str, float], ...]
    sizes: tuple[int, int] = (7, 21)
    sigma: tuple[float, float] = (0.2, 3.0)
    rotation: tuple[float, float] = (-math.pi, math.pi)
    betag: tuple[float, float] = (0.5, 4.0)
    betap: tuple[float, float] = (1.0, 2.0)
    sinc_prob: float = 0.0
    sinc_cutoff: tuple[float, float] = (math.pi / 3, math.pi)
    sinc_cutoff_large: tuple[float, float] = (math.pi / 5, math.pi)

    @property
    def side(self) -> int:
        """The side of the returned kernels (the largest)."""
        return self.sizes[1]

    def sample(
        self,
        n: int,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``n`` kernels ``(n, side, side)``, each summing to 1.

        Args:
            n: How many.
            device: Where to make them.
            dtype: Of the result (computed in float64).
            generator: Drawn from (on *device*); default torch's global generator.

        The same number of values is drawn whatever the outcome, so the random stream after this call
        depends on ``n`` alone.
        """
        g = generator
        side = self.side
        # Draw everything first, in a fixed order.
        kind_u = torch.rand(n, dtype=torch.float64, device=device, generator=g)
        sinc_u = torch.rand(n, dtype=torch.float64, device=device, generator=g)
        low, high = self.sizes
        radius = torch.randint(low // 2, high // 2 + 1, (n,), device=device, generator=g)
        sigma_x = _uniform(n, *self.sigma, device, g)
        sigma_y = _uniform(n, *self.sigma, device, g)
        theta = _uniform(n, *self.rotation, device, g)
        beta_g = _beta(n, *self.betag, device, g)
        beta_p = _beta(n, *self.betap, device, g)
        # Real-ESRGAN widens the sinc cut-off range for sides of 13 and more (radius 6 and more).
        cutoff = torch.where(
            radius < 6, _uniform(n, *self.sinc_cutoff, device, g), _uniform(n, *self.sinc_cutoff_large, device, g)
        )

        names = [name for name, _ in self.kinds]
        probs = torch.tensor([p for _, p in self.kinds] or [1.0], dtype=torch.float64, device=device)
        edges = torch.cumsum(probs, 0)
        kind = torch.searchsorted(edges, (kind_u * edges[-1]).contiguous(), right=True).clamp_max(len(probs) - 1)
        isotropic = torch.zeros(n, dtype=torch.bool, device=device)
        family = torch.zeros(n, dtype=torch.long, device=device)  # 0 Gaussian, 1 generalized, 2 plateau
        for index, name in enumerate(names):
            chosen = kind == index
            if name in _ISOTROPIC:
                isotropic |= chosen
            family = torch.where(chosen, _FAMILY[name], family)
        sigma_y = torch.where(isotropic, sigma_x, sigma_y)
        theta = torch.where(isotropic, torch.zeros_like(theta), theta)

        q = _quadratic_form(side, sigma_x, sigma_y, theta)
        beta = torch.where(family == 1, beta_g, beta_p)[:, None, None]
        shaped = torch.where(
            (family == 0)[:, None, None],
            torch.exp(-0.5 * q),
            torch.where((family == 1)[:, None, None], torch.exp(-0.5 * q.pow(beta)), 1.0 / (1.0 + q.pow(beta))),
        )
        sinc = sinc_kernels(side, cutoff, dtype=torch.float64) if n else shaped
        kernels = torch.where((sinc_u < self.sinc_prob)[:, None, None], sinc, shaped)
        # Each kernel lives in its own odd square, zero outside, as the official code pads it to 21.
        x, y = _grid(side, device)
        r = radius.to(torch.float64)[:, None, None]
        inside = (x.abs()[None] <= r) & (y.abs()[None] <= r)
        return _normalised(kernels * inside, dtype)


# --- filtering -------------------------------------------------------------------------------------------


def _pad_mode(height: int, width: int, pad: int) -> str:
    # Reflect padding needs pad < side; tiny images (tests, x4 LR of small crops) fall back to replicate.
    return "reflect" if pad < height and pad < width else "replicate"


def filter2d(x: Tensor, kernels: Tensor) -> Tensor:
    """Correlate each image with its own kernel, reflect-padded so the size is kept (cv2.filter2D's rule).

    Args:
        x: Images ``(N, C, H, W)``.
        kernels: ``(N, k, k)`` with odd ``k`` (one per image), or ``(k, k)`` for all.

    Returns:
        The filtered images, same shape and dtype.

    Raises:
        ValueError: A kernel of even side, or a count that does not match the batch.

    Example:
        >>> filter2d(torch.rand(2, 3, 16, 16), gaussian_kernels(5, 1.0)[0]).shape
        torch.Size([2, 3, 16, 16])
    """
    n, c, h, w = x.shape
    if kernels.dim() == 2:
        kernels = kernels.expand(n, -1, -1)
    k = kernels.shape[-1]
    if k % 2 == 0 or kernels.shape[-2] != k:
        raise ValueError(f"filter2d: kernels must be square with an odd side, got {tuple(kernels.shape)}")
    if kernels.shape[0] != n:
        raise ValueError(f"filter2d: {kernels.shape[0]} kernels for a batch of {n} images")
    if n == 0:
        return x.clone()
    pad = k // 2
    planes = F.pad(x.reshape(1, n * c, h, w), (pad,) * 4, mode=_pad_mode(h, w, pad))
    weight = kernels.to(x.dtype).repeat_interleave(c, dim=0).unsqueeze(1)
    return F.conv2d(planes, weight, groups=n * c).reshape(n, c, h, w)


def filter2d_ragged(images: Sequence[Tensor], kernels: Tensor) -> list[Tensor]:
    """:func:`filter2d` for images of different sizes (a batch after a random resize), one kernel each.

    Each image is padded by its own reflection and placed on a common canvas, so the whole batch is
    one grouped convolution: on a CPU that is several times faster than one small convolution per
    image, and the result is the same.

    Args:
        images: ``(C, H_i, W_i)`` images with the same channels.
        kernels: ``(N, k, k)``, odd ``k``.

    Returns:
        The filtered images, each its own size.

    Example:
        >>> out = filter2d_ragged([torch.rand(3, 9, 12), torch.rand(3, 16, 10)], gaussian_kernels(5, [1.0, 2.0]))
        >>> [tuple(o.shape) for o in out]
        [(3, 9, 12), (3, 16, 10)]
    """
    if not images:
        return []
    sizes = [tuple(image.shape[-2:]) for image in images]
    if len(set(sizes)) == 1:
        return list(filter2d(torch.stack(list(images)), kernels).unbind(0))
    n, c, k = len(images), images[0].shape[0], kernels.shape[-1]
    if k % 2 == 0 or kernels.shape[0] != n:
        raise ValueError(f"filter2d_ragged: need {n} kernels of odd side, got {tuple(kernels.shape)}")
    pad = k // 2
    height, width = max(h for h, _ in sizes), max(w for _, w in sizes)
    canvas = images[0].new_zeros((n, c, height + 2 * pad, width + 2 * pad))
    for index, (image, (h, w)) in enumerate(zip(images, sizes)):
        canvas[index, :, : h + 2 * pad, : w + 2 * pad] = F.pad(image[None], (pad,) * 4, mode=_pad_mode(h, w, pad))[0]
    weight = kernels.to(canvas.dtype).repeat_interleave(c, dim=0).unsqueeze(1)
    out = F.conv2d(canvas.reshape(1, n * c, *canvas.shape[-2:]), weight, groups=n * c).reshape(n, c, height, width)
    return [out[index, :, :h, :w] for index, (h, w) in enumerate(sizes)]


def _separable_blur(x: Tensor, taps: Tensor) -> Tensor:
    n, c, h, w = x.shape
    pad = taps.numel() // 2
    planes = F.pad(x.reshape(n * c, 1, h, w), (pad,) * 4, mode=_pad_mode(h, w, pad))
    taps = taps.to(x.dtype)
    planes = F.conv2d(planes, taps.view(1, 1, -1, 1))
    planes = F.conv2d(planes, taps.view(1, 1, 1, -1))
    return planes.reshape(n, c, h, w)


def usm_sharpen(x: Tensor, *, weight: float = 0.5, radius: int = 50, threshold: float = 10.0) -> Tensor:
    """Unsharp masking as Real-ESRGAN sharpens its ground truth.

    ``sharp = clamp(x + weight (x - blur(x)))``, blended in where ``|x - blur(x)|`` exceeds
    ``threshold / 255`` (a mask softened by the same blur). The blur is OpenCV's default Gaussian for a
    ``radius`` (made odd) wide window: sigma ``0.3 ((radius - 1) / 2 - 1) + 0.8`` (8 for 51).

    Args:
        x: Images ``(N, C, H, W)`` in [0, 1].
        weight: Strength of the sharpening.
        radius: Window side in pixels.
        threshold: Edge threshold in 8-bit levels.

    Returns:
        The sharpened images in [0, 1], same shape.

    Example:
        >>> usm_sharpen(torch.rand(1, 3, 32, 32)).shape
        torch.Size([1, 3, 32, 32])
    """
    size = radius + 1 if radius % 2 == 0 else radius
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    offsets = torch.arange(size, dtype=torch.float64, device=x.device) - (size - 1) / 2
    taps = torch.exp(-(offsets**2) / (2 * sigma**2))
    taps = taps / taps.sum()
    residual = x - _separable_blur(x, taps)
    mask = (residual.abs() * 255 > threshold).to(x.dtype)
    soft = _separable_blur(mask, taps)
    sharp = (x + weight * residual).clamp(0, 1)
    return soft * sharp + (1 - soft) * x


# --- noise -----------------------------------------------------------------------------------------------

# BT.601 luma, as torchvision's rgb_to_grayscale, for gray noise.
_GRAY = (0.299, 0.587, 0.114)


def _gray(x: Tensor) -> Tensor:
    if x.shape[1] != 3:
        return x
    weights = torch.tensor(_GRAY, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


def gaussian_noise_map(x: Tensor, sigma: Tensor, gray: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Gaussian noise for a batch: per-image standard deviation, colour or the same in every channel.

    Both a colour and a gray field are drawn for every image, so the random stream does not depend on
    which images are gray.

    Args:
        x: Images ``(N, C, H, W)`` (only the shape, dtype and device are used).
        sigma: ``(N,)`` standard deviations in [0, 1] units.
        gray: ``(N,)`` booleans: one noise field shared by the channels.
        generator: Drawn from (on ``x``'s device); default torch's global generator.

    Returns:
        The noise ``(N, C, H, W)``.

    Example:
        >>> noise = gaussian_noise_map(torch.zeros(2, 3, 8, 8), torch.tensor([0.1, 0.1]), torch.tensor([True, False]))
        >>> bool((noise[0, 0] == noise[0, 1]).all()), bool((noise[1, 0] == noise[1, 1]).all())
        (True, False)
    """
    n, c, h, w = x.shape
    colour = torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)
    shared = torch.randn((n, 1, h, w), dtype=x.dtype, device=x.device, generator=generator).expand(n, c, h, w)
    noise = torch.where(gray.to(x.device).view(n, 1, 1, 1), shared, colour)
    return noise * sigma.to(device=x.device, dtype=x.dtype).view(n, 1, 1, 1)


def _levels_in_use(levels: Tensor) -> Tensor:
    """``2^ceil(log2(distinct 8-bit levels))`` per image: Real-ESRGAN's photon-count scale."""
    n = levels.shape[0]
    present = torch.zeros((n, 256), dtype=torch.float32, device=levels.device)
    present.scatter_(1, levels.reshape(n, -1).long(), 1.0)
    count = present.sum(dim=1).clamp_min(1)
    return torch.exp2(torch.ceil(torch.log2(count)))


def _poisson_component(image: Tensor, generator: torch.Generator | None) -> Tensor:
    img8 = torch.round(image.clamp(0, 1) * 255)
    vals = _levels_in_use(img8).to(image.dtype).view(-1, 1, 1, 1)
    img = img8 / 255
    return torch.poisson(img * vals, generator=generator) / vals - img


def poisson_noise(x: Tensor, scale: Tensor, gray: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Signal-dependent (shot) noise as Real-ESRGAN makes it, colour or gray, scaled per image.

    The image is rounded to 8 bits; with ``v = 2^ceil(log2(number of distinct levels))``, the noise is
    ``(Poisson(x v) / v - x) * scale``: its standard deviation is ``scale * sqrt(x / v)``. Gray noise is
    made on the BT.601 luma and added to every channel.

    Args:
        x: Images ``(N, C, H, W)`` in [0, 1].
        scale: ``(N,)`` noise scales.
        gray: ``(N,)`` booleans.
        generator: Drawn from (on ``x``'s device); default torch's global generator.

    Returns:
        The noise ``(N, C, H, W)``.

    Example:
        >>> poisson_noise(torch.rand(2, 3, 8, 8), torch.tensor([1.0, 2.0]), torch.tensor([False, True])).shape
        torch.Size([2, 3, 8, 8])
    """
    n = x.shape[0]
    gray = gray.to(x.device).reshape(n)
    noise = torch.empty_like(x)
    # Poisson sampling is the expensive part on a CPU: draw only the field each image uses.
    rows = torch.nonzero(~gray).flatten()
    if rows.numel():
        noise[rows] = _poisson_component(x[rows], generator)
    rows = torch.nonzero(gray).flatten()
    if rows.numel():
        noise[rows] = _poisson_component(_gray(x[rows]), generator).expand(-1, x.shape[1], -1, -1)
    return noise * scale.to(device=x.device, dtype=x.dtype).view(n, 1, 1, 1)


# --- JPEG in tensor operations -----------------------------------------------------------------------------

# ITU-T T.81 Annex K tables in natural (row-major) order, as libjpeg ships them.
_LUMA_TABLE = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip
_CHROMA_TABLE = (
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
    *([99] * 32),
)  # fmt: skip


# JFIF colour conversion (ITU-R BT.601, full range), as libjpeg's jccolor.c / jdcolor.c.
_RGB_TO_YCC = (
    (0.299, 0.587, 0.114),
    (-0.168735892, -0.331264108, 0.5),
    (0.5, -0.418687589, -0.081312411),
)
_YCC_TO_RGB = ((1.0, 0.0, 1.402), (1.0, -0.344136286, -0.714136286), (1.0, 1.772, 0.0))


def jpeg_quality_tables(quality: Tensor, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """libjpeg's luminance and chrominance quantisation tables for each quality (baseline, 1..255).

    ``scale = 5000 / q`` below 50, ``200 - 2 q`` from 50; ``table = floor((base * scale + 50) / 100)``.

    Args:
        quality: ``(N,)`` integer qualities 1..100.
        device: Where to build them (default *quality*'s device).

    Returns:
        ``(luma, chroma)``, each ``(N, 8, 8)`` float32.

    Example:
        >>> luma, _ = jpeg_quality_tables(torch.tensor([50]))
        >>> int(luma[0, 0, 0]), int(luma[0, 7, 7])
        (16, 99)
    """
    q = torch.as_tensor(quality).reshape(-1).to(device=device, dtype=torch.int64).clamp(1, 100)
    scale = torch.where(q < 50, torch.div(5000, q, rounding_mode="floor"), 200 - 2 * q)[:, None, None]
    tables = []
    for base in (_LUMA_TABLE, _CHROMA_TABLE):
        table = torch.tensor(base, dtype=torch.int64, device=q.device).view(1, 8, 8)
        tables.append(torch.div(table * scale + 50, 100, rounding_mode="floor").clamp(1, 255).float())
    return tables[0], tables[1]


def _dct_matrix(device: torch.device, dtype: torch.dtype) -> Tensor:
    """The orthonormal 2-D 8x8 DCT-II as one ``(64, 64)`` matrix acting on row-major blocks.

    ``kron(D, D)`` turns the per-block ``D B D^T`` into a single large matrix product, far faster than
    millions of 8x8 products.
    """
    k = torch.arange(8, dtype=torch.float64, device=device)[:, None]
    n = torch.arange(8, dtype=torch.float64, device=device)[None, :]
    matrix = torch.cos((2 * n + 1) * k * math.pi / 16) * math.sqrt(2 / 8)
    matrix[0] = math.sqrt(1 / 8)
    return torch.kron(matrix, matrix).to(dtype)


def _round_half_away(x: Tensor) -> Tensor:
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def _code_plane(plane: Tensor, table: Tensor, dct: Tensor) -> Tensor:
    """Quantise and reconstruct one component ``(N, H, W)`` (sides multiples of 8) with ``(N, 8, 8)`` tables."""
    n, h, w = plane.shape
    blocks = (plane - 128).reshape(n, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4).reshape(n, -1, 64)
    coefficients = blocks @ dct.T
    steps = table.reshape(n, 1, 64)
    quantised = _round_half_away(coefficients / steps) * steps
    pixels = (quantised @ dct).reshape(n, h // 8, w // 8, 8, 8).permute(0, 1, 3, 2, 4).reshape(n, h, w)
    return torch.floor(pixels + 128.5).clamp(0, 255)


def _downsample_chroma(plane: Tensor) -> Tensor:
    """libjpeg's h2v2 downsampling: the 2x2 mean with its alternating 1, 2 rounding bias."""
    n, h, w = plane.shape
    sums = plane.reshape(n, h // 2, 2, w // 2, 2).sum(dim=(2, 4))
    bias = torch.ones(w // 2, dtype=plane.dtype, device=plane.device)
    bias[1::2] = 2
    return torch.floor((sums + bias) / 4)


def _upsample_chroma(plane: Tensor) -> Tensor:
    """libjpeg's h2v2 "fancy" (triangular) upsampling, edges replicated, with its integer rounding."""
    n, h, w = plane.shape
    above = torch.cat([plane[:, :1], plane[:, :-1]], dim=1)
    below = torch.cat([plane[:, 1:], plane[:, -1:]], dim=1)
    columns = torch.stack([3 * plane + above, 3 * plane + below], dim=2).reshape(n, 2 * h, w)
    left = torch.cat([columns[:, :, :1], columns[:, :, :-1]], dim=2)
    right = torch.cat([columns[:, :, 1:], columns[:, :, -1:]], dim=2)
    even = torch.floor((3 * columns + left + 8) / 16)
    odd = torch.floor((3 * columns + right + 7) / 16)
    return torch.stack([even, odd], dim=3).reshape(n, 2 * h, 2 * w)


def jpeg_torch(x: Tensor, quality: Tensor | int) -> Tensor:
    """JPEG compression artefacts computed with tensor operations, on the images' device, per-image quality.

    What a baseline libjpeg encoder and decoder do to the pixels, without the (lossless) entropy coding:
    8-bit levels, JFIF RGB->YCbCr, 4:2:0 chroma subsampling, edges replicated to whole 16x16 units, 8x8
    DCT, quantisation with libjpeg's quality-scaled tables (:func:`jpeg_quality_tables`), inverse DCT,
    "fancy" chroma upsampling and YCbCr->RGB, all rounded as libjpeg rounds. One-channel images are coded
    as grayscale JPEGs. The DCTs run in floating point (libjpeg: integer), so a few pixels differ from
    libjpeg by a level or two.

    Args:
        x: Images ``(N, C, H, W)`` in [0, 1] with 1 or 3 channels (values are clamped, rounded to 8 bits).
        quality: JPEG quality 1..100: one integer or ``N`` values.

    Returns:
        The decoded images in [0, 1], same shape, dtype and device.

    Raises:
        ValueError: A channel count other than 1 or 3, or a quality outside 1..100.

    Example:
        >>> jpeg_torch(torch.rand(2, 3, 20, 30), torch.tensor([30, 90])).shape
        torch.Size([2, 3, 20, 30])
    """
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"jpeg_torch: x must be shaped (N, 1 or 3, H, W), got {tuple(x.shape)}")
    n, c, h, w = x.shape
    q = torch.as_tensor(quality, device=x.device).reshape(-1).round().to(torch.int64)
    if q.numel() == 1:
        q = q.expand(n)
    if q.numel() != n:
        raise ValueError(f"jpeg_torch: {q.numel()} qualities for a batch of {n} images")
    if bool(((q < 1) | (q > 100)).any()):
        raise ValueError(f"jpeg_torch: quality must lie in 1..100, got {q.tolist()}")
    if n == 0:
        return x.clone()
    work = torch.float32 if x.dtype != torch.float64 else torch.float64
    levels = torch.floor(x.detach().to(work).clamp(0, 1) * 255 + 0.5)
    unit = 16 if c == 3 else 8
    ph, pw = -(-h // unit) * unit, -(-w // unit) * unit
    levels = F.pad(levels, (0, pw - w, 0, ph - h), mode="replicate")
    luma_table, chroma_table = jpeg_quality_tables(q, x.device)
    dct = _dct_matrix(x.device, work)
    if c == 1:
        decoded = _code_plane(levels[:, 0], luma_table.to(work), dct)[:, None]
    else:
        to_ycc = torch.tensor(_RGB_TO_YCC, dtype=work, device=x.device)
        ycc = torch.einsum("dc,nchw->ndhw", to_ycc, levels)
        ycc = torch.floor(ycc + torch.tensor([0.5, 128.5, 128.5], dtype=work, device=x.device).view(1, 3, 1, 1))
        y, cb, cr = ycc.clamp(0, 255).unbind(1)
        y = _code_plane(y, luma_table.to(work), dct)[:, :h, :w]
        # The decoder upsamples only the chroma samples that cover the image, replicating past its edge.
        ch, cw = -(-h // 2), -(-w // 2)
        chroma = [
            _upsample_chroma(_code_plane(_downsample_chroma(p), chroma_table.to(work), dct)[:, :ch, :cw])[:, :h, :w]
            for p in (cb, cr)
        ]
        to_rgb = torch.tensor(_YCC_TO_RGB, dtype=work, device=x.device)
        decoded = torch.einsum("cd,ndhw->nchw", to_rgb, torch.stack([y, chroma[0] - 128, chroma[1] - 128], dim=1))
        decoded = torch.floor(decoded + 0.5).clamp(0, 255)
    return (decoded[..., :h, :w] / 255).to(x.dtype)


# --- resizing --------------------------------------------------------------------------------------------

#: Interpolation modes of the random resize, as Real-ESRGAN draws them.
RESIZE_MODES = ("area", "bilinear", "bicubic")


def resize(x: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    """``F.interpolate`` to *size*, as Real-ESRGAN resizes (no antialiasing, ``align_corners=False``).

    Args:
        x: Images ``(N, C, H, W)``.
        size: ``(height, width)`` of the result.
        mode: ``area``, ``bilinear`` or ``bicubic``.

    Returns:
        The resized images (*x* itself when the size is already right).

    Raises:
        ValueError: An unknown mode.

    Example:
        >>> resize(torch.rand(1, 3, 16, 16), (8, 12), "bicubic").shape
        torch.Size([1, 3, 8, 12])
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize: mode must be one of {', '.join(RESIZE_MODES)}, got {mode!r}")
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if mode == "area":
        return F.interpolate(x, size=size, mode="area")
    return F.interpolate(x, size=size, mode=mode, align_corners=False)
