"""SRVGGNetCompact, the compact generator of Real-ESRGAN (Wang et al. 2021, "Real-ESRGAN: Training
Real-World Blind Super-Resolution with Pure Synthetic Data"; released as ``realesr-general-x4v3`` and
``realesr-animevideov3``).

A plain stack of 3x3 convolutions at low resolution, one pixel-shuffle at the end, and the
nearest-upsampled input added back, so the network only learns the residual. There is no convolution
at high resolution, which is what makes it several times faster than RRDBNet.

Parameter names follow the official checkpoints: one ``body`` list whose even entries are the
convolutions and whose odd entries are the activations (``body.1.weight`` is a PReLU's slopes), so an
official state dict loads unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ACT_TYPES = ("prelu", "relu", "leakyrelu")

LEAKY_SLOPE = 0.1
"""Negative slope of the ``leakyrelu`` option, as in the reference code (not ESRGAN's 0.2)."""


def _activation(act_type: str, num_features: int) -> nn.Module:
    if act_type == "prelu":
        # One learnable slope per channel: the official weights store (num_features,) tensors.
        return nn.PReLU(num_parameters=num_features)
    if act_type == "relu":
        return nn.ReLU(inplace=True)
    return nn.LeakyReLU(negative_slope=LEAKY_SLOPE, inplace=True)


class SRVGGNetCompact(nn.Module):
    """Real-ESRGAN's compact VGG-style super-resolution network.

    ``body.0`` is a 3x3 conv ``in_channels -> num_features``, then ``num_conv`` times a 3x3 conv
    ``num_features -> num_features``, each conv followed by an activation; the last 3x3 conv makes
    ``out_channels * scale**2`` channels, a pixel-shuffle turns them into the image, and the
    nearest-neighbour upsampled input is added (global residual).

    Purely convolutional, so tiles with an overlap of ``tile_margin`` input pixels (``num_conv + 2``,
    one per 3x3 convolution) give the same result as a whole-image pass.

    Args:
        in_channels: channels of the low-resolution input.
        out_channels: channels of the output; must equal ``in_channels`` because the input is added
            to the output.
        num_features: channels of every hidden layer (64).
        num_conv: hidden 3x3 convolutions between the first and the last (16; 32 in
            ``realesr-general-x4v3``).
        scale: upscaling factor (pixel-shuffle factor), 1 or more.
        act_type: ``"prelu"`` (one learnable slope per channel, the released models), ``"relu"`` or
            ``"leakyrelu"`` (slope 0.1).

    Raises:
        ValueError: an unknown ``act_type``, a size that is not positive, or ``out_channels`` differing
            from ``in_channels``.

    Example:
        >>> import torch
        >>> net = SRVGGNetCompact(num_features=8, num_conv=2, scale=2)
        >>> net(torch.rand(1, 3, 5, 7)).shape
        torch.Size([1, 3, 10, 14])
        >>> net.tile_margin
        4
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        out_channels: int = 3,
        num_features: int = 64,
        num_conv: int = 16,
        scale: int = 4,
        act_type: str = "prelu",
    ) -> None:
        super().__init__()
        if act_type not in ACT_TYPES:
            raise ValueError(f"SRVGGNetCompact: act_type must be one of {', '.join(ACT_TYPES)}, got {act_type!r}")
        for name, value in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("num_features", num_features),
            ("scale", scale),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SRVGGNetCompact: {name} must be a positive integer, got {value!r}")
        if isinstance(num_conv, bool) or not isinstance(num_conv, int) or num_conv < 0:
            raise ValueError(f"SRVGGNetCompact: num_conv must be an integer >= 0, got {num_conv!r}")
        if out_channels != in_channels:
            raise ValueError(
                f"SRVGGNetCompact: out_channels ({out_channels}) must equal in_channels ({in_channels}): "
                "the upsampled input is added to the output"
            )
        self.scale = scale
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.act_type = act_type
        # Each 3x3 conv widens the receptive field by one input pixel; pixel-shuffle and the
        # nearest-upsampled skip add nothing.
        self.tile_margin = num_conv + 2

        layers: list[nn.Module] = [nn.Conv2d(in_channels, num_features, 3, padding=1)]
        layers.append(_activation(act_type, num_features))
        for _ in range(num_conv):
            layers.append(nn.Conv2d(num_features, num_features, 3, padding=1))
            layers.append(_activation(act_type, num_features))
        layers.append(nn.Conv2d(num_features, out_channels * scale * scale, 3, padding=1))
        # A ModuleList (not Sequential) under the name "body" gives the official key layout body.N.
        self.body = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Super-resolve a batch.

        Args:
            x: ``(N, in_channels, H, W)`` images in [0, 1].

        Returns:
            ``(N, out_channels, scale*H, scale*W)``, unclamped.
        """
        out = x
        for layer in self.body:
            out = layer(out)
        out = F.pixel_shuffle(out, self.scale)
        return out + F.interpolate(x, scale_factor=self.scale, mode="nearest")
