"""Synthetic camera shake: motion-blur kernels and noise drawn per sample, applied batched on the device.

A :class:`CameraShake` is the on-device degradation of :class:`~restorekit.data.crops.PairedCrops`: the
worker crops the sharp patch with a margin of ``kernel_size // 2`` real pixels (the ``context``) and
draws a kernel and a noise level from the sample's key (:meth:`CameraShake.draw`); ``make_batch`` then
blurs the whole batch with per-sample kernels ('valid' convolution, so no padding artefacts at the patch
edges) and adds noise (:meth:`CameraShake.apply`). Everything random comes from the sample key, so a
sample's blurred input is the same on every run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from restorekit.data.augment import random_flip_rotate
from restorekit.data.degradations import gaussian_noise
from restorekit.data.motion_blur import blur, random_motion_kernel

__all__ = ["CameraShake", "parse_noise"]


@dataclass(frozen=True)
class CameraShake:
    """Where synthetic blur kernels and noise levels come from.

    Attributes:
        kernel_size: side of every kernel (odd).
        kernels: real kernels, already centred in ``kernel_size``; None for random trajectories.
        noise: ``(low, high)`` Gaussian noise standard deviation on the [0, 1] scale.
    """

    kernel_size: int
    kernels: tuple[Tensor, ...] | None
    noise: tuple[float, float]

    @property
    def margin(self) -> int:
        """Target pixels of context needed on each side of a crop for a 'valid' convolution."""
        return self.kernel_size // 2

    def kernel(self, generator: torch.Generator) -> Tensor:
        """A ``(kernel_size, kernel_size)`` kernel drawn from *generator*."""
        if self.kernels is None:
            return random_motion_kernel(size=self.kernel_size, generator=generator)
        index = int(torch.randint(len(self.kernels), (1,), generator=generator))
        # Real kernels are few: any of their 8 flips/rotations is an equally plausible shake.
        return random_flip_rotate([self.kernels[index]], generator)[0]

    def noise_level(self, generator: torch.Generator) -> tuple[float, int]:
        """A noise standard deviation and the seed of its noise pattern."""
        low, high = self.noise
        sigma = low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))
        seed = int(torch.randint(2**62, (1,), generator=generator))
        return sigma, seed

    def draw(self, generator: torch.Generator) -> dict[str, Tensor]:
        """One sample's parameters (``kernel``, ``noise_sigma``, ``noise_seed``), collated into the batch."""
        kernel = self.kernel(generator)
        sigma, seed = self.noise_level(generator)
        return {
            "kernel": kernel,
            "noise_sigma": torch.tensor(sigma, dtype=torch.float32),
            "noise_seed": torch.tensor(seed, dtype=torch.int64),
        }

    def apply(self, context: Tensor, params: dict[str, Tensor]) -> Tensor:
        """Blur a batch of contexts ``(N, C, H + 2m, W + 2m)`` to ``(N, C, H, W)``, add noise, clamp.

        Args:
            context: sharp crops with :attr:`margin` pixels on each side, on the device.
            params: the batched :meth:`draw` values of the same samples (``kernel`` on the device).
        """
        out = blur(context, params["kernel"], padding="valid")
        sigmas = params["noise_sigma"].flatten().tolist()
        seeds = params["noise_seed"].flatten().tolist()
        for row, sigma in enumerate(sigmas):
            if sigma > 0:
                # A generator per sample: the noise pattern belongs to the sample, not to the batch.
                generator = torch.Generator(device=out.device).manual_seed(int(seeds[row]))
                out[row] = gaussian_noise(out[row], sigma, generator=generator)
        return out.clamp(0.0, 1.0)

    def degrade_image(self, sharp: Tensor, generator: torch.Generator) -> Tensor:
        """Blur one whole ``(C, H, W)`` image (reflect padding) and add seeded noise, on the CPU."""
        kernel = self.kernel(generator)
        sigma, seed = self.noise_level(generator)
        out = blur(sharp, kernel)
        if sigma > 0:
            out = gaussian_noise(out, sigma, generator=torch.Generator().manual_seed(seed))
        return out.clamp(0.0, 1.0)


def parse_noise(noise: float | Sequence[float]) -> tuple[float, float]:
    """A noise setting (one standard deviation or ``[low, high]``) as a ``(low, high)`` range.

    Raises:
        ValueError: not a number or a pair, negative, reversed, or above 1.
    """
    if isinstance(noise, (int, float)) and not isinstance(noise, bool):
        low = high = float(noise)
    elif isinstance(noise, Sequence) and not isinstance(noise, str) and len(noise) == 2:
        low, high = float(noise[0]), float(noise[1])
    else:
        raise ValueError(f"noise must be a standard deviation or a [low, high] range; got {noise!r}")
    if not 0.0 <= low <= high:
        raise ValueError(f"noise must satisfy 0 <= low <= high; got {noise!r}")
    if high > 1.0:
        raise ValueError(f"noise is a standard deviation on the [0, 1] scale (25/255 = 0.098); got {noise!r}")
    return low, high
