"""RDN, the Residual Dense Network (Zhang et al. 2018, "Residual Dense Network for Image
Super-Resolution", CVPR).

The paper's names are kept: ``G0`` feature channels, ``D`` residual dense blocks, ``C`` layers per
block, ``G`` growth rate. Layout: shallow feature extraction by two 3x3 convolutions (F_-1, F_0);
D residual dense blocks, each C densely connected conv3+ReLU layers, a 1x1 local feature fusion and
a local residual; global feature fusion (1x1 then 3x3) over the concatenated block outputs plus a
global residual from F_-1; sub-pixel upsampling; a final 3x3 convolution. The upsampler follows the
authors' PyTorch release (EDSR-PyTorch): conv to ``G * r * r`` channels and PixelShuffle(r) for x2
and x3, two such x2 stages for x4, then the final conv from G channels. Parameter names map to that
release by renaming (``SFENet1`` -> ``sfe1``, ``RDBs.d.convs.c.conv.0`` -> ``rdbs.d.convs.c``,
``RDBs.d.LFF`` -> ``rdbs.d.lff``, ``GFF`` -> ``gff``, ``UPNet.0/2`` -> ``upsample.0/2``, last
``UPNet`` conv -> ``conv_last``); that release works on [0, 255] pixels, this network on [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from restorekit.inference.fused import dense_block

SUPPORTED_SCALES = (2, 3, 4)


class ResidualDenseBlock(nn.Module):
    """C densely connected conv3+ReLU layers, 1x1 local feature fusion and a local residual.

    Args:
        G0: channels in and out.
        G: growth rate (channels each layer adds).
        C: number of conv layers.
    """

    def __init__(self, *, G0: int, G: int, C: int) -> None:  # noqa: N803 - the paper's names
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(G0 + c * G, G, 3, padding=1) for c in range(C))
        self.lff = nn.Conv2d(G0 + C * G, G0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Inside restorekit's CPU inference fast path: the same block without concatenations; else None.
        fused = dense_block(x, (*self.convs, self.lff), activation="relu", residual_scale=1.0)
        if fused is not None:
            return fused
        features = x
        for conv in self.convs:
            features = torch.cat((features, F.relu(conv(features))), 1)
        return x + self.lff(features)


class RDN(nn.Module):
    """The Residual Dense Network for super-resolution.

    Input is RGB (or ``in_channels`` planes) in [0, 1] of any size; the output is ``scale`` times
    larger and is not clamped. Weights use PyTorch's default initialisation, as the authors'
    PyTorch release. The paper's configuration (defaults, x4) has 22,271,107 parameters.

    Args:
        in_channels: channels of the low-resolution input.
        out_channels: channels of the output.
        G0: feature channels of the shallow features, the blocks and global fusion (64).
        D: number of residual dense blocks (16).
        C: conv layers per residual dense block (8).
        G: growth rate inside the blocks, also the width of the upsampler (64).
        scale: upscaling factor, 2, 3 or 4.

    Raises:
        ValueError: ``scale`` is not 2, 3 or 4, or a size is not positive.

    Example:
        >>> import torch
        >>> net = RDN(G0=16, D=2, C=3, G=8, scale=3)
        >>> net(torch.rand(1, 3, 7, 9)).shape
        torch.Size([1, 3, 21, 27])
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        out_channels: int = 3,
        G0: int = 64,  # noqa: N803 - the paper's names
        D: int = 16,  # noqa: N803
        C: int = 8,  # noqa: N803
        G: int = 64,  # noqa: N803
        scale: int = 4,
    ) -> None:
        super().__init__()
        if scale not in SUPPORTED_SCALES:
            raise ValueError(f"RDN: scale must be one of {SUPPORTED_SCALES}, got {scale!r}")
        for name, value in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("G0", G0),
            ("D", D),
            ("C", C),
            ("G", G),
        ):
            if value < 1:
                raise ValueError(f"RDN: {name} must be positive, got {value}")
        self.scale = int(scale)
        self.in_channels = in_channels
        self.out_channels = out_channels

        self.sfe1 = nn.Conv2d(in_channels, G0, 3, padding=1)
        self.sfe2 = nn.Conv2d(G0, G0, 3, padding=1)
        self.rdbs = nn.ModuleList(ResidualDenseBlock(G0=G0, G=G, C=C) for _ in range(D))
        self.gff = nn.Sequential(nn.Conv2d(D * G0, G0, 1), nn.Conv2d(G0, G0, 3, padding=1))
        if scale == 4:
            self.upsample = nn.Sequential(
                nn.Conv2d(G0, G * 4, 3, padding=1),
                nn.PixelShuffle(2),
                nn.Conv2d(G, G * 4, 3, padding=1),
                nn.PixelShuffle(2),
            )
        else:
            self.upsample = nn.Sequential(nn.Conv2d(G0, G * scale * scale, 3, padding=1), nn.PixelShuffle(scale))
        self.conv_last = nn.Conv2d(G, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Super-resolve a batch.

        Args:
            x: ``(N, in_channels, H, W)`` images in [0, 1].

        Returns:
            ``(N, out_channels, scale*H, scale*W)``, unclamped.
        """
        shallow = self.sfe1(x)
        feat = self.sfe2(shallow)
        block_outputs = []
        for block in self.rdbs:
            feat = block(feat)
            block_outputs.append(feat)
        feat = self.gff(torch.cat(block_outputs, 1)) + shallow
        return self.conv_last(self.upsample(feat))
