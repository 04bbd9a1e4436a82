"""SRResNet, the generator of SRGAN (Ledig et al. 2017, "Photo-Realistic Single Image
Super-Resolution Using a Generative Adversarial Network", Fig. 4).

Layout: a 9x9 head convolution with PReLU, ``num_blocks`` residual blocks
(conv3-BN-PReLU-conv3-BN plus identity), a conv3-BN closing the trunk with a long skip from the head,
one sub-pixel stage per factor of two (conv3 to 4x channels, PixelShuffle(2), PReLU) and a 9x9 tail
convolution. PReLUs have a single learnable slope each, as in the common reimplementations, which
gives the familiar 1,549,462 parameters for the default x4 network.
"""

from __future__ import annotations

import math

import torch
from torch import nn

SUPPORTED_SCALES = (2, 4, 8)


class ResidualBlock(nn.Module):
    """conv3-BN-PReLU-conv3-BN with an identity shortcut (no activation after the sum).

    Args:
        num_features: channels in and out.
    """

    def __init__(self, *, num_features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_features, num_features, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(num_features)
        self.act = nn.PReLU()
        self.conv2 = nn.Conv2d(num_features, num_features, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))


class SubPixelUpsample(nn.Module):
    """One x2 sub-pixel stage: conv3 to ``4 * num_features`` channels, PixelShuffle(2), PReLU.

    Args:
        num_features: channels in and out.
    """

    def __init__(self, *, num_features: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(num_features, num_features * 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.act = nn.PReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.shuffle(self.conv(x)))


RESIDUAL_INIT_SCALE = 0.1


class SRResNet(nn.Module):
    """The SRResNet / SRGAN generator.

    Input is RGB (or ``in_channels`` planes) in [0, 1] of any size; the output is ``scale`` times
    larger and is not clamped.

    Initialisation (the paper gives none): He (Kaiming) normal, fan-in, for every convolution with
    zero biases, the convolutions inside the residual blocks and the output convolution scaled by 0.1
    (as BasicSR does for its residual networks: each block starts close to the identity and the first
    outputs are small, which converges several times faster); BatchNorm starts at identity (weight 1,
    bias 0); PReLU slopes start at 0.25 (PyTorch's default).

    Args:
        in_channels: channels of the low-resolution input.
        out_channels: channels of the super-resolved output.
        num_features: feature channels of the trunk (64 in the paper).
        num_blocks: number of residual blocks B (16 in the paper).
        scale: upscaling factor, 2, 4 or 8 (4 in the paper).

    Raises:
        ValueError: ``scale`` is not 2, 4 or 8, or a size is not positive.

    Example:
        >>> import torch
        >>> net = SRResNet(num_features=16, num_blocks=2, scale=4)
        >>> net(torch.rand(1, 3, 12, 10)).shape
        torch.Size([1, 3, 48, 40])
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        out_channels: int = 3,
        num_features: int = 64,
        num_blocks: int = 16,
        scale: int = 4,
    ) -> None:
        super().__init__()
        if scale not in SUPPORTED_SCALES:
            raise ValueError(f"SRResNet: scale must be one of {SUPPORTED_SCALES}, got {scale!r}")
        for name, value in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("num_features", num_features),
        ):
            if value < 1:
                raise ValueError(f"SRResNet: {name} must be positive, got {value}")
        if num_blocks < 0:
            raise ValueError(f"SRResNet: num_blocks must be >= 0, got {num_blocks}")
        self.scale = int(scale)
        self.in_channels = in_channels
        self.out_channels = out_channels

        self.conv_first = nn.Conv2d(in_channels, num_features, 9, padding=4)
        self.act_first = nn.PReLU()
        self.body = nn.Sequential(*(ResidualBlock(num_features=num_features) for _ in range(num_blocks)))
        self.conv_body = nn.Conv2d(num_features, num_features, 3, padding=1)
        self.bn_body = nn.BatchNorm2d(num_features)
        self.upsample = nn.Sequential(
            *(SubPixelUpsample(num_features=num_features) for _ in range(int(math.log2(scale))))
        )
        self.conv_last = nn.Conv2d(num_features, out_channels, 9, padding=4)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise all weights (He normal convolutions, identity BatchNorm)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.PReLU):
                nn.init.constant_(module.weight, 0.25)
        with torch.no_grad():
            for conv in [m for block in self.body for m in block.modules() if isinstance(m, nn.Conv2d)]:
                conv.weight.mul_(RESIDUAL_INIT_SCALE)
            self.conv_last.weight.mul_(RESIDUAL_INIT_SCALE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Super-resolve a batch.

        Args:
            x: ``(N, in_channels, H, W)`` images in [0, 1].

        Returns:
            ``(N, out_channels, scale*H, scale*W)``, unclamped.
        """
        head = self.act_first(self.conv_first(x))
        trunk = self.bn_body(self.conv_body(self.body(head))) + head
        return self.conv_last(self.upsample(trunk))
