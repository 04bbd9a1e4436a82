"""Super-resolution networks of the built-in plugins: SRGAN, ESRGAN / Real-ESRGAN and RDN.

Tiny configurations on CPU, except parameter counts of the paper configurations (built, never run).
"""

from __future__ import annotations

import pytest
import torch

from restorekit_plugins.esrgan.discriminators import UNetDiscriminatorSN, VGGStyleDiscriminator
from restorekit_plugins.esrgan.rrdbnet import RRDBNet
from restorekit_plugins.rdn.rdn import RDN
from restorekit_plugins.srgan.discriminator import SRGANDiscriminator
from restorekit_plugins.srgan.srresnet import SRResNet

TINY_SRRESNET = {"num_features": 8, "num_blocks": 2}
TINY_RRDBNET = {"num_features": 8, "num_blocks": 1, "growth_channels": 4}
TINY_RDN = {"G0": 8, "D": 2, "C": 3, "G": 4}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def conv_params(k: int, cin: int, cout: int, bias: bool = True) -> int:
    return k * k * cin * cout + (cout if bias else 0)


# --- output shapes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "tiny", "scale"),
    [(SRResNet, TINY_SRRESNET, s) for s in (2, 4, 8)]
    + [(RRDBNet, TINY_RRDBNET, s) for s in (1, 2, 4, 8)]
    + [(RDN, TINY_RDN, s) for s in (2, 3, 4)],
)
@pytest.mark.parametrize("size", [(7, 9), (8, 8)])
def test_generator_output_shape(cls, tiny, scale, size):
    net = cls(scale=scale, **tiny)
    assert net.scale == scale and isinstance(net.scale, int)
    with torch.no_grad():
        out = net(torch.rand(2, 3, *size))
    assert out.shape == (2, 3, size[0] * scale, size[1] * scale)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("cls", "tiny", "scale"),
    [(SRResNet, TINY_SRRESNET, 4), (RRDBNet, TINY_RRDBNET, 2), (RDN, TINY_RDN, 3)],
)
def test_generator_grayscale_and_channel_change(cls, tiny, scale):
    gray = cls(in_channels=1, out_channels=1, scale=scale, **tiny)
    with torch.no_grad():
        assert gray(torch.rand(1, 1, 5, 6)).shape == (1, 1, 5 * scale, 6 * scale)
    colourise = cls(in_channels=1, out_channels=3, scale=scale, **tiny)
    with torch.no_grad():
        assert colourise(torch.rand(1, 1, 5, 6)).shape == (1, 3, 5 * scale, 6 * scale)


@pytest.mark.parametrize("size", [(1, 1), (3, 2), (2, 5)])
def test_rrdbnet_unshuffle_handles_inputs_smaller_than_the_factor(size):
    # x1 folds 4x4 pixels into channels; tiny inputs cannot be reflect-padded and fall back to replicate.
    net = RRDBNet(scale=1, **TINY_RRDBNET)
    with torch.no_grad():
        assert net(torch.rand(1, 3, *size)).shape == (1, 3, *size)


@pytest.mark.parametrize(
    ("cls", "bad_scale"),
    [(SRResNet, 3), (SRResNet, 1), (RRDBNet, 3), (RRDBNet, 16), (RDN, 8), (RDN, 1)],
)
def test_generator_rejects_unsupported_scale(cls, bad_scale):
    with pytest.raises(ValueError, match=r"scale must be one of .*got " + str(bad_scale)):
        cls(scale=bad_scale)


def test_constructors_are_keyword_only():
    with pytest.raises(TypeError):
        SRResNet(3, 3)  # type: ignore[misc]
    with pytest.raises(TypeError):
        RDN(3)  # type: ignore[misc]


# --- parameter counts of the paper configurations ----------------------------------------------------


def test_srresnet_paper_parameter_count():
    nf, blocks, cin, cout, stages = 64, 16, 3, 3, 2
    prelu = 1  # one shared slope per PReLU
    bn = 2 * nf
    expected = (
        conv_params(9, cin, nf) + prelu
        + blocks * (2 * conv_params(3, nf, nf) + 2 * bn + prelu)
        + conv_params(3, nf, nf) + bn
        + stages * (conv_params(3, nf, 4 * nf) + prelu)
        + conv_params(9, nf, cout)
    )
    assert expected == 1_549_462
    assert count_parameters(SRResNet()) == expected


def rrdbnet_closed_form(*, cin: int, cout: int, nf: int, nb: int, gc: int, unshuffle: int, ups: int) -> int:
    rdb = sum(conv_params(3, nf + i * gc, gc) for i in range(4)) + conv_params(3, nf + 4 * gc, nf)
    return (
        conv_params(3, cin * unshuffle**2, nf)
        + nb * 3 * rdb
        + (1 + ups + 1) * conv_params(3, nf, nf)  # conv_body, conv_up*, conv_hr
        + conv_params(3, nf, cout)
    )


def test_rrdbnet_paper_parameter_count():
    expected = rrdbnet_closed_form(cin=3, cout=3, nf=64, nb=23, gc=32, unshuffle=1, ups=2)
    assert expected == 16_697_987  # the published ESRGAN x4 count
    assert count_parameters(RRDBNet()) == 16_697_987


@pytest.mark.parametrize(("scale", "unshuffle", "ups"), [(1, 4, 2), (2, 2, 2), (8, 1, 3)])
def test_rrdbnet_parameter_count_other_scales(scale, unshuffle, ups):
    net = RRDBNet(scale=scale, **TINY_RRDBNET)
    expected = rrdbnet_closed_form(cin=3, cout=3, nf=8, nb=1, gc=4, unshuffle=unshuffle, ups=ups)
    assert count_parameters(net) == expected


def test_rdn_paper_parameter_count():
    G0, D, C, G, cin, cout = 64, 16, 8, 64, 3, 3  # noqa: N806 - the paper's names
    rdb = sum(conv_params(3, G0 + c * G, G) for c in range(C)) + conv_params(1, G0 + C * G, G0)
    expected = (
        conv_params(3, cin, G0) + conv_params(3, G0, G0)
        + D * rdb
        + conv_params(1, D * G0, G0) + conv_params(3, G0, G0)
        + conv_params(3, G0, 4 * G) + conv_params(3, G, 4 * G)
        + conv_params(3, G, cout)
    )
    count = count_parameters(RDN())
    assert count == expected
    assert 22_000_000 <= count <= 22_500_000  # published: ~22M, EDSR-PyTorch reports 22.27M at x4


# --- structure and initialisation ---------------------------------------------------------------------


def test_rrdbnet_uses_basicsr_parameter_names():
    keys = set(RRDBNet(num_features=8, num_blocks=2, growth_channels=4).state_dict())
    names = ("conv_first", "body.0.rdb1.conv1", "body.1.rdb3.conv5", "conv_body", "conv_up1", "conv_up2", "conv_hr")
    for name in (*names, "conv_last"):
        assert f"{name}.weight" in keys and f"{name}.bias" in keys
    assert "conv_up3.weight" not in keys
    assert "conv_up3.weight" in RRDBNet(scale=8, **TINY_RRDBNET).state_dict()


def test_rrdbnet_dense_block_init_is_scaled_kaiming():
    net = RRDBNet(num_features=16, num_blocks=1, growth_channels=16)
    conv = net.body[0].rdb1.conv5  # fan-in 80 * 9
    expected_std = 0.1 * (2.0 / (80 * 9)) ** 0.5
    assert conv.weight.std().item() == pytest.approx(expected_std, rel=0.1)
    assert torch.count_nonzero(conv.bias) == 0
    # conv_first keeps PyTorch's default (uniform, std = 1/sqrt(3 * fan_in)), far larger than 0.1 * He
    assert net.conv_first.weight.std().item() > 3 * 0.1 * (2.0 / (3 * 9)) ** 0.5


def test_rdn_global_residual_comes_from_first_shallow_conv():
    net = RDN(scale=2, **TINY_RDN).eval()
    x = torch.rand(1, 3, 6, 6)
    with torch.no_grad():
        for p in net.gff.parameters():
            p.zero_()
        out = net(x)
        expected = net.conv_last(net.upsample(net.sfe1(x)))
    torch.testing.assert_close(out, expected)


# --- gradients ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "shape"),
    [
        pytest.param(lambda: SRResNet(scale=2, **TINY_SRRESNET), (2, 3, 6, 7), id="srresnet"),
        pytest.param(lambda: RRDBNet(scale=1, **TINY_RRDBNET), (2, 3, 7, 9), id="rrdbnet-x1"),
        pytest.param(lambda: RRDBNet(scale=8, **TINY_RRDBNET), (2, 3, 3, 4), id="rrdbnet-x8"),
        pytest.param(lambda: RDN(scale=4, **TINY_RDN), (2, 3, 5, 6), id="rdn"),
        pytest.param(lambda: SRGANDiscriminator(num_features=4, dense_features=8), (2, 3, 24, 24), id="srgan-disc"),
        pytest.param(lambda: VGGStyleDiscriminator(num_features=4), (2, 3, 128, 128), id="vgg-disc"),
        pytest.param(lambda: UNetDiscriminatorSN(num_features=4), (2, 3, 16, 24), id="unet-disc"),
    ],
)
def test_backward_gives_finite_gradient_for_every_parameter(make, shape):
    net = make().train()
    out = net(torch.rand(*shape))
    out.square().mean().backward()
    for name, param in net.named_parameters():
        assert param.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{name} has a non-finite gradient"
        assert param.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


# --- discriminators ------------------------------------------------------------------------------------


@pytest.mark.parametrize("crop", [24, 96, 128])
def test_srgan_discriminator_accepts_crop_sizes(crop):
    disc = SRGANDiscriminator(num_features=4, dense_features=16)
    out = disc(torch.rand(2, 3, crop, crop))
    assert out.shape == (2, 1)


def test_srgan_discriminator_layout_matches_paper():
    disc = SRGANDiscriminator(num_features=4, dense_features=16)
    channels = [block.conv.out_channels for block in disc.body]
    strides = [block.conv.stride[0] for block in disc.body]
    assert channels == [4, 4, 8, 8, 16, 16, 32, 32]
    assert strides == [1, 2, 1, 2, 1, 2, 1, 2]
    assert [block.bn is not None for block in disc.body] == [False] + [True] * 7
    # a 96x96 crop reaches the dense layer as the paper's 6x6 map: pooling is the identity there
    x = torch.rand(2, 3, 96, 96)
    assert disc.body(x).shape == (2, 32, 6, 6)
    assert disc.linear1.in_features == 32 * 6 * 6


def test_vgg_discriminator_128_and_256():
    assert VGGStyleDiscriminator(num_features=4)(torch.rand(2, 3, 128, 128)).shape == (2, 1)
    big = VGGStyleDiscriminator(num_features=4, input_size=256)
    assert big(torch.rand(2, 3, 256, 256)).shape == (2, 1)
    assert "conv5_1.weight" in big.state_dict()
    keys = VGGStyleDiscriminator(num_features=4).state_dict()
    assert "conv5_1.weight" not in keys and "bn4_1.weight" in keys and "conv0_0.bias" in keys


def test_vgg_discriminator_rejects_other_sizes():
    disc = VGGStyleDiscriminator(num_features=4)
    with pytest.raises(ValueError, match=r"input must be 128x128.*got 96x96"):
        disc(torch.rand(2, 3, 96, 96))
    with pytest.raises(ValueError, match="input_size must be 128 or 256"):
        VGGStyleDiscriminator(input_size=96)


def test_unet_discriminator_returns_a_logit_per_pixel():
    disc = UNetDiscriminatorSN(num_features=4)
    assert disc(torch.rand(2, 3, 64, 64)).shape == (2, 1, 64, 64)
    assert disc(torch.rand(1, 3, 16, 40)).shape == (1, 1, 16, 40)
    gray = UNetDiscriminatorSN(in_channels=1, num_features=4, skip_connection=False)
    assert gray(torch.rand(2, 1, 64, 64)).shape == (2, 1, 64, 64)


def test_unet_discriminator_rejects_sides_not_multiple_of_8():
    disc = UNetDiscriminatorSN(num_features=4)
    with pytest.raises(ValueError, match=r"multiples of 8, got 60x64"):
        disc(torch.rand(1, 3, 60, 64))


def test_unet_discriminator_is_spectrally_normalised():
    disc = UNetDiscriminatorSN(num_features=4).train()
    x = torch.rand(1, 3, 16, 16)
    for _ in range(30):  # power iteration converges over forward passes
        disc(x)
    disc.eval()
    for name in ("conv1", "conv4", "conv8"):
        weight = getattr(disc, name).weight.detach()
        sigma = torch.linalg.matrix_norm(weight.flatten(1), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=1e-3)
    assert not torch.nn.utils.parametrize.is_parametrized(disc.conv0)
    assert not torch.nn.utils.parametrize.is_parametrized(disc.conv9)


# --- RRDBNet against spandrel's ESRGAN ------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1, 2, 4, 8])
@pytest.mark.parametrize("size", [(8, 12), (7, 9)])
def test_rrdbnet_matches_spandrel(scale, size):
    spandrel = pytest.importorskip("spandrel")
    # spandrel's ESRGAN fixes the growth channels at 32, so this tiny net keeps that value.
    ours = RRDBNet(num_features=16, num_blocks=2, growth_channels=32, scale=scale).eval()
    with torch.no_grad():
        for p in ours.parameters():  # randomise biases too, so that a mis-mapped bias shows
            p.normal_(0.0, 0.05)
    descriptor = spandrel.ModelLoader().load_from_state_dict(ours.state_dict())
    assert descriptor.architecture.id == "ESRGAN"
    assert descriptor.scale == scale
    theirs = descriptor.model.eval()
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        expected = theirs(x)
        out = ours(x)
    assert out.shape == expected.shape == (2, 3, size[0] * scale, size[1] * scale)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
