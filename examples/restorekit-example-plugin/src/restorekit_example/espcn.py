"""ESPCN (Shi et al. 2016, "Real-Time Single Image and Video Super-Resolution Using an Efficient
Sub-Pixel Convolutional Neural Network").

The whole network runs at low resolution: two tanh feature layers (5x5 to 64 channels, 3x3 to 32
channels), a 3x3 convolution to ``scale**2 * out_channels`` channels, and a periodic shuffle
(``PixelShuffle``) that rearranges those channels into the ``scale``-times larger image. The paper
works on the Y channel (``in_channels=out_channels=1``); restorekit's super-resolution task feeds RGB,
hence the defaults of 3.
"""

from __future__ import annotations

import torch
from torch import nn


class ESPCN(nn.Module):
    """The efficient sub-pixel convolutional network, l = 3 layers as in the paper's evaluation.

    Input is ``in_channels`` planes in [0, 1] of any size; the output is ``scale`` times larger and
    is not clamped. The paper states no initialisation; PyTorch's default convolution
    initialisation is kept.

    Args:
        in_channels: channels of the low-resolution input.
        out_channels: channels of the super-resolved output.
        features: channels of the first layer, n1 (64 in the paper); the second layer has half as many
            (n2 = 32).
        scale: upscaling factor r, any integer from 1 to 16 (the paper reports x2, x3 and x4).

    Raises:
        ValueError: ``scale`` is not an integer from 1 to 16, a channel count is not positive, or
            ``features`` is below 2.

    Example:
        >>> import torch
        >>> net = ESPCN(features=16, scale=3)
        >>> net(torch.rand(1, 3, 10, 7)).shape
        torch.Size([1, 3, 30, 21])
    """

    def __init__(self, *, in_channels: int = 3, out_channels: int = 3, features: int = 64, scale: int = 3) -> None:
        super().__init__()
        if not isinstance(scale, int) or isinstance(scale, bool) or not 1 <= scale <= 16:
            raise ValueError(f"ESPCN: scale must be an integer from 1 to 16, got {scale!r}")
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if value < 1:
                raise ValueError(f"ESPCN: {name} must be positive, got {value}")
        if features < 2:
            raise ValueError(f"ESPCN: features must be at least 2 (the second layer has half), got {features}")
        self.scale = scale
        self.in_channels = in_channels
        self.out_channels = out_channels

        hidden = features // 2
        # Padding keeps the LR size, so the output is exactly scale x the input (the paper trains on
        # unpadded crops; padding changes nothing inside the image).
        self.conv1 = nn.Conv2d(in_channels, features, 5, padding=2)
        self.conv2 = nn.Conv2d(features, hidden, 3, padding=1)
        self.conv3 = nn.Conv2d(hidden, out_channels * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Super-resolve a batch.

        Args:
            x: ``(N, in_channels, H, W)`` images in [0, 1].

        Returns:
            ``(N, out_channels, scale*H, scale*W)``, unclamped.
        """
        x = torch.tanh(self.conv1(x))
        x = torch.tanh(self.conv2(x))
        return self.shuffle(self.conv3(x))
