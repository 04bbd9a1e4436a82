"""Batched, on-device degradations for synthesising training inputs: blur, noise and JPEG.

The functions work on whole batches with per-image parameters, so a training step degrades its batch in a
few tensor operations on the GPU. :class:`DegradationPipeline` builds a random chain of them from the plain
dicts of a TOML recipe, e.g.::

    [[task.degradations]]
    type = "blur"
    sigma = [0.2, 3.0]
    prob = 0.5

Random draws use torch's global generator on the batch's device, so capturing and restoring the RNG state
(as the trainer does for a resumed run) reproduces the same degradations.
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


@dataclass(frozen=True)
class _StepKind:
    """What a step ``type`` needs: its parameter (sampled per image), the optional keys and the function."""

    parameter: str
    optional: tuple[str, ...]
    integer: bool
    bounds: tuple[float, float]


_STEP_KINDS: dict[str, _StepKind] = {
    "blur": _StepKind(
        parameter="sigma", optional=("prob", "kernel_size"), integer=False, bounds=(0.0, math.inf)
    ),
    "noise": _StepKind(parameter="sigma", optional=("prob",), integer=False, bounds=(0.0, 1.0)),
    "jpeg": _StepKind(parameter="quality", optional=("prob",), integer=True, bounds=(1.0, 100.0)),
}


@dataclass(frozen=True)
class _Step:
    type: str
    low: float
    high: float
    prob: float
    kernel_size: int | None


def _suggest(word: str, choices: Sequence[str]) -> str:
    matches = difflib.get_close_matches(word, list(choices), n=1)
    if not matches:
        # Spelled-out forms ("probability" for "prob") are too long for difflib's ratio to catch.
        matches = [choice for choice in choices if word.lower().startswith(choice) or choice.startswith(word)]
    return f"; did you mean {matches[0]!r}?" if matches else ""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _parse_step(index: int, spec: Any) -> _Step:
    where = f"DegradationPipeline: step {index}"
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}: expected a table (dict) with a 'type' key, got {type(spec).__name__}")
    if "type" not in spec:
        raise ValueError(f"{where}: missing key 'type' (one of {', '.join(_STEP_KINDS)})")
    kind_name = spec["type"]
    if kind_name not in _STEP_KINDS:
        raise ValueError(
            f"{where}: unknown type {kind_name!r}{_suggest(str(kind_name), list(_STEP_KINDS))} "
            f"(known: {', '.join(_STEP_KINDS)})"
        )
    kind = _STEP_KINDS[kind_name]
    allowed = ("type", kind.parameter, *kind.optional)
    for key in spec:
        if key not in allowed:
            raise ValueError(
                f"{where} ({kind_name}): unknown key {key!r}{_suggest(str(key), allowed)} "
                f"(allowed: {', '.join(allowed)})"
            )
    if kind.parameter not in spec:
        raise ValueError(f"{where} ({kind_name}): missing key {kind.parameter!r}")

    value = spec[kind.parameter]
    if _is_number(value):
        low = high = float(value)
    elif isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_number(v) for v in value):
        low, high = float(value[0]), float(value[1])
    else:
        raise ValueError(
            f"{where} ({kind_name}): key {kind.parameter!r} must be a number or a [low, high] range, "
            f"got {value!r}"
        )
    lo_bound, hi_bound = kind.bounds
    if not lo_bound <= low <= high <= hi_bound:
        raise ValueError(
            f"{where} ({kind_name}): key {kind.parameter!r} must satisfy {lo_bound:g} <= low <= high <= "
            f"{hi_bound:g}, got {value!r}"
        )
    if kind.integer and (low != int(low) or high != int(high)):
        raise ValueError(f"{where} ({kind_name}): key {kind.parameter!r} must hold integers, got {value!r}")

    prob = spec.get("prob", 1.0)
    if not _is_number(prob) or not 0.0 <= prob <= 1.0:
        raise ValueError(f"{where} ({kind_name}): key 'prob' must be a number in [0, 1], got {prob!r}")

    kernel_size = spec.get("kernel_size")
    if kernel_size is not None and (
        isinstance(kernel_size, bool)
        or not isinstance(kernel_size, int)
        or kernel_size < 1
        or kernel_size % 2 == 0
    ):
        raise ValueError(
            f"{where} ({kind_name}): key 'kernel_size' must be a positive odd integer, got {kernel_size!r}"
        )
    return _Step(type=kind_name, low=low, high=high, prob=float(prob), kernel_size=kernel_size)


class DegradationPipeline:
    """A random chain of degradations described by a recipe's list of steps.

    Each step is a dict with ``type`` (``"blur"``, ``"noise"`` or ``"jpeg"``), its parameter (``sigma`` for
    blur and noise, in pixels and in [0, 1] units; ``quality`` for jpeg), an optional ``prob`` (default 1),
    and for blur an optional odd ``kernel_size``. A parameter given as ``[low, high]`` is drawn uniformly per
    image (jpeg quality: integers, both ends included); a number is used as is. Each step is applied to the
    images of the batch selected with probability ``prob``.

    Args:
        steps: The step dicts, in order, as read from TOML.

    Raises:
        ValueError: Naming the step index and key, for an unknown ``type``, an unknown or missing key, or a
            value out of range; close misspellings get a suggestion.

    Example:
        >>> import torch
        >>> pipeline = DegradationPipeline([
        ...     {"type": "blur", "sigma": [0.2, 3.0], "prob": 0.5},
        ...     {"type": "noise", "sigma": [0, 0.04], "prob": 0.5},
        ...     {"type": "jpeg", "quality": [30, 95], "prob": 0.3},
        ... ])
        >>> pipeline(torch.rand(4, 3, 32, 32)).shape
        torch.Size([4, 3, 32, 32])
    """

    def __init__(self, steps: Sequence[Mapping[str, Any]]) -> None:
        if isinstance(steps, (str, bytes, Mapping)) or not isinstance(steps, Sequence):
            raise ValueError(
                f"DegradationPipeline: steps must be a list of tables (dicts), got {type(steps).__name__}"
            )
        self._steps = tuple(_parse_step(index, spec) for index, spec in enumerate(steps))

    def __len__(self) -> int:
        return len(self._steps)

    def __repr__(self) -> str:
        return f"DegradationPipeline({self.describe()})"

    def describe(self) -> str:
        """One line such as ``blur(sigma~U[0.2, 3], p=0.5) -> jpeg(quality~U{30..95}, p=0.3)``."""
        if not self._steps:
            return "identity"
        parts = []
        for step in self._steps:
            kind = _STEP_KINDS[step.type]
            if step.low == step.high:
                value = f"{kind.parameter}={step.low:g}"
            elif kind.integer:
                value = f"{kind.parameter}~U{{{step.low:g}..{step.high:g}}}"
            else:
                value = f"{kind.parameter}~U[{step.low:g}, {step.high:g}]"
            extra = f", kernel_size={step.kernel_size}" if step.kernel_size is not None else ""
            parts.append(f"{step.type}({value}{extra}, p={step.prob:g})")
        return " -> ".join(parts)

    def _sample(self, step: _Step, batch: int, device: torch.device) -> Tensor:
        if step.type == "jpeg":
            return torch.randint(int(step.low), int(step.high) + 1, (batch,), device=device).to(torch.float64)
        return step.low + (step.high - step.low) * torch.rand(batch, device=device, dtype=torch.float64)

    def __call__(self, x: Tensor) -> Tensor:
        """Degrade a batch ``(N, C, H, W)`` (or one image ``(C, H, W)``) in [0, 1].

        Returns:
            The degraded images clamped to [0, 1], same shape, dtype and device.
        """
        batch_x, added = _as_batch(x, "DegradationPipeline")
        batch = batch_x.shape[0]
        device = batch_x.device
        out = batch_x
        functions: dict[str, Callable[[Tensor, Tensor, _Step], Tensor]] = {
            "blur": lambda images, values, step: gaussian_blur(images, values, step.kernel_size),
            "noise": lambda images, values, step: gaussian_noise(images, values),
            "jpeg": lambda images, values, step: jpeg(images, values),
        }
        for step in self._steps:
            if step.prob == 0.0:
                continue
            # Draw for every image, selected or not, so the RNG stream does not depend on the selection.
            selected = torch.rand(batch, device=device) < step.prob
            values = self._sample(step, batch, device)
            indices = torch.nonzero(selected).flatten()
            if indices.numel() == 0:
                continue
            degraded = functions[step.type](out[indices], values[indices], step)
            out = out.index_copy(0, indices, degraded.to(out.dtype))
        out = out.clamp(0.0, 1.0)
        return out[0] if added else out
