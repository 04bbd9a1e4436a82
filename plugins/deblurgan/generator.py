"""The DeblurGAN generator (Kupyn et al. 2018, "DeblurGAN: Blind Motion Deblurring Using Conditional
Adversarial Networks", Fig. 3), itself the ResNet generator of Johnson et al. 2016 as used by pix2pix.

Layout: a reflection-padded 7x7 head convolution, two stride-2 3x3 downsampling convolutions
(64 -> 128 -> 256 channels), ``num_blocks`` ResNet blocks at a quarter of the resolution
(reflection pad, conv3, norm, ReLU, dropout 0.5, reflection pad, conv3, norm, plus identity), two
stride-2 transposed convolutions back to full resolution, a reflection-padded 7x7 tail convolution and
a tanh. Every convolution but the tail is followed by the normalisation layer and a ReLU.

DeblurGAN's addition is the *global skip* ("ResOut"): the network predicts a residual that is added to
the blurred input, ``I_S = I_B + I_R``, clamped to the valid range. The paper works on images in
[-1, 1]; restorekit feeds [0, 1] images, so the input is mapped to [-1, 1], the tanh residual is added
there, the sum is clamped to [-1, 1] and mapped back. In [0, 1] terms this is
``clamp(input + residual / 2, 0, 1)``, exactly the paper's network on rescaled data.

The default configuration (64 features, 9 blocks, instance norm) has 11,378,179 parameters.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

NORMS = ("instance", "batch", "none")

# Two stride-2 stages: the spatial sides must be multiples of 4 for the decoder to land on the input size.
_MULTIPLE = 4


def _norm_layer(norm: str, channels: int) -> nn.Module:
    if norm == "instance":
        # Affine-free instance norm, as pix2pix and DeblurGAN use it; the convolutions then carry biases.
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    return nn.Identity()


def _check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}; got {norm!r}")


class ResNetBlock(nn.Module):
    """Reflection-padded conv3-norm-ReLU-(dropout)-conv3-norm with an identity shortcut.

    Args:
        num_features: channels in and out.
        norm: ``"instance"``, ``"batch"`` or ``"none"``.
        dropout: dropout probability between the two convolutions; 0 disables it.
    """

    def __init__(self, *, num_features: int, norm: str = "instance", dropout: float = 0.5) -> None:
        super().__init__()
        _check_norm(norm)
        # A batch-norm layer has its own shift, so the convolution before it needs no bias (pix2pix rule).
        bias = norm != "batch"
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(num_features, num_features, 3, bias=bias),
            _norm_layer(norm, num_features),
            nn.ReLU(inplace=True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [
            nn.ReflectionPad2d(1),
            nn.Conv2d(num_features, num_features, 3, bias=bias),
            _norm_layer(norm, num_features),
        ]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNetGenerator(nn.Module):
    """The DeblurGAN generator: a ResNet encoder-decoder with a global residual connection.

    Input and output are RGB (or ``in_channels`` planes) in [0, 1], of any size: sides that are not
    multiples of 4 are reflect-padded inside and the output is cropped back to the input size.

    Initialisation follows pix2pix/DeblurGAN: convolution weights from N(0, 0.02) with zero biases,
    batch-norm scales from N(1, 0.02).

    Args:
        in_channels: channels of the blurred input.
        out_channels: channels of the output; must equal ``in_channels`` when ``global_skip`` is on.
        num_features: channels after the head convolution (64); the trunk has four times as many.
        num_blocks: number of ResNet blocks (9 in DeblurGAN).
        norm: ``"instance"`` (DeblurGAN), ``"batch"`` or ``"none"``.
        dropout: dropout probability inside each ResNet block (0.5 in DeblurGAN).
        use_dropout: whether the ResNet blocks have dropout at all (DeblurGAN: yes).
        global_skip: add the predicted residual to the input (DeblurGAN's "ResOut"); without it the
            output is ``(tanh + 1) / 2``.

    Raises:
        ValueError: ``norm`` is unknown, a size is not positive, ``dropout`` is outside [0, 1), or
            ``global_skip`` is on with ``out_channels != in_channels``.

    Example:
        >>> import torch
        >>> net = ResNetGenerator(num_features=8, num_blocks=2)
        >>> net(torch.rand(1, 3, 37, 53)).shape
        torch.Size([1, 3, 37, 53])
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        out_channels: int = 3,
        num_features: int = 64,
        num_blocks: int = 9,
        norm: str = "instance",
        dropout: float = 0.5,
        use_dropout: bool = True,
        global_skip: bool = True,
    ) -> None:
        super().__init__()
        _check_norm(norm)
        sizes = {"in_channels": in_channels, "out_channels": out_channels, "num_features": num_features}
        for arg, value in sizes.items():
            if value < 1:
                raise ValueError(f"{arg} must be positive; got {value}")
        if num_blocks < 0:
            raise ValueError(f"num_blocks must be non-negative; got {num_blocks}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {dropout}")
        if global_skip and out_channels != in_channels:
            raise ValueError(
                f"global_skip adds the input to the output, so out_channels ({out_channels}) must equal "
                f"in_channels ({in_channels})"
            )
        self.scale = 1
        # Instance norm normalises by the statistics of whatever it is given: a tile's differ from the
        # whole image's, so tiles change the result slightly (allowed, with a warning; --tile 0 is exact).
        self.tiling = "tile_with_warning" if norm == "instance" else "tileable"
        self.global_skip = global_skip
        bias = norm != "batch"
        nf = num_features

        head = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, nf, 7, bias=bias),
            _norm_layer(norm, nf),
            nn.ReLU(inplace=True),
        ]
        down = []
        for mult in (1, 2):
            down += [
                nn.Conv2d(nf * mult, nf * mult * 2, 3, stride=2, padding=1, bias=bias),
                _norm_layer(norm, nf * mult * 2),
                nn.ReLU(inplace=True),
            ]
        blocks = [
            ResNetBlock(num_features=nf * 4, norm=norm, dropout=dropout if use_dropout else 0.0)
            for _ in range(num_blocks)
        ]
        up = []
        for mult in (4, 2):
            up += [
                nn.ConvTranspose2d(nf * mult, nf * mult // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                _norm_layer(norm, nf * mult // 2),
                nn.ReLU(inplace=True),
            ]
        tail = [nn.ReflectionPad2d(3), nn.Conv2d(nf, out_channels, 7), nn.Tanh()]
        self.head = nn.Sequential(*head)
        self.down = nn.Sequential(*down)
        self.blocks = nn.Sequential(*blocks)
        self.up = nn.Sequential(*up)
        self.tail = nn.Sequential(*tail)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """pix2pix initialisation: conv weights N(0, 0.02), zero biases, batch-norm scales N(1, 0.02)."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(module.weight, 0.0, 0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Deblur a batch ``(N, C, H, W)`` in [0, 1]; the output has the same size."""
        height, width = x.shape[-2:]
        pad_h, pad_w = -height % _MULTIPLE, -width % _MULTIPLE
        padded = x
        if pad_h or pad_w:
            # Reflection needs the pad to be smaller than the side; tiny inputs fall back to replication.
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"
            padded = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        signed = padded * 2 - 1  # the paper's [-1, 1] range
        residual = self.tail(self.up(self.blocks(self.down(self.head(signed)))))
        if self.global_skip:
            out = torch.clamp(signed + residual, -1.0, 1.0)
        else:
            out = residual
        out = (out + 1) / 2
        return out[..., :height, :width]
