"""The ESRGAN discriminators: the VGG-style network for 128x128 crops (Wang et al. 2018) and the
U-Net discriminator with spectral normalisation of Real-ESRGAN (Wang et al. 2021).

Parameter names follow BasicSR (``conv0_0``, ``bn0_1`` ... ``linear2``; ``conv0`` ... ``conv9``).
The U-Net uses :func:`torch.nn.utils.parametrizations.spectral_norm`, whose keys read
``convN.parametrizations.weight.original`` / ``.0._u`` / ``.0._v`` where BasicSR checkpoints (older
``torch.nn.utils.spectral_norm``) have ``convN.weight_orig`` / ``weight_u`` / ``weight_v``; the values
mean the same, so converting is a rename. The parametrization is preferred because, unlike the older
hook, it survives ``copy.deepcopy`` after a backward pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

VGG_INPUT_SIZES = (128, 256)


class VGGStyleDiscriminator(nn.Module):
    """ESRGAN's VGG-style discriminator for fixed-size crops.

    Stage 0 is ``conv0_0`` (3x3, stride 1) and ``conv0_1`` (4x4, stride 2) + BN; stages 1 to 4 are
    pairs (3x3 stride 1, 4x4 stride 2), each followed by BN, with channels 64, 128, 256, 512, 512 (for
    ``num_features=64``); LeakyReLU(0.2) throughout; then dense ``512*4*4 -> 100 -> 1``. A 256x256
    input adds a fifth 512-channel stage. Weights use PyTorch's default initialisation, as BasicSR.

    Args:
        in_channels: channels of the images judged.
        num_features: channels of the first stage.
        input_size: crop side the network is built for, 128 or 256.

    Raises:
        ValueError: ``input_size`` is not 128 or 256.

    Example:
        >>> import torch
        >>> disc = VGGStyleDiscriminator(num_features=8)
        >>> disc(torch.rand(2, 3, 128, 128)).shape
        torch.Size([2, 1])
    """

    def __init__(self, *, in_channels: int = 3, num_features: int = 64, input_size: int = 128) -> None:
        super().__init__()
        if input_size not in VGG_INPUT_SIZES:
            raise ValueError(f"VGGStyleDiscriminator: input_size must be 128 or 256, got {input_size!r}")
        if in_channels < 1 or num_features < 1:
            raise ValueError(
                f"VGGStyleDiscriminator: in_channels and num_features must be positive, "
                f"got {in_channels} and {num_features}"
            )
        self.input_size = input_size
        nf = num_features
        stage_channels = [nf, nf * 2, nf * 4, nf * 8, nf * 8]
        if input_size == 256:
            stage_channels.append(nf * 8)
        self.num_stages = len(stage_channels)

        self.conv0_0 = nn.Conv2d(in_channels, nf, 3, 1, 1, bias=True)
        self.conv0_1 = nn.Conv2d(nf, nf, 4, 2, 1, bias=False)
        self.bn0_1 = nn.BatchNorm2d(nf)
        for stage in range(1, self.num_stages):
            channels_in, channels = stage_channels[stage - 1], stage_channels[stage]
            setattr(self, f"conv{stage}_0", nn.Conv2d(channels_in, channels, 3, 1, 1, bias=False))
            setattr(self, f"bn{stage}_0", nn.BatchNorm2d(channels))
            setattr(self, f"conv{stage}_1", nn.Conv2d(channels, channels, 4, 2, 1, bias=False))
            setattr(self, f"bn{stage}_1", nn.BatchNorm2d(channels))
        final_side = input_size // 2**self.num_stages  # 4 for both sizes
        self.linear1 = nn.Linear(stage_channels[-1] * final_side * final_side, 100)
        self.linear2 = nn.Linear(100, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Judge a batch.

        Args:
            x: ``(N, in_channels, input_size, input_size)`` images.

        Returns:
            ``(N, 1)`` logits.

        Raises:
            ValueError: the crop is not ``input_size`` x ``input_size``.
        """
        if tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            raise ValueError(
                f"VGGStyleDiscriminator: input must be {self.input_size}x{self.input_size} "
                f"(input_size={self.input_size}), got {x.shape[-2]}x{x.shape[-1]}; use crops of that size "
                "or a size-agnostic discriminator (srgan_discriminator, unet_discriminator)"
            )
        feat = self.lrelu(self.conv0_0(x))
        feat = self.lrelu(self.bn0_1(self.conv0_1(feat)))
        for stage in range(1, self.num_stages):
            feat = self.lrelu(getattr(self, f"bn{stage}_0")(getattr(self, f"conv{stage}_0")(feat)))
            feat = self.lrelu(getattr(self, f"bn{stage}_1")(getattr(self, f"conv{stage}_1")(feat)))
        feat = torch.flatten(feat, 1)
        return self.linear2(self.lrelu(self.linear1(feat)))


class UNetDiscriminatorSN(nn.Module):
    """Real-ESRGAN's U-Net discriminator with spectral normalisation: one logit per pixel.

    Encoder: ``conv0`` (3x3) then three 4x4 stride-2 convolutions doubling the channels; decoder:
    three stages of bilinear x2 upsampling + 3x3 convolution halving the channels, each added to the
    encoder feature of the same resolution when ``skip_connection`` is on; then two 3x3 convolutions
    and a 3x3 convolution to one channel. Every convolution except the first and last is spectrally
    normalised and bias-free; LeakyReLU(0.2) throughout. Weights use PyTorch's default initialisation,
    as Real-ESRGAN.

    Args:
        in_channels: channels of the images judged.
        num_features: channels of the first level (64).
        skip_connection: add the encoder features into the decoder (True in Real-ESRGAN).

    Raises:
        ValueError: a size argument is not positive.

    Example:
        >>> import torch
        >>> disc = UNetDiscriminatorSN(num_features=8)
        >>> disc(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 1, 64, 64])
    """

    def __init__(self, *, in_channels: int = 3, num_features: int = 64, skip_connection: bool = True) -> None:
        super().__init__()
        if in_channels < 1 or num_features < 1:
            raise ValueError(
                f"UNetDiscriminatorSN: in_channels and num_features must be positive, "
                f"got {in_channels} and {num_features}"
            )
        self.skip_connection = skip_connection
        nf = num_features
        self.conv0 = nn.Conv2d(in_channels, nf, 3, 1, 1)
        # encoder
        self.conv1 = spectral_norm(nn.Conv2d(nf, nf * 2, 4, 2, 1, bias=False))
        self.conv2 = spectral_norm(nn.Conv2d(nf * 2, nf * 4, 4, 2, 1, bias=False))
        self.conv3 = spectral_norm(nn.Conv2d(nf * 4, nf * 8, 4, 2, 1, bias=False))
        # decoder
        self.conv4 = spectral_norm(nn.Conv2d(nf * 8, nf * 4, 3, 1, 1, bias=False))
        self.conv5 = spectral_norm(nn.Conv2d(nf * 4, nf * 2, 3, 1, 1, bias=False))
        self.conv6 = spectral_norm(nn.Conv2d(nf * 2, nf, 3, 1, 1, bias=False))
        # head
        self.conv7 = spectral_norm(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
        self.conv8 = spectral_norm(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(nf, 1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Judge every pixel of a batch.

        Args:
            x: ``(N, in_channels, H, W)`` images, H and W multiples of 8.

        Returns:
            ``(N, 1, H, W)`` logits.

        Raises:
            ValueError: H or W is not a multiple of 8 (three stride-2 levels must invert exactly).
        """
        height, width = x.shape[-2:]
        if height % 8 or width % 8:
            raise ValueError(
                f"UNetDiscriminatorSN: input height and width must be multiples of 8, got {height}x{width}"
            )

        def lrelu(t: torch.Tensor) -> torch.Tensor:
            return F.leaky_relu(t, 0.2)

        def up(t: torch.Tensor) -> torch.Tensor:
            return F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)

        x0 = lrelu(self.conv0(x))
        x1 = lrelu(self.conv1(x0))
        x2 = lrelu(self.conv2(x1))
        x3 = lrelu(self.conv3(x2))

        x4 = lrelu(self.conv4(up(x3)))
        if self.skip_connection:
            x4 = x4 + x2
        x5 = lrelu(self.conv5(up(x4)))
        if self.skip_connection:
            x5 = x5 + x1
        x6 = lrelu(self.conv6(up(x5)))
        if self.skip_connection:
            x6 = x6 + x0

        out = lrelu(self.conv7(x6))
        out = lrelu(self.conv8(out))
        return self.conv9(out)
