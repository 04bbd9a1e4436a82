"""The SRGAN discriminator (Ledig et al. 2017, Fig. 4, lower half).

Eight 3x3 convolution blocks with LeakyReLU(0.2); BatchNorm on every block but the first; stride 2
on every second block; channels doubling every two blocks (64, 64, 128, 128, 256, 256, 512, 512);
then dense 1024, LeakyReLU(0.2), dense 1. The sigmoid is left to the loss, so the network returns
logits.

Departure from the paper: the paper flattens the 6x6 map of its fixed 96x96 crops into the first
dense layer. Here an adaptive average pooling to ``pool_size`` x ``pool_size`` (6 by default) comes
first, so any crop size works; for 96x96 crops the pooling is the identity and the network is
exactly the paper's.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvBlock(nn.Module):
    """conv3 (stride 1 or 2), optional BatchNorm, LeakyReLU(0.2).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        stride: 1 or 2.
        batch_norm: add BatchNorm after the convolution.
    """

    def __init__(self, *, in_channels: int, out_channels: int, stride: int, batch_norm: bool) -> None:
        super().__init__()
        # A bias in front of BatchNorm is redundant.
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=not batch_norm)
        self.bn = nn.BatchNorm2d(out_channels) if batch_norm else None
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.act(x)


class SRGANDiscriminator(nn.Module):
    """The SRGAN discriminator, returning one real/fake logit per image.

    Minimum crop: any size runs, but the last feature map has side ``ceil(side / 2**(num_blocks // 2))``
    and its BatchNorm needs more than one value per channel in training, so use crops of at least
    ``2 ** (num_blocks // 2)`` pixels (16 with the defaults) when the batch holds one image. The paper
    trains on 96x96 crops. Weights use PyTorch's default initialisation (the paper names none).

    Args:
        in_channels: channels of the images judged.
        num_features: channels of the first block (64); they double every two blocks.
        num_blocks: number of convolution blocks (8); blocks 2, 4, 6, ... have stride 2.
        dense_features: width of the hidden dense layer (1024).
        pool_size: side of the adaptive average pooling before the dense layers (6, the map size of a
            96x96 crop after four stride-2 blocks).

    Raises:
        ValueError: a size argument is not positive.

    Example:
        >>> import torch
        >>> disc = SRGANDiscriminator(num_features=8, dense_features=32)
        >>> disc(torch.rand(2, 3, 96, 96)).shape
        torch.Size([2, 1])
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        num_features: int = 64,
        num_blocks: int = 8,
        dense_features: int = 1024,
        pool_size: int = 6,
    ) -> None:
        super().__init__()
        for name, value in (
            ("in_channels", in_channels),
            ("num_features", num_features),
            ("num_blocks", num_blocks),
            ("dense_features", dense_features),
            ("pool_size", pool_size),
        ):
            if value < 1:
                raise ValueError(f"SRGANDiscriminator: {name} must be positive, got {value}")
        blocks = []
        channels = in_channels
        for index in range(num_blocks):
            out_channels = num_features * 2 ** (index // 2)
            blocks.append(
                ConvBlock(
                    in_channels=channels,
                    out_channels=out_channels,
                    stride=2 if index % 2 == 1 else 1,
                    batch_norm=index > 0,
                )
            )
            channels = out_channels
        self.body = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        self.linear1 = nn.Linear(channels * pool_size * pool_size, dense_features)
        self.act = nn.LeakyReLU(0.2, inplace=True)
        self.linear2 = nn.Linear(dense_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Judge a batch.

        Args:
            x: ``(N, in_channels, H, W)`` images.

        Returns:
            ``(N, 1)`` logits (positive means "real").
        """
        features = torch.flatten(self.pool(self.body(x)), 1)
        return self.linear2(self.act(self.linear1(features)))
