"""RRDBNet, the ESRGAN generator (Wang et al. 2018, "ESRGAN: Enhanced Super-Resolution Generative
Adversarial Networks"), with Real-ESRGAN's (Wang et al. 2021) pixel-unshuffle front for x1 and x2.

Parameter names follow BasicSR / Real-ESRGAN (``conv_first``, ``body.N.rdb1.conv1`` ...
``body.N.rdb3.conv5``, ``conv_body``, ``conv_up1``, ``conv_up2``, ``conv_hr``, ``conv_last``), so
checkpoints in that layout load unchanged and the older ESRGAN layouts convert by renaming only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from restorekit.inference.fused import dense_block

SUPPORTED_SCALES = (1, 2, 4, 8)

RESIDUAL_SCALE = 0.2
"""Residual scaling of each dense block and of each RRDB (ESRGAN, Sec. 3.1)."""


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convolutions densely connected, LeakyReLU(0.2) after the first four, residual x0.2.

    Args:
        num_features: channels in and out.
        growth_channels: channels each of the first four convolutions adds.
    """

    def __init__(self, *, num_features: int, growth_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_features, growth_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(num_features + growth_channels, growth_channels, 3, padding=1)
        self.conv3 = nn.Conv2d(num_features + 2 * growth_channels, growth_channels, 3, padding=1)
        self.conv4 = nn.Conv2d(num_features + 3 * growth_channels, growth_channels, 3, padding=1)
        self.conv5 = nn.Conv2d(num_features + 4 * growth_channels, num_features, 3, padding=1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)
        # As in the reference code: He normal scaled by 0.1 keeps the untrained residual branches small,
        # which is what lets a 23-block (345-convolution) trunk train without BatchNorm.
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5):
            nn.init.kaiming_normal_(conv.weight)
            conv.weight.data.mul_(0.1)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Inside restorekit's CPU inference fast path: the same block without concatenations (equal up to
        # float rounding); None anywhere else (training, autograd, CUDA, torch.compile).
        fused = dense_block(
            x, (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5),
            activation="leaky_relu", negative_slope=0.2, residual_scale=RESIDUAL_SCALE,
        )  # fmt: skip
        if fused is not None:
            return fused
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x + RESIDUAL_SCALE * x5


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks and an outer residual scaled by 0.2.

    Args:
        num_features: channels in and out.
        growth_channels: growth of each dense block.
    """

    def __init__(self, *, num_features: int, growth_channels: int) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_features=num_features, growth_channels=growth_channels)
        self.rdb2 = ResidualDenseBlock(num_features=num_features, growth_channels=growth_channels)
        self.rdb3 = ResidualDenseBlock(num_features=num_features, growth_channels=growth_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + RESIDUAL_SCALE * self.rdb3(self.rdb2(self.rdb1(x)))


class RRDBNet(nn.Module):
    """The ESRGAN / Real-ESRGAN generator.

    For x4 and x8 the body upsamples by nearest-neighbour interpolation x2 followed by a 3x3 conv and
    LeakyReLU(0.2), once per factor of two. For x1 and x2 the input is first folded into channels by
    pixel-unshuffle (factor 4 and 2), as Real-ESRGAN does, and the x4 body follows; sides that are not
    a multiple of the unshuffle factor are padded (reflect, or replicate for inputs too small to
    reflect) and the output is cropped back, so any input size works.

    Initialisation: the convolutions inside the dense blocks are He normal scaled by 0.1 with zero
    bias (BasicSR's choice); the other convolutions keep PyTorch's default.

    Args:
        in_channels: channels of the low-resolution input.
        out_channels: channels of the output.
        num_features: trunk channels (64).
        num_blocks: number of RRDBs (23).
        growth_channels: growth of the dense blocks (32).
        scale: upscaling factor, 1, 2, 4 or 8.
        pixel_unshuffle: x1/x2 by pixel-unshuffle in front of the x4 body (Real-ESRGAN, the default);
            False builds the original ESRGAN's x2 (one upsampling stage) and x1 (none), the layout of
            many community "2x"/"1x" checkpoints.

    Raises:
        ValueError: ``scale`` is not supported, or a size is not positive.

    Example:
        >>> import torch
        >>> net = RRDBNet(num_features=16, num_blocks=1, growth_channels=8, scale=2)
        >>> net(torch.rand(1, 3, 7, 9)).shape
        torch.Size([1, 3, 14, 18])
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        out_channels: int = 3,
        num_features: int = 64,
        num_blocks: int = 23,
        growth_channels: int = 32,
        scale: int = 4,
        pixel_unshuffle: bool = True,
    ) -> None:
        super().__init__()
        if scale not in SUPPORTED_SCALES:
            raise ValueError(f"RRDBNet: scale must be one of {SUPPORTED_SCALES}, got {scale!r}")
        for name, value in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("num_features", num_features),
            ("growth_channels", growth_channels),
        ):
            if value < 1:
                raise ValueError(f"RRDBNet: {name} must be positive, got {value}")
        if num_blocks < 0:
            raise ValueError(f"RRDBNet: num_blocks must be >= 0, got {num_blocks}")
        self.scale = int(scale)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.unshuffle_factor = {1: 4, 2: 2}.get(scale, 1) if pixel_unshuffle else 1
        # log2 of what is left to upsample after the unshuffle: x4 body for x1/x2 with unshuffle.
        num_upsamples = int(math.log2(scale * self.unshuffle_factor))

        self.conv_first = nn.Conv2d(in_channels * self.unshuffle_factor**2, num_features, 3, padding=1)
        self.body = nn.Sequential(
            *(RRDB(num_features=num_features, growth_channels=growth_channels) for _ in range(num_blocks))
        )
        self.conv_body = nn.Conv2d(num_features, num_features, 3, padding=1)
        for stage in range(1, num_upsamples + 1):
            setattr(self, f"conv_up{stage}", nn.Conv2d(num_features, num_features, 3, padding=1))
        self.conv_hr = nn.Conv2d(num_features, num_features, 3, padding=1)
        self.conv_last = nn.Conv2d(num_features, out_channels, 3, padding=1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)
        self._up_convs = [f"conv_up{stage}" for stage in range(1, num_upsamples + 1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Super-resolve a batch.

        Args:
            x: ``(N, in_channels, H, W)`` images in [0, 1].

        Returns:
            ``(N, out_channels, scale*H, scale*W)``, unclamped.
        """
        height, width = x.shape[-2:]
        factor = self.unshuffle_factor
        if factor > 1:
            pad_h, pad_w = -height % factor, -width % factor
            if pad_h or pad_w:
                mode = "reflect" if pad_h < height and pad_w < width else "replicate"
                x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
            x = F.pixel_unshuffle(x, factor)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for name in self._up_convs:
            feat = self.lrelu(getattr(self, name)(F.interpolate(feat, scale_factor=2, mode="nearest")))
        out = self.conv_last(self.lrelu(self.conv_hr(feat)))
        if factor > 1:
            out = out[..., : height * self.scale, : width * self.scale]
        return out
