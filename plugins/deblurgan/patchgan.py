"""The PatchGAN discriminator of pix2pix (Isola et al. 2017), DeblurGAN's critic.

A fully convolutional stack of 4x4 convolutions with LeakyReLU(0.2): a stride-2 first layer without
normalisation, ``num_layers - 1`` more stride-2 layers that double the channels, one stride-1 layer
(channels capped at 8x the first layer's) and a stride-1 convolution down to a single channel. Each
output value scores one input patch; with ``num_layers=3`` the patches are 70x70 pixels (the "70x70
PatchGAN"), and a 256x256 input gives a 30x30 score map (pix2pix's padding of 1; DeblurGAN's code pads
by 2, which changes only the map size).

DeblurGAN trains it as a WGAN-GP critic. The gradient penalty is computed per sample, so the critic
must not mix samples: use ``norm="instance"`` (DeblurGAN's choice) or ``"none"``, not batch norm.
"""

from __future__ import annotations

import torch
from torch import nn

NORMS = ("instance", "batch", "none")


def _norm_layer(norm: str, channels: int) -> nn.Module:
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    return nn.Identity()


class PatchGANDiscriminator(nn.Module):
    """pix2pix's N-layer PatchGAN: one score per receptive-field patch.

    Output is a ``(N, 1, H', W')`` map of logits (or probabilities with ``use_sigmoid``). Inputs need
    at least 2**num_layers * 4 pixels a side or so for the map to be non-empty.

    Initialisation follows pix2pix: convolution weights N(0, 0.02) with zero biases, batch-norm scales
    N(1, 0.02).

    Args:
        in_channels: channels of the judged image.
        num_features: channels of the first layer (64).
        num_layers: number of stride-2 layers (3 gives the 70x70 PatchGAN).
        norm: ``"instance"`` (DeblurGAN), ``"batch"`` (pix2pix) or ``"none"``. With WGAN-GP use
            instance or none.
        use_sigmoid: end with a sigmoid (for losses that expect probabilities); off for WGAN-GP,
            LSGAN and BCE-with-logits.

    Raises:
        ValueError: ``norm`` is unknown, or a size is not positive.

    Example:
        >>> import torch
        >>> disc = PatchGANDiscriminator(num_features=8)
        >>> disc(torch.rand(2, 3, 256, 256)).shape
        torch.Size([2, 1, 30, 30])
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        num_features: int = 64,
        num_layers: int = 3,
        norm: str = "instance",
        use_sigmoid: bool = False,
    ) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}; got {norm!r}")
        for arg, value in (("in_channels", in_channels), ("num_features", num_features), ("num_layers", num_layers)):
            if value < 1:
                raise ValueError(f"{arg} must be positive; got {value}")
        # Batch norm has its own shift; convolutions followed by it need no bias.
        bias = norm != "batch"
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, num_features, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        channels = num_features
        for n in range(1, num_layers + 1):
            # The last of these layers keeps the resolution (stride 1), as in pix2pix.
            stride = 2 if n < num_layers else 1
            out = num_features * min(2**n, 8)
            layers += [
                nn.Conv2d(channels, out, 4, stride=stride, padding=1, bias=bias),
                _norm_layer(norm, out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            channels = out
        layers.append(nn.Conv2d(channels, 1, 4, stride=1, padding=1))
        if use_sigmoid:
            layers.append(nn.Sigmoid())
        self.body = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """pix2pix initialisation: conv weights N(0, 0.02), zero biases, batch-norm scales N(1, 0.02)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Score a batch ``(N, C, H, W)``; returns the ``(N, 1, H', W')`` patch map."""
        return self.body(x)
