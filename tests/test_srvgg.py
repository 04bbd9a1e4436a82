"""srvgg_compact (Real-ESRGAN's SRVGGNetCompact): the network, its descriptor, its converter, equality
with spandrel's implementation (which reads the official files), and training through `restore run`."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from restorekit.convert import ConvertError, convert_checkpoint
from restorekit.descriptor import describe
from restorekit.plugins import registry
from restorekit.weights import load_network, read_info
from restorekit_plugins.esrgan.convert import convert_esrgan_state_dict
from restorekit_plugins.esrgan.rrdbnet import RRDBNet
from restorekit_plugins.realesrgan.convert import convert_srvgg_state_dict
from restorekit_plugins.realesrgan.srvgg import SRVGGNetCompact


def _random(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights everywhere, PReLU slopes included (their init is a constant 0.25)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in net.parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.1)
    return net.eval()


def _save_official(net: torch.nn.Module, path) -> dict[str, torch.Tensor]:
    """Save as Real-ESRGAN does: the state dict under ``params``."""
    state = {k: v.clone() for k, v in net.state_dict().items()}
    torch.save({"params": state}, path)
    return state


# --- the network ------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
@pytest.mark.parametrize("act_type", ["prelu", "relu", "leakyrelu"])
def test_shapes_and_residual_skip(scale, act_type):
    net = SRVGGNetCompact(num_features=8, num_conv=2, scale=scale, act_type=act_type)
    x = torch.rand(2, 3, 5, 7)
    with torch.no_grad():
        # A zero last conv leaves only the global skip: the nearest-upsampled input, exactly.
        net.body[-1].weight.zero_()
        net.body[-1].bias.zero_()
        y = net(x)
    assert y.shape == (2, 3, 5 * scale, 7 * scale)
    assert torch.equal(y, F.interpolate(x, scale_factor=scale, mode="nearest"))


def test_official_key_layout():
    net = SRVGGNetCompact(num_features=64, num_conv=32, scale=4)  # realesr-general-x4v3
    state = net.state_dict()
    assert len(state) == 34 * 2 + 33  # 34 convs (weight, bias), 33 PReLUs (weight)
    assert state["body.0.weight"].shape == (64, 3, 3, 3)
    assert state["body.1.weight"].shape == (64,)
    assert state["body.66.weight"].shape == (48, 64, 3, 3)
    assert "body.67.weight" not in state
    relu = SRVGGNetCompact(num_features=8, num_conv=2, act_type="relu").state_dict()
    assert sorted(relu) == sorted(f"body.{i}.{p}" for i in (0, 2, 4, 6) for p in ("weight", "bias"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"act_type": "gelu"}, "act_type"),
        ({"out_channels": 1}, "must equal in_channels"),
        ({"scale": 0}, "scale"),
        ({"num_conv": -1}, "num_conv"),
        ({"num_features": 0}, "num_features"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SRVGGNetCompact(**kwargs)


def test_descriptor_is_tileable_with_receptive_field_margin():
    component = registry("generators").get("srvgg_compact")
    d = describe(component, {"num_features": 8, "num_conv": 5, "scale": 2, "in_channels": 1, "out_channels": 1})
    assert (d.plugin, d.task, d.scale, d.in_channels, d.out_channels) == ("realesrgan", "super_resolution", 2, 1, 1)
    assert (d.tiling, d.tile_margin) == ("tileable", 7)


def test_tile_margin_is_the_receptive_field():
    """A crop carrying tile_margin pixels of context gives exactly the whole-image output inside it;
    one pixel less does not."""
    net = _random(SRVGGNetCompact(num_features=4, num_conv=3, scale=2))
    x = torch.rand(1, 3, 24, 24)
    m, top, side = net.tile_margin, 8, 8
    with torch.no_grad():
        whole = net(x)[..., 2 * top : 2 * (top + side), 2 * top : 2 * (top + side)]
        crop = net(x[..., top - m : top + side + m, top - m : top + side + m])
        short = net(x[..., top - m + 1 : top + side + m - 1, top - m + 1 : top + side + m - 1])
    assert torch.allclose(crop[..., 2 * m : 2 * (m + side), 2 * m : 2 * (m + side)], whole, atol=1e-6)
    assert not torch.allclose(short[..., 2 * (m - 1) : 2 * (m - 1 + side), 2 * (m - 1) : 2 * (m - 1 + side)], whole)


# --- the converter ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_features": 8, "num_conv": 3, "scale": 4},
        {"num_features": 6, "num_conv": 0, "scale": 2, "act_type": "leakyrelu"},
        {"num_features": 4, "num_conv": 1, "scale": 1, "in_channels": 1, "out_channels": 1},
        {"num_features": 4, "num_conv": 2, "scale": 3},
    ],
)
def test_converter_infers_the_arguments(kwargs):
    name, args, state, layout = convert_srvgg_state_dict(SRVGGNetCompact(**kwargs).state_dict())
    expected = {"in_channels": 3, "out_channels": 3, "act_type": "prelu"} | kwargs
    assert (name, layout) == ("srvgg_compact", "realesrgan-compact")
    assert args == expected


def test_relu_is_read_as_leakyrelu():
    """Parameterless activations cannot be told apart; the documented reading is leakyrelu."""
    _, args, _, _ = convert_srvgg_state_dict(SRVGGNetCompact(num_features=4, num_conv=1, act_type="relu").state_dict())
    assert args["act_type"] == "leakyrelu"


def test_rrdbnet_and_srvgg_are_each_claimed_by_their_own_converter():
    rrdb = RRDBNet(num_features=8, num_blocks=2, growth_channels=4, scale=2).state_dict()
    srvgg = SRVGGNetCompact(num_features=8, num_conv=2).state_dict()
    assert convert_srvgg_state_dict(rrdb) is None
    assert convert_esrgan_state_dict(srvgg) is None
    assert convert_esrgan_state_dict(rrdb)[0] == "rrdbnet"


def _two_convs(kernel: int = 3, **extra: torch.Tensor) -> dict[str, torch.Tensor]:
    """First and last conv of a would-be SRVGGNetCompact with no hidden layer, plus *extra* keys."""
    state = {"body.0.weight": torch.zeros(8, 3, kernel, kernel), "body.0.bias": torch.zeros(8)}
    state |= {"body.2.weight": torch.zeros(12, 8, kernel, kernel), "body.2.bias": torch.zeros(12)}
    return state | extra


@pytest.mark.parametrize(
    "state",
    [
        {"body.0.weight": torch.zeros(8, 3, 3, 3), "body.0.bias": torch.zeros(8)},  # one conv only
        {f"body.{i}.weight": torch.zeros(8, 8, 3, 3) for i in range(4)},  # convs back to back
        _two_convs(**{"head.weight": torch.zeros(3)}),  # a key outside the body list
        _two_convs(kernel=5),
    ],
    ids=["one-conv", "no-activations-between", "extra-key", "5x5"],
)
def test_other_body_lists_are_not_claimed(state):
    assert convert_srvgg_state_dict(state) is None


def test_unsupported_variants_raise_naming_the_file():
    state = SRVGGNetCompact(num_features=8, num_conv=1, scale=2).state_dict()
    state["body.4.weight"] = torch.zeros(13, 8, 3, 3)
    state["body.4.bias"] = torch.zeros(13)
    with pytest.raises(ConvertError, match=r"^odd\.pth: .*13 channels"):
        convert_srvgg_state_dict(state, "odd.pth")
    state = SRVGGNetCompact(num_features=8, num_conv=1, scale=2).state_dict()
    state["body.1.weight"] = torch.zeros(1)
    state["body.3.weight"] = torch.zeros(1)
    with pytest.raises(ConvertError, match="slope"):
        convert_srvgg_state_dict(state, "shared.pth")


def test_arch_hint_for_another_network_stands_aside():
    state = SRVGGNetCompact(num_features=8, num_conv=1).state_dict()
    assert convert_srvgg_state_dict(state, "x.pth", {"arch": "rrdbnet"}) is None
    assert convert_srvgg_state_dict(state, "x.pth", {"arch": "srvgg_compact", "scale": 4})[0] == "srvgg_compact"


def test_convert_checkpoint_through_the_plugins(tmp_path):
    net = _random(SRVGGNetCompact(num_features=8, num_conv=2, scale=2))
    path = tmp_path / "compact.pth"
    _save_official(net, path)
    rebuilt, info = convert_checkpoint(path)
    assert (info.name, info.plugin, info.scale, info.extra["source_layout"]) == (
        "srvgg_compact", "realesrgan", 2, "realesrgan-compact")  # fmt: skip
    x = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), net(x))
    with pytest.raises(ConvertError, match="scale 4 was given"):
        convert_checkpoint(path, hints={"scale": 4})


# --- equality with spandrel (which loads the official Real-ESRGAN files) -----------------------------


@pytest.mark.parametrize("scale", [4, 2])
def test_equal_to_spandrel_from_an_official_style_file(scale, tmp_path):
    spandrel = pytest.importorskip("spandrel")
    ours = _random(SRVGGNetCompact(num_features=16, num_conv=4, scale=scale), seed=scale)
    path = tmp_path / f"compact_x{scale}.pth"
    state = _save_official(ours, path)

    theirs = spandrel.ModelLoader().load_from_state_dict(state)  # spandrel's own architecture detection
    assert theirs.architecture.id == "Compact" and theirs.scale == scale
    converted, info = convert_checkpoint(path)
    assert info.args["num_conv"] == 4 and info.args["act_type"] == "prelu"

    x = torch.rand(1, 3, 13, 10, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = theirs.model.eval()(x)
        got = converted(x)
    assert got.shape == expected.shape == (1, 3, 13 * scale, 10 * scale)
    assert torch.allclose(got, expected, atol=1e-5)


def test_equal_to_spandrel_with_relu():
    """spandrel detects only the PReLU layout (it needs body.1.weight), so the relu variant is compared
    with spandrel's network class built directly, loading our state dict strictly."""
    pytest.importorskip("spandrel")
    from spandrel.architectures.Compact import Compact

    ours = _random(SRVGGNetCompact(num_features=8, num_conv=3, scale=2, act_type="relu"))
    theirs = Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=3, upscale=2, act_type="relu")
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.rand(1, 3, 8, 9)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs.eval()(x), atol=1e-5)


# --- training --------------------------------------------------------------------------------------


def test_trains_with_restore_run(tiny_recipe, tmp_path):
    recipe = tiny_recipe()
    env = dict(os.environ, RESTOREKIT_HOME=str(tmp_path / "home"), COLUMNS="200")
    cmd = [
        sys.executable, "-m", "restorekit.cli", "run", str(recipe),
        "--set", "generator.name=srvgg_compact",
        "--set", "generator.args={num_features = 8, num_conv = 2, scale = 2}",
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr

    weights = tmp_path / "run" / "tiny.safetensors"
    info = read_info(weights)
    assert (info.name, info.scale, info.plugin) == ("srvgg_compact", 2, "realesrgan")
    net, _ = load_network(weights)
    # PReLU slopes start at 0.25 everywhere: training moved them, so gradients reached every layer.
    assert all(not torch.allclose(net.body[i].weight, torch.full_like(net.body[i].weight, 0.25)) for i in (1, 3, 5))
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["g_total"] for r in records if r["kind"] == "train"]
    assert len(losses) == 6 and all(map(math.isfinite, losses))
