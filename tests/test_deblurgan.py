"""DeblurGAN networks: the ResNet generator with its global skip and the PatchGAN discriminator."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import restorekit_plugins.deblurgan as deblurgan_plugin
from restorekit.plugins import Plugins
from restorekit_plugins.deblurgan.generator import ResNetGenerator
from restorekit_plugins.deblurgan.patchgan import PatchGANDiscriminator


def tiny_generator(**kwargs) -> ResNetGenerator:
    args = {"num_features": 8, "num_blocks": 2}
    args.update(kwargs)
    return ResNetGenerator(**args)


# --- generator ------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(37, 53), (32, 32), (6, 10), (41, 40)])
def test_generator_keeps_any_size_and_range(size):
    torch.manual_seed(0)
    net = tiny_generator().eval()
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        y = net(x)
    assert y.shape == x.shape
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert net.scale == 1


def test_generator_default_parameter_count():
    # pix2pix's resnet_9blocks with instance norm, as DeblurGAN uses it.
    net = ResNetGenerator()
    assert sum(p.numel() for p in net.parameters()) == 11_378_179
    assert sum(isinstance(m, nn.Dropout) for m in net.modules()) == 9


def test_global_skip_with_zero_residual_returns_the_input():
    net = tiny_generator().eval()
    tail = net.tail[1]
    nn.init.zeros_(tail.weight)
    nn.init.zeros_(tail.bias)
    x = torch.rand(1, 3, 37, 53)
    with torch.no_grad():
        torch.testing.assert_close(net(x), x, atol=1e-6, rtol=0)


def test_global_skip_adds_half_the_residual_in_unit_range():
    # The paper adds the tanh residual in [-1, 1]; in [0, 1] that is residual / 2, then clamped.
    net = tiny_generator().eval()
    tail = net.tail[1]
    nn.init.zeros_(tail.weight)
    nn.init.constant_(tail.bias, 0.5)  # residual tanh(0.5) everywhere
    x = torch.full((1, 3, 16, 16), 0.2)
    with torch.no_grad():
        y = net(x)
    torch.testing.assert_close(y, torch.full_like(x, 0.2 + float(torch.tanh(torch.tensor(0.5))) / 2))
    with torch.no_grad():
        assert float(net(torch.ones(1, 3, 16, 16)).max()) == 1.0  # clamped


def test_without_global_skip_output_is_rescaled_tanh():
    net = tiny_generator(global_skip=False).eval()
    nn.init.zeros_(net.tail[1].weight)
    nn.init.zeros_(net.tail[1].bias)
    with torch.no_grad():
        y = net(torch.rand(1, 3, 20, 20))
    torch.testing.assert_close(y, torch.full_like(y, 0.5))


@pytest.mark.parametrize(
    ("norm", "layer", "conv_bias"),
    [("instance", nn.InstanceNorm2d, True), ("batch", nn.BatchNorm2d, False), ("none", None, True)],
)
def test_norm_options(norm, layer, conv_bias):
    net = tiny_generator(norm=norm)
    norms = [m for m in net.modules() if isinstance(m, (nn.InstanceNorm2d, nn.BatchNorm2d))]
    if layer is None:
        assert norms == []
    else:
        assert norms and all(isinstance(m, layer) for m in norms)
    head_conv = net.head[1]
    assert (head_conv.bias is not None) == conv_bias
    out = net(torch.rand(2, 3, 24, 24))
    out.mean().backward()
    assert head_conv.weight.grad is not None and float(head_conv.weight.grad.abs().sum()) > 0


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="norm"):
        ResNetGenerator(norm="layer")
    with pytest.raises(ValueError, match="out_channels"):
        ResNetGenerator(out_channels=1)
    with pytest.raises(ValueError, match="dropout"):
        ResNetGenerator(dropout=1.5)


def test_dropout_only_in_training():
    torch.manual_seed(0)
    net = tiny_generator(norm="none")
    x = torch.rand(1, 3, 24, 24)
    net.train()
    assert not torch.equal(net(x), net(x))
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), net(x))
    plain = tiny_generator(norm="none", use_dropout=False).train()
    assert not any(isinstance(m, nn.Dropout) for m in plain.modules())
    assert torch.equal(plain(x), plain(x))


# --- PatchGAN ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("num_layers", "field"), [(1, 16), (2, 34), (3, 70)])
def test_patchgan_receptive_field(num_layers, field):
    # Instance norm would couple every pixel through its statistics, so measure without it.
    torch.manual_seed(0)
    disc = PatchGANDiscriminator(num_features=4, num_layers=num_layers, norm="none").double()
    x = torch.rand(1, 3, 160, 160, dtype=torch.float64, requires_grad=True)
    out = disc(x)
    h, w = out.shape[-2:]
    out[0, 0, h // 2, w // 2].backward()
    touched = x.grad.abs().sum(dim=(0, 1)) > 0
    rows = touched.any(dim=1).nonzero().flatten()
    cols = touched.any(dim=0).nonzero().flatten()
    assert int(rows.max() - rows.min() + 1) == field
    assert int(cols.max() - cols.min() + 1) == field
    assert int(touched.sum()) == field * field


def test_patchgan_output_map_for_256_inputs():
    disc = PatchGANDiscriminator(num_features=8)
    out = disc(torch.rand(2, 3, 256, 256))
    assert out.shape == (2, 1, 30, 30)
    assert [m.stride for m in disc.modules() if isinstance(m, nn.Conv2d)] == [(2, 2)] * 3 + [(1, 1)] * 2
    # pix2pix: no normalisation after the first convolution, channels 64-128-256-512 at full width.
    assert not isinstance(disc.body[1], (nn.InstanceNorm2d, nn.BatchNorm2d))
    full = PatchGANDiscriminator()
    assert [m.out_channels for m in full.modules() if isinstance(m, nn.Conv2d)] == [64, 128, 256, 512, 1]


def test_patchgan_options():
    with torch.no_grad():
        probs = PatchGANDiscriminator(num_features=4, use_sigmoid=True)(torch.randn(1, 3, 64, 64) * 10)
    assert float(probs.min()) >= 0 and float(probs.max()) <= 1
    assert any(isinstance(m, nn.BatchNorm2d) for m in PatchGANDiscriminator(norm="batch").modules())
    with pytest.raises(ValueError, match="norm"):
        PatchGANDiscriminator(norm="spectral")


def test_patchgan_instance_norm_keeps_samples_independent():
    # WGAN-GP penalises per-sample gradients: one sample's score must not depend on the others.
    torch.manual_seed(0)
    disc = PatchGANDiscriminator(num_features=4)
    a, b = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    torch.testing.assert_close(disc(torch.cat([a, b]))[:1], disc(a))


# --- plugin registration --------------------------------------------------------------------------


def test_plugin_registers_lazily_and_builds():
    plugins = Plugins()
    plugins.add_plugin(deblurgan_plugin, "deblurgan")
    assert plugins.info["deblurgan"].state == "loaded"
    gen = plugins.registry("generators").get("deblurgan_resnet")
    assert isinstance(gen.target, str)  # nothing imported to list it
    assert gen.info["task"] == "deblurring"
    problems = gen.check_args({"num_blocks": 2, "num_featurs": 8})
    assert problems == [("num_featurs", "unknown; did you mean num_features?")]
    net = plugins.registry("generators").build("deblurgan_resnet", num_features=8, num_blocks=1)
    assert isinstance(net, ResNetGenerator)
    disc = plugins.registry("discriminators").build("patchgan", num_features=8)
    assert isinstance(disc, PatchGANDiscriminator)
