"""Batched, on-device degradations for synthesising training inputs: blur, noise and JPEG.

The functions work on whole batches with per-image parameters, so a training step degrades its batch in a
few tensor operations on the GPU. :class:`DegradationPipeline` builds a random chain of them from the plain
dicts of a TOML recipe, e.g.::

    [[task.degradations]]
    type = "blur"
    sigma = [0.2, 3.0]
    prob = 0.5

Random draws come from the generator passed to the call, else torch's global generator on the batch's
device. The super-resolution task passes one seeded from its batch's sample seeds, so a run's degradations
are a function of its seed and step alone and a resumed run makes exactly the same ones.

With ``kernels``, ``resize`` and ``shuffle`` steps the pipeline is Real-ESRGAN's second-order degradation
model (the ``realesrgan_*`` recipes spell out the official settings); its operations live in
:mod:`restorekit.data.realesrgan_degradation`.
"""

from __future__ import annotations

import difflib
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from restorekit.data.realesrgan_degradation import (
    KERNEL_KINDS,
    RESIZE_MODES,
    BlurKernels,
    filter2d_ragged,
    gaussian_noise_map,
    jpeg_torch,
    poisson_noise,
    resize,
)

__all__ = ["DegradationPipeline", "gaussian_blur", "gaussian_noise", "jpeg"]


def _as_batch(x: Tensor, function: str) -> tuple[Tensor, bool]:
    """``(N, C, H, W)`` view of ``x`` and whether a batch dimension was added."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{function}: x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{function}: x must be a floating-point tensor in [0, 1], got dtype {x.dtype}")
    if x.dim() == 3:
        return x.unsqueeze(0), True
    if x.dim() == 4:
        return x, False
    raise ValueError(f"{function}: x must be shaped (C, H, W) or (N, C, H, W), got {tuple(x.shape)}")


def _per_image(value: Tensor | float, batch: int, x: Tensor, name: str, function: str) -> Tensor:
    """A scalar or an ``(N,)`` parameter as a float tensor ``(N,)`` on ``x``'s device."""
    if isinstance(value, Tensor):
        value = value.to(device=x.device, dtype=torch.float64).flatten()
        if value.numel() == 1:
            value = value.expand(batch)
        if value.numel() != batch:
            raise ValueError(f"{function}: {name} has {value.numel()} values for a batch of {batch} images")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        value = torch.full((batch,), float(value), dtype=torch.float64, device=x.device)
    else:
        raise ValueError(f"{function}: {name} must be a number or a tensor, got {type(value).__name__}")
    if not bool(torch.isfinite(value).all()) or bool((value < 0).any()):
        raise ValueError(f"{function}: {name} must be finite and non-negative")
    return value


def gaussian_blur(x: Tensor, sigma: Tensor | float, kernel_size: int | None = None) -> Tensor:
    """Isotropic Gaussian blur with reflect padding and a per-image standard deviation.

    Args:
        x: Images ``(N, C, H, W)`` or ``(C, H, W)``.
        sigma: Standard deviation in pixels: one number, or a tensor of ``N`` values. ``0`` leaves an image
            unchanged.
        kernel_size: Odd kernel side. Default ``2 * ceil(3 * max(sigma)) + 1``, limited so the reflect
            padding fits the image.

    Returns:
        The blurred images, same shape, dtype and device.

    Raises:
        ValueError: On a malformed ``x`` or ``sigma``, or an even, non-positive or too large ``kernel_size``.

    Example:
        >>> import torch
        >>> gaussian_blur(torch.rand(4, 3, 32, 32), torch.tensor([0.0, 0.5, 1.0, 2.0])).shape
        torch.Size([4, 3, 32, 32])
    """
    batch_x, added = _as_batch(x, "gaussian_blur")
    batch, channels, height, width = batch_x.shape
    sigmas = _per_image(sigma, batch, batch_x, "sigma", "gaussian_blur")
    if batch == 0:
        return x.clone()
    # Reflect padding needs pad < side, so the kernel radius is at most min(H, W) - 1.
    max_radius = min(height, width) - 1
    if kernel_size is None:
        radius = min(math.ceil(3.0 * float(sigmas.max())), max_radius)
    else:
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
            raise ValueError(
                f"gaussian_blur: kernel_size must be a positive odd integer, got {kernel_size!r}"
            )
        if kernel_size % 2 == 0:
            raise ValueError(f"gaussian_blur: kernel_size must be odd, got {kernel_size}")
        radius = kernel_size // 2
        if radius > max_radius:
            raise ValueError(
                f"gaussian_blur: kernel_size {kernel_size} is too large for a {height}x{width} image "
                f"(reflect padding needs at most {2 * max_radius + 1})"
            )
    if radius == 0:
        return x.clone()

    offsets = torch.arange(-radius, radius + 1, device=batch_x.device, dtype=torch.float64)
    # sigma == 0 must give a delta kernel rather than 0/0.
    safe = sigmas.clamp_min(1e-12)[:, None]
    kernels = torch.exp(-0.5 * (offsets[None, :] / safe) ** 2)
    kernels = kernels / kernels.sum(dim=1, keepdim=True)
    # One depthwise kernel per (image, channel) plane: the whole batch in one grouped convolution per axis.
    kernels = kernels.to(batch_x.dtype).repeat_interleave(channels, dim=0)
    planes = batch_x.reshape(1, batch * channels, height, width)
    planes = F.pad(planes, (radius, radius, radius, radius), mode="reflect")
    planes = F.conv2d(planes, kernels.view(-1, 1, 2 * radius + 1, 1), groups=batch * channels)
    planes = F.conv2d(planes, kernels.view(-1, 1, 1, 2 * radius + 1), groups=batch * channels)
    out = planes.reshape(batch, channels, height, width)
    return out[0] if added else out


def gaussian_noise(x: Tensor, sigma: Tensor | float, generator: torch.Generator | None = None) -> Tensor:
    """Add white Gaussian noise with a per-image standard deviation (no clamping).

    Args:
        x: Images ``(N, C, H, W)`` or ``(C, H, W)`` with values in [0, 1].
        sigma: Standard deviation in [0, 1] units (``25 / 255`` is the classic "sigma 25"): one number or
            ``N`` values.
        generator: Generator on ``x``'s device; default torch's global one.

    Returns:
        ``x`` plus noise, same shape, dtype and device. Values may leave [0, 1].

    Raises:
        ValueError: On a malformed ``x`` or ``sigma``.

    Example:
        >>> import torch
        >>> noisy = gaussian_noise(torch.full((2, 3, 64, 64), 0.5), 0.1)
        >>> round(float(noisy.std()), 1)
        0.1
    """
    batch_x, added = _as_batch(x, "gaussian_noise")
    sigmas = _per_image(sigma, batch_x.shape[0], batch_x, "sigma", "gaussian_noise")
    noise = torch.randn(batch_x.shape, generator=generator, device=batch_x.device, dtype=batch_x.dtype)
    out = batch_x + noise * sigmas.to(batch_x.dtype).view(-1, 1, 1, 1)
    return out[0] if added else out


_TORCHVISION_CODEC_DEPRECATION = "The image decoding and encoding capabilities of TorchVision are deprecated"


def _jpeg_round_trip(images: list[Tensor], quality: int, device: torch.device) -> list[Tensor]:
    """Encode and decode ``uint8`` ``(C, H, W)`` images, on the GPU where torchvision supports it."""
    from torchvision.io import ImageReadMode, decode_jpeg, encode_jpeg

    mode = ImageReadMode.RGB if images[0].shape[0] == 3 else ImageReadMode.GRAY
    with warnings.catch_warnings():
        # torchvision 0.29 deprecates its image codecs in favour of TorchCodec; one warning per training
        # step would bury the log, and the functions still work.
        warnings.filterwarnings("ignore", message=_TORCHVISION_CODEC_DEPRECATION, category=DeprecationWarning)
        if device.type == "cuda":
            try:
                encoded = encode_jpeg(images, quality=quality)
                return list(decode_jpeg(encoded, mode=mode, device=device))
            except (RuntimeError, ValueError, NotImplementedError):
                # torchvision built without nvJPEG, or a mode nvJPEG lacks: fall through to the CPU codec.
                pass
        encoded = encode_jpeg([image.cpu() for image in images], quality=quality)
        return [image.to(device) for image in decode_jpeg(encoded, mode=mode)]


def jpeg(x: Tensor, quality: Tensor | int) -> Tensor:
    """JPEG compression artefacts: a real encode/decode round trip per image.

    Values are clamped to [0, 1] and rounded to 8 bits first, as a JPEG file requires.

    Args:
        x: Images ``(N, C, H, W)`` or ``(C, H, W)`` in [0, 1] with 1 or 3 channels.
        quality: JPEG quality 1..100: one integer, or ``N`` values (rounded to integers).

    Returns:
        The decoded images in [0, 1], same shape, dtype and device.

    Raises:
        ValueError: On a malformed ``x``, a channel count other than 1 or 3, or a quality outside 1..100.

    Example:
        >>> import torch
        >>> jpeg(torch.rand(2, 3, 16, 16), 75).shape
        torch.Size([2, 3, 16, 16])
    """
    batch_x, added = _as_batch(x, "jpeg")
    batch, channels = batch_x.shape[:2]
    if channels not in (1, 3):
        raise ValueError(f"jpeg: x must have 1 or 3 channels, got {channels}")
    qualities = _per_image(quality, batch, batch_x, "quality", "jpeg").round().to(torch.int64)
    if bool(((qualities < 1) | (qualities > 100)).any()):
        raise ValueError(f"jpeg: quality must lie in 1..100, got {qualities.tolist()}")
    levels = torch.floor(batch_x.detach().clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8)
    out = torch.empty_like(batch_x)
    qualities_cpu = qualities.cpu()
    # encode_jpeg takes one quality per call: one batched call per distinct quality.
    for value in torch.unique(qualities_cpu).tolist():
        indices = torch.nonzero(qualities_cpu == value).flatten().tolist()
        decoded = _jpeg_round_trip([levels[i] for i in indices], int(value), batch_x.device)
        out[indices] = torch.stack(decoded).to(device=batch_x.device, dtype=batch_x.dtype) / 255.0
    return out[0] if added else out


# --- recipe-driven pipeline ------------------------------------------------------------------------------
#
# A pipeline is a list of steps. The first-order steps (blur, noise, jpeg) degrade an image at its size;
# with a ``resize`` step the chain may change sizes (Real-ESRGAN's second-order model) and must then end
# with one resize to the output size, so it starts from the target (HR) image. Parameters are drawn per
# image; after a random resize the images of a batch differ in size and each later step runs once per
# group of images of one size.

_PI = math.pi


def _suggest(word: str, choices: Sequence[str]) -> str:
    matches = difflib.get_close_matches(word, list(choices), n=1)
    if not matches:
        # Spelled-out forms ("probability" for "prob") are too long for difflib's ratio to catch.
        matches = [choice for choice in choices if word.lower().startswith(choice) or choice.startswith(word)]
    return f"; did you mean {matches[0]!r}?" if matches else ""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class _Range:
    """A parameter: a fixed number or a ``[low, high]`` range drawn uniformly per image."""

    low: float
    high: float
    integer: bool = False

    def draw(self, n: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
        if self.integer:
            values = torch.randint(int(self.low), int(self.high) + 1, (n,), device=device, generator=generator)
            return values.to(torch.float64)
        return self.low + (self.high - self.low) * torch.rand(n, device=device, dtype=torch.float64, generator=generator)

    def describe(self, name: str) -> str:
        if self.low == self.high:
            return f"{name}={self.low:g}"
        if self.integer:
            return f"{name}~U{{{self.low:g}..{self.high:g}}}"
        return f"{name}~U[{self.low:g}, {self.high:g}]"


class _Spec:
    """One step's table being read: every key taken is checked, and what is left over is reported."""

    def __init__(self, where: str, kind: str, spec: Mapping[str, Any], allowed: Sequence[str]):
        self.where = f"{where} ({kind})"
        self.spec = spec
        for key in spec:
            if key not in allowed:
                raise ValueError(
                    f"{self.where}: unknown key {key!r}{_suggest(str(key), allowed)} (allowed: {', '.join(allowed)})"
                )

    def error(self, message: str) -> ValueError:
        return ValueError(f"{self.where}: {message}")

    def has(self, key: str) -> bool:
        return key in self.spec

    def range(
        self, key: str, bounds: tuple[float, float], *, integer: bool = False, default: Any = None, positive: bool = False
    ) -> _Range:
        value = self.spec.get(key, default)
        if _is_number(value):
            low = high = float(value)
        elif isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_number(v) for v in value):
            low, high = float(value[0]), float(value[1])
        else:
            raise self.error(f"key {key!r} must be a number or a [low, high] range, got {value!r}")
        lo_bound, hi_bound = bounds
        if not lo_bound <= low <= high <= hi_bound or (positive and low <= 0):
            relation = "<" if positive else "<="
            raise self.error(
                f"key {key!r} must satisfy {lo_bound:g} {relation} low <= high <= {hi_bound:g}, got {value!r}"
            )
        if integer and (low != int(low) or high != int(high)):
            raise self.error(f"key {key!r} must hold integers, got {value!r}")
        return _Range(low, high, integer)

    def probability(self, key: str, default: float) -> float:
        value = self.spec.get(key, default)
        if not _is_number(value) or not 0.0 <= value <= 1.0:
            raise self.error(f"key {key!r} must be a number in [0, 1], got {value!r}")
        return float(value)

    def choice(self, key: str, choices: Sequence[str], default: str) -> str:
        value = self.spec.get(key, default)
        if value not in choices:
            raise self.error(
                f"key {key!r} must be one of {', '.join(map(repr, choices))}, got {value!r}"
                f"{_suggest(str(value), choices) if isinstance(value, str) else ''}"
            )
        return value

    def odd_size(self, key: str, default: Any = None, *, allow_range: bool) -> tuple[int, int] | None:
        value = self.spec.get(key, default)
        if value is None:
            return None
        values = value if isinstance(value, (list, tuple)) and allow_range else [value]
        if not (
            len(values) in (1, 2)
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 and v % 2 == 1 for v in values)
            and values[0] <= values[-1]
        ):
            shape = "a positive odd integer or an odd [low, high] range" if allow_range else "a positive odd integer"
            raise self.error(f"key {key!r} must be {shape}, got {value!r}")
        return int(values[0]), int(values[-1])


@dataclass(frozen=True)
class _Blur:
    """Legacy isotropic Gaussian blur (``sigma``), or a random kernel bank (``kernels`` / ``sinc_prob``)."""

    prob: float
    sigma: _Range | None = None
    kernel_size: int | None = None
    bank: BlurKernels | None = None

    def describe(self) -> str:
        if self.bank is None:
            extra = f", kernel_size={self.kernel_size}" if self.kernel_size is not None else ""
            return f"blur({self.sigma.describe('sigma')}{extra}, p={self.prob:g})"  # type: ignore[union-attr]
        bank = self.bank
        parts = [f"{name} {p:g}" for name, p in bank.kinds]
        if bank.sinc_prob:
            parts.append(f"sinc {bank.sinc_prob:g}")
        size = f"{bank.sizes[0]}..{bank.sizes[1]}" if bank.sizes[0] != bank.sizes[1] else f"{bank.sizes[0]}"
        sigma = f", sigma~U[{bank.sigma[0]:g}, {bank.sigma[1]:g}]" if bank.kinds and bank.sinc_prob < 1 else ""
        return f"blur(kernels {{{', '.join(parts)}}}, size {size}{sigma}, p={self.prob:g})"

    def run(self, images: list[Tensor], indices: list[int], context: _Context) -> None:
        n = len(indices)
        selected = _selected(n, self.prob, context)
        if self.bank is None:
            sigma = self.sigma.draw(n, context.device, context.generator)  # type: ignore[union-attr]
            context.apply(images, indices, selected, lambda x, rows: gaussian_blur(x, sigma[rows], self.kernel_size))
            return
        kernels = self.bank.sample(n, context.device, generator=context.generator)
        rows = torch.nonzero(selected).flatten()
        members = [indices[row] for row in rows.tolist()]
        filtered = filter2d_ragged([images[i] for i in members], _trim(kernels[rows]))
        for index, image in zip(members, filtered):
            images[index] = image


def _trim(kernels: Tensor) -> Tensor:
    """Drop the all-zero border shared by a group's kernels: the same result with less work."""
    used = kernels.abs().sum(dim=0) > 0
    rows = torch.nonzero(used.any(dim=1)).flatten()
    if rows.numel() == 0:
        return kernels
    centre = kernels.shape[-1] // 2
    radius = int(max(centre - int(rows.min()), int(rows.max()) - centre, 0))
    cols = torch.nonzero(used.any(dim=0)).flatten()
    radius = max(radius, centre - int(cols.min()), int(cols.max()) - centre)
    return kernels[:, centre - radius : centre + radius + 1, centre - radius : centre + radius + 1]


@dataclass(frozen=True)
class _Noise:
    """Gaussian (``sigma`` in [0, 1] units or ``sigma_levels`` in 8-bit levels) and/or Poisson noise."""

    prob: float
    sigma: _Range | None = None
    levels: bool = False
    poisson: _Range | None = None
    gaussian_prob: float = 1.0
    gray_prob: float = 0.0

    def describe(self) -> str:
        parts = []
        if self.sigma is not None:
            name = "sigma_levels" if self.levels else "sigma"
            low, high = (self.sigma.low * 255, self.sigma.high * 255) if self.levels else (self.sigma.low, self.sigma.high)
            parts.append(_Range(low, high).describe(name))
        if self.poisson is not None:
            parts.append(self.poisson.describe("poisson_scale"))
            if self.sigma is not None:
                parts.append(f"gaussian_prob={self.gaussian_prob:g}")
        if self.gray_prob:
            parts.append(f"gray_prob={self.gray_prob:g}")
        return f"noise({', '.join(parts)}, p={self.prob:g})"

    def run(self, images: list[Tensor], indices: list[int], context: _Context) -> None:
        n, device, g = len(indices), context.device, context.generator
        selected = _selected(n, self.prob, context)
        gaussian = torch.rand(n, device=device, generator=g) < self.gaussian_prob
        sigma = self.sigma.draw(n, device, g) if self.sigma is not None else torch.zeros(n, device=device)
        scale = self.poisson.draw(n, device, g) if self.poisson is not None else torch.zeros(n, device=device)
        gray = torch.rand(n, device=device, generator=g) < self.gray_prob

        def gaussian_step(x: Tensor, rows: Tensor) -> Tensor:
            if self.gray_prob == 0:
                out = gaussian_noise(x, sigma[rows], generator=g)
            else:
                out = x + gaussian_noise_map(x, sigma[rows], gray[rows], generator=g)
            return out.clamp(0, 1)  # a sensor saturates; Real-ESRGAN clips here too

        def poisson_step(x: Tensor, rows: Tensor) -> Tensor:
            return (x + poisson_noise(x, scale[rows], gray[rows], generator=g)).clamp(0, 1)

        context.apply(images, indices, selected & gaussian, gaussian_step)
        context.apply(images, indices, selected & ~gaussian, poisson_step)


@dataclass(frozen=True)
class _Jpeg:
    prob: float
    quality: _Range
    codec: str = "libjpeg"

    def describe(self) -> str:
        codec = f", codec={self.codec}" if self.codec != "libjpeg" else ""
        return f"jpeg({self.quality.describe('quality')}{codec}, p={self.prob:g})"

    def run(self, images: list[Tensor], indices: list[int], context: _Context) -> None:
        n = len(indices)
        selected = _selected(n, self.prob, context)
        quality = self.quality.draw(n, context.device, context.generator)
        code = jpeg_torch if self.codec == "torch" else jpeg
        context.apply(images, indices, selected, lambda x, rows: code(x, quality[rows]))


@dataclass(frozen=True)
class _Resize:
    """A random resize (``scale``), or the resize to the output size (``size = "output"``)."""

    prob: float
    scale: _Range | None
    up_down_keep: tuple[float, float, float] | None
    modes: tuple[str, ...]
    relative_to: str

    @property
    def to_output(self) -> bool:
        return self.scale is None

    def describe(self) -> str:
        modes = "|".join(self.modes)
        if self.scale is None:
            return f"resize(to output, {modes})"
        scale = self.scale.describe("scale")
        if self.up_down_keep is not None:
            scale += f", up/down/keep {'/'.join(f'{p:g}' for p in self.up_down_keep)}"
        of = " of output" if self.relative_to == "output" else ""
        return f"resize({scale}{of}, {modes}, p={self.prob:g})"

    def run(self, images: list[Tensor], indices: list[int], context: _Context) -> None:
        n, device, g = len(indices), context.device, context.generator
        selected = _selected(n, self.prob, context)
        choice = torch.rand(n, device=device, dtype=torch.float64, generator=g)
        mode = torch.randint(len(self.modes), (n,), device=device, generator=g)
        if self.scale is not None and self.up_down_keep is not None:
            up = _Range(1.0, self.scale.high).draw(n, device, g)
            down = _Range(self.scale.low, 1.0).draw(n, device, g)
            p_up, p_down, _ = self.up_down_keep
            factor = torch.where(choice < p_up, up, torch.where(choice < p_up + p_down, down, torch.ones_like(up)))
        elif self.scale is not None:
            factor = self.scale.draw(n, device, g)
        else:
            factor = torch.ones(n, device=device, dtype=torch.float64)
        targets = []
        for index, chosen, f in zip(indices, selected.tolist(), factor.tolist()):
            height, width = images[index].shape[-2:]
            if self.scale is None:
                targets.append(context.output_size())
            elif not chosen:
                targets.append((height, width))
            else:
                base = context.output_size() if self.relative_to == "output" else (height, width)
                targets.append((max(1, int(base[0] * f)), max(1, int(base[1] * f))))
        # One interpolate call per group of images with the same size, target and mode.
        groups: dict[tuple[Any, ...], list[int]] = {}
        for row, (index, m) in enumerate(zip(indices, mode.tolist())):
            groups.setdefault((tuple(images[index].shape[-2:]), targets[row], m), []).append(index)
        for (_, target, m), members in groups.items():
            out = resize(torch.stack([images[i] for i in members]), target, self.modes[m])
            for j, i in enumerate(members):
                images[i] = out[j]


@dataclass(frozen=True)
class _Shuffle:
    """Blocks of steps applied in an order drawn per image (Real-ESRGAN's final sinc/resize and JPEG)."""

    blocks: tuple[tuple[Any, ...], ...]

    def describe(self) -> str:
        return "shuffle(" + " | ".join(" -> ".join(step.describe() for step in block) for block in self.blocks) + ")"

    def run(self, images: list[Tensor], indices: list[int], context: _Context) -> None:
        n = len(indices)
        orders = torch.rand(n, len(self.blocks), device=context.device, generator=context.generator).argsort(dim=1)
        orders = orders.tolist()
        by_order: dict[tuple[int, ...], list[int]] = {}
        for index, order in zip(indices, orders):
            by_order.setdefault(tuple(order), []).append(index)
        for order, members in sorted(by_order.items()):
            for block in order:
                for step in self.blocks[block]:
                    step.run(images, members, context)




def _selected(n: int, prob: float, context: _Context) -> Tensor:
    # Drawn for every image, selected or not, so the random stream does not depend on the selection.
    return torch.rand(n, device=context.device, generator=context.generator) < prob


@dataclass
class _Context:
    device: torch.device
    size: tuple[int, int] | None
    generator: torch.Generator | None = None

    def output_size(self) -> tuple[int, int]:
        if self.size is None:
            raise ValueError("DegradationPipeline: this pipeline resizes to the output size; pass output_size")
        return self.size

    def apply(
        self,
        images: list[Tensor],
        indices: list[int],
        selected: Tensor,
        function: Callable[[Tensor, Tensor], Tensor],
    ) -> None:
        """``function(batch, rows)`` on the selected images, one call per size; *rows* index the step's draws."""
        chosen = [(row, indices[row]) for row in torch.nonzero(selected).flatten().tolist()]
        groups: dict[tuple[int, ...], list[tuple[int, int]]] = {}
        for row, index in chosen:
            groups.setdefault(tuple(images[index].shape), []).append((row, index))
        for members in groups.values():
            rows = torch.tensor([row for row, _ in members], device=self.device)
            out = function(torch.stack([images[i] for _, i in members]), rows)
            for j, (_, i) in enumerate(members):
                images[i] = out[j].to(images[i].dtype)


# --- parsing ---------------------------------------------------------------------------------------------

_TYPES = ("blur", "noise", "jpeg", "resize", "shuffle")
_BANK_KEYS = ("kernels", "sinc_prob", "rotation", "betag", "betap", "sinc_cutoff", "sinc_cutoff_large")


def _parse_blur(spec: _Spec) -> _Blur:
    prob = spec.probability("prob", 1.0)
    if not (spec.has("kernels") or spec.has("sinc_prob")):
        for key in _BANK_KEYS:
            if spec.has(key):
                raise spec.error(f"key {key!r} belongs to random kernels: give 'kernels' (and/or 'sinc_prob') too")
        if not spec.has("sigma"):
            raise spec.error("missing key 'sigma'")
        size = spec.odd_size("kernel_size", allow_range=False)
        return _Blur(prob, sigma=spec.range("sigma", (0.0, math.inf)), kernel_size=None if size is None else size[0])

    sinc_prob = spec.probability("sinc_prob", 0.0)
    kinds: tuple[tuple[str, float], ...] = ()
    if spec.has("kernels"):
        table = spec.spec["kernels"]
        if not isinstance(table, Mapping) or not table:
            raise spec.error(f"key 'kernels' must be a table of probabilities, e.g. {{iso = 0.5, aniso = 0.5}}, got {table!r}")
        for name, p in table.items():
            if name not in KERNEL_KINDS:
                raise spec.error(
                    f"kernels: unknown kernel {name!r}{_suggest(str(name), KERNEL_KINDS)} (known: {', '.join(KERNEL_KINDS)})"
                )
            if not _is_number(p) or p < 0:
                raise spec.error(f"kernels.{name}: must be a probability >= 0, got {p!r}")
        total = sum(float(p) for p in table.values())
        if abs(total - 1.0) > 1e-6:
            raise spec.error(f"kernels: the probabilities must sum to 1, got {total:g}")
        kinds = tuple((str(name), float(p)) for name, p in table.items())
    elif sinc_prob < 1.0:
        raise spec.error("missing key 'kernels' (the images that get no sinc kernel need kernel families)")
    needs_sigma = bool(kinds) and sinc_prob < 1.0
    if needs_sigma and not spec.has("sigma"):
        raise spec.error("missing key 'sigma'")
    sigma = spec.range("sigma", (0.0, math.inf), positive=True) if spec.has("sigma") else _Range(0.2, 3.0)
    sizes = spec.odd_size("kernel_size", [7, 21], allow_range=True)
    assert sizes is not None
    bank = BlurKernels(
        kinds=kinds,
        sizes=sizes,
        sigma=(sigma.low, sigma.high),
        rotation=_pair(spec.range("rotation", (-2 * _PI, 2 * _PI), default=[-_PI, _PI])),
        betag=_pair(spec.range("betag", (0.0, 100.0), default=[0.5, 4.0], positive=True)),
        betap=_pair(spec.range("betap", (0.0, 100.0), default=[1.0, 2.0], positive=True)),
        sinc_prob=sinc_prob,
        sinc_cutoff=_pair(spec.range("sinc_cutoff", (0.0, _PI + 1e-9), default=[_PI / 3, _PI], positive=True)),
        sinc_cutoff_large=_pair(
            spec.range("sinc_cutoff_large", (0.0, _PI + 1e-9), default=[_PI / 5, _PI], positive=True)
        ),
    )
    return _Blur(prob, bank=bank)


def _pair(value: _Range) -> tuple[float, float]:
    return (value.low, value.high)


def _parse_noise(spec: _Spec) -> _Noise:
    prob = spec.probability("prob", 1.0)
    if spec.has("sigma") and spec.has("sigma_levels"):
        raise spec.error("give 'sigma' ([0, 1] units) or 'sigma_levels' (8-bit levels), not both")
    if not (spec.has("sigma") or spec.has("sigma_levels") or spec.has("poisson_scale")):
        raise spec.error("missing key 'sigma' (or 'sigma_levels' / 'poisson_scale')")
    sigma, levels = None, False
    if spec.has("sigma"):
        sigma = spec.range("sigma", (0.0, 1.0))
    elif spec.has("sigma_levels"):
        in_levels = spec.range("sigma_levels", (0.0, 255.0))
        sigma, levels = _Range(in_levels.low / 255, in_levels.high / 255), True
    poisson = spec.range("poisson_scale", (0.0, 100.0)) if spec.has("poisson_scale") else None
    if spec.has("gaussian_prob") and (sigma is None or poisson is None):
        raise spec.error("key 'gaussian_prob' chooses between Gaussian and Poisson noise: give both a sigma and 'poisson_scale'")
    gaussian_prob = 1.0 if poisson is None else 0.0 if sigma is None else spec.probability("gaussian_prob", 0.5)
    return _Noise(prob, sigma, levels, poisson, gaussian_prob, spec.probability("gray_prob", 0.0))


def _parse_jpeg(spec: _Spec) -> _Jpeg:
    if not spec.has("quality"):
        raise spec.error("missing key 'quality'")
    quality = spec.range("quality", (1.0, 100.0), integer=True)
    return _Jpeg(spec.probability("prob", 1.0), quality, spec.choice("codec", ("libjpeg", "torch"), "libjpeg"))


def _parse_resize(spec: _Spec) -> _Resize:
    modes = spec.spec.get("modes", list(RESIZE_MODES))
    if (
        not isinstance(modes, (list, tuple))
        or not modes
        or any(m not in RESIZE_MODES for m in modes)
        or len(set(modes)) != len(modes)
    ):
        raise spec.error(f"key 'modes' must be a list of distinct modes from {', '.join(RESIZE_MODES)}, got {modes!r}")
    if spec.has("size") == spec.has("scale"):
        raise spec.error("give 'scale' (a random resize) or size = \"output\" (the resize to the output size)")
    if spec.has("size"):
        spec.choice("size", ("output",), "output")
        for key in ("prob", "up_down_keep", "relative_to"):
            if spec.has(key):
                raise spec.error(f"key {key!r} does not apply to the resize to the output size")
        return _Resize(1.0, None, None, tuple(modes), "current")
    scale = spec.range("scale", (0.0, 16.0), positive=True)
    up_down_keep = None
    if spec.has("up_down_keep"):
        value = spec.spec["up_down_keep"]
        if not (isinstance(value, (list, tuple)) and len(value) == 3 and all(_is_number(v) and v >= 0 for v in value)):
            raise spec.error(f"key 'up_down_keep' must be three probabilities [up, down, keep], got {value!r}")
        if abs(sum(value) - 1.0) > 1e-6:
            raise spec.error(f"key 'up_down_keep' must sum to 1, got {sum(value):g}")
        if not scale.low <= 1.0 <= scale.high:
            raise spec.error(f"key 'up_down_keep' needs a 'scale' range around 1, got [{scale.low:g}, {scale.high:g}]")
        up_down_keep = (float(value[0]), float(value[1]), float(value[2]))
    relative_to = spec.choice("relative_to", ("current", "output"), "current")
    return _Resize(spec.probability("prob", 1.0), scale, up_down_keep, tuple(modes), relative_to)


def _parse_step(index: int, spec: Any, where: str = "DegradationPipeline: ") -> Any:
    where = f"{where}step {index}"
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}: expected a table (dict) with a 'type' key, got {type(spec).__name__}")
    if "type" not in spec:
        raise ValueError(f"{where}: missing key 'type' (one of {', '.join(_TYPES)})")
    kind = spec["type"]
    if kind not in _TYPES:
        raise ValueError(f"{where}: unknown type {kind!r}{_suggest(str(kind), list(_TYPES))} (known: {', '.join(_TYPES)})")
    allowed = {
        "blur": ("type", "sigma", "prob", "kernel_size", *_BANK_KEYS),
        "noise": ("type", "sigma", "prob", "sigma_levels", "poisson_scale", "gaussian_prob", "gray_prob"),
        "jpeg": ("type", "quality", "prob", "codec"),
        "resize": ("type", "scale", "size", "prob", "up_down_keep", "modes", "relative_to"),
        "shuffle": ("type", "blocks"),
    }[kind]
    reader = _Spec(where, kind, spec, allowed)
    if kind == "shuffle":
        blocks = spec.get("blocks")
        if not isinstance(blocks, (list, tuple)) or len(blocks) < 2 or not all(
            isinstance(b, (list, tuple)) and b for b in blocks
        ):
            raise reader.error("key 'blocks' must be a list of two or more non-empty lists of steps")
        return _Shuffle(
            tuple(
                tuple(_parse_step(i, s, f"{where}, block {b}, ") for i, s in enumerate(block))
                for b, block in enumerate(blocks)
            )
        )
    return {"blur": _parse_blur, "noise": _parse_noise, "jpeg": _parse_jpeg, "resize": _parse_resize}[kind](reader)


def _check_sizes(steps: Sequence[Any]) -> bool:
    """Whether the chain ends at the output size; raises where resizes cannot give one output size."""

    def walk(sequence: Sequence[Any], done: bool, where: str) -> bool:
        # done: the resize to the output size has happened on this path.
        for index, step in enumerate(sequence):
            if isinstance(step, _Resize):
                if done:
                    raise ValueError(f"{where}step {index} (resize): comes after the resize to the output size")
                done = step.to_output
            elif isinstance(step, _Shuffle):
                ends = [walk(block, False, f"{where}step {index}, block {b}, ") for b, block in enumerate(step.blocks)]
                resizing = [any(_has_resize(s) for s in block) for block in step.blocks]
                if sum(ends) > 1 or (any(ends) and sum(resizing) > 1):
                    raise ValueError(
                        f"{where}step {index} (shuffle): only one block may resize, and it must end at the output size"
                    )
                if any(resizing) and not any(ends):
                    raise ValueError(f"{where}step {index} (shuffle): a block that resizes must end at the output size")
                if done and any(resizing):
                    raise ValueError(f"{where}step {index} (shuffle): resizes after the resize to the output size")
                done = done or any(ends)
        return done

    ends = walk(steps, False, "DegradationPipeline: ")
    if not ends and any(_has_resize(s) for s in steps):
        raise ValueError(
            "DegradationPipeline: a pipeline with a random resize must end with a resize to the output size "
            '({type = "resize", size = "output"})'
        )
    if not ends and any(_uses_output(s) for s in steps):
        raise ValueError("DegradationPipeline: relative_to = \"output\" needs a resize to the output size")
    return ends


def _has_resize(step: Any) -> bool:
    if isinstance(step, _Shuffle):
        return any(_has_resize(s) for block in step.blocks for s in block)
    return isinstance(step, _Resize)


def _uses_output(step: Any) -> bool:
    if isinstance(step, _Shuffle):
        return any(_uses_output(s) for block in step.blocks for s in block)
    return isinstance(step, _Resize) and step.relative_to == "output"


class DegradationPipeline:
    """A random chain of degradations described by a recipe's list of steps.

    Each step is a dict with a ``type``. A parameter given as ``[low, high]`` is drawn uniformly per image
    (integers, both ends included, for jpeg quality); a number is used as is. ``prob`` (default 1) is the
    chance that an image gets the step. First-order steps keep the image size:

    * ``blur``: ``sigma`` (pixels) for an isotropic Gaussian (optional odd ``kernel_size``); or random
      kernels as Real-ESRGAN draws them: ``kernels`` (probabilities of ``iso``, ``aniso``,
      ``generalized_iso``, ``generalized_aniso``, ``plateau_iso``, ``plateau_aniso``), ``sinc_prob``
      (a 2-D sinc kernel instead), ``kernel_size`` (odd ``[low, high]``, default ``[7, 21]``), ``sigma``,
      ``rotation`` (default ``[-pi, pi]``), ``betag`` (default ``[0.5, 4]``), ``betap`` (default
      ``[1, 2]``), ``sinc_cutoff`` (kernels below 13, default ``[pi/3, pi]``), ``sinc_cutoff_large``
      (13 and up, default ``[pi/5, pi]``).
    * ``noise``: Gaussian ``sigma`` in [0, 1] units or ``sigma_levels`` in 8-bit levels, and/or Poisson
      ``poisson_scale``; with both, ``gaussian_prob`` (default 0.5) picks Gaussian; ``gray_prob`` (default
      0) makes one noise field for all channels. The result is clipped to [0, 1].
    * ``jpeg``: ``quality`` 1..100; ``codec`` ``"libjpeg"`` (torchvision's encoder, default) or
      ``"torch"`` (:func:`~restorekit.data.realesrgan_degradation.jpeg_torch`, on the batch's device).

    Steps that change the size (Real-ESRGAN's second-order model):

    * ``resize``: ``scale`` (a factor or range; with ``up_down_keep = [pu, pd, pk]`` the factor is drawn
      from ``[1, high]``, ``[low, 1]`` or is 1 with those probabilities), ``relative_to`` (``"current"``
      size, default, or the ``"output"`` size), ``modes`` (drawn from, default ``["area", "bilinear",
      "bicubic"]``); or ``size = "output"``: the resize to the output size.
    * ``shuffle``: ``blocks``, lists of steps applied in an order drawn per image.

    A pipeline with a random resize must end with the resize to the output size; it then makes the
    model input from the target image (:attr:`resizes_to_output`) and is called with ``output_size``.

    Random draws use the *generator* given to the call (the super-resolution task derives one from its
    batch's sample seeds), else torch's global generator on the batch's device.

    Args:
        steps: The step dicts, in order, as read from TOML.

    Raises:
        ValueError: Naming the step index and key, for an unknown ``type``, an unknown or missing key, a
            value out of range, or resizes that do not end at the output size; close misspellings get a
            suggestion.

    Example:
        >>> import torch
        >>> pipeline = DegradationPipeline([
        ...     {"type": "blur", "sigma": [0.2, 3.0], "prob": 0.5},
        ...     {"type": "noise", "sigma": [0, 0.04], "prob": 0.5},
        ...     {"type": "jpeg", "quality": [30, 95], "prob": 0.3},
        ... ])
        >>> pipeline(torch.rand(4, 3, 32, 32)).shape
        torch.Size([4, 3, 32, 32])
        >>> second_order = DegradationPipeline([
        ...     {"type": "blur", "kernels": {"iso": 0.5, "aniso": 0.5}, "sigma": [0.2, 3.0]},
        ...     {"type": "resize", "scale": [0.15, 1.5], "up_down_keep": [0.2, 0.7, 0.1]},
        ...     {"type": "noise", "sigma_levels": [1, 30], "poisson_scale": [0.05, 3], "gray_prob": 0.4},
        ...     {"type": "jpeg", "quality": [30, 95], "codec": "torch"},
        ...     {"type": "resize", "size": "output"},
        ... ])
        >>> second_order(torch.rand(4, 3, 64, 64), output_size=(16, 16)).shape
        torch.Size([4, 3, 16, 16])
    """

    def __init__(self, steps: Sequence[Mapping[str, Any]]) -> None:
        if isinstance(steps, (str, bytes, Mapping)) or not isinstance(steps, Sequence):
            raise ValueError(
                f"DegradationPipeline: steps must be a list of tables (dicts), got {type(steps).__name__}"
            )
        self._steps = tuple(_parse_step(index, spec) for index, spec in enumerate(steps))
        self._to_output = _check_sizes(self._steps)

    def __len__(self) -> int:
        return len(self._steps)

    def __repr__(self) -> str:
        return f"DegradationPipeline({self.describe()})"

    @property
    def resizes_to_output(self) -> bool:
        """True when the chain ends with the resize to the output size: it makes the input from the target."""
        return self._to_output

    def describe(self) -> str:
        """One line such as ``blur(sigma~U[0.2, 3], p=0.5) -> jpeg(quality~U{30..95}, p=0.3)``."""
        if not self._steps:
            return "identity"
        return " -> ".join(step.describe() for step in self._steps)

    def __call__(
        self,
        x: Tensor,
        *,
        output_size: tuple[int, int] | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Degrade a batch ``(N, C, H, W)`` (or one image ``(C, H, W)``) in [0, 1].

        Args:
            x: The images (the target images when :attr:`resizes_to_output`).
            output_size: ``(height, width)`` of the result, for a pipeline that resizes to it.
            generator: Every random draw comes from it (on ``x``'s device); default torch's global one.

        Returns:
            The degraded images clamped to [0, 1], same dtype and device; same size, or *output_size*.

        Raises:
            ValueError: A pipeline that resizes to the output size called without *output_size*.
        """
        batch_x, added = _as_batch(x, "DegradationPipeline")
        if self._to_output and output_size is None:
            raise ValueError("DegradationPipeline: this pipeline resizes to the output size; pass output_size")
        if not self._steps:
            return x.clamp(0.0, 1.0) if not added else batch_x[0].clamp(0.0, 1.0)
        size = None if output_size is None else (int(output_size[0]), int(output_size[1]))
        context = _Context(batch_x.device, size, generator)
        images = list(batch_x.unbind(0))
        indices = list(range(len(images)))
        for step in self._steps:
            step.run(images, indices, context)
        out = torch.stack(images) if images else batch_x.clone()
        out = out.clamp(0.0, 1.0)
        return out[0] if added else out
