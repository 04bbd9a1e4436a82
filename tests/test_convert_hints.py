"""Converter hooks: user hints (scale, arch), old two-argument converters, the order converters are asked."""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from restorekit.convert import ConvertError, convert_checkpoint, convert_file
from restorekit.hookspecs import hookimpl
from restorekit.plugins import get_plugins, registry, reset_plugins
from restorekit.weights import load_network


class NearestUp(nn.Module):
    """PAN-like: nearest upsampling between convolutions, so x2 and x3 have identical tensor shapes."""

    def __init__(self, *, features: int = 4, scale: int = 2) -> None:
        super().__init__()
        self.scale = scale
        self.head = nn.Conv2d(3, features, 3, padding=1)
        self.tail = nn.Conv2d(features, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(F.interpolate(self.head(x), scale_factor=self.scale, mode="nearest"))


def _module(name: str, **hooks) -> types.ModuleType:
    module = types.ModuleType(name)
    for hook, func in hooks.items():
        setattr(module, hook, func)
    return module


def _register_nearest(register):
    register("nearest_up", NearestUp, "PAN-like test network", task="super_resolution")


def _hinted(state_dict, path, hints):
    if "head.weight" not in state_dict:
        return None
    if "scale" not in hints:
        from restorekit.convert import ConvertError

        raise ConvertError(f"{path}: nearest_up checkpoints do not say their scale; give --scale")
    return "nearest_up", {"features": state_dict["head.weight"].shape[0], "scale": hints["scale"]}, state_dict, "test"


@pytest.fixture()
def plugins():
    yield get_plugins()
    reset_plugins()


@pytest.fixture()
def nearest_pth(tmp_path, plugins):
    plugins.add_plugin(
        _module("hinted", register_generators=hookimpl(_register_nearest), convert_state_dict=hookimpl(_hinted)),
        "hinted",
    )
    assert plugins.info["hinted"].state == "loaded", plugins.info["hinted"].error
    path = tmp_path / "pan_like.pth"
    torch.save({"params": NearestUp(features=4, scale=3).state_dict()}, path)
    return path


def test_a_scale_hint_tells_apart_checkpoints_with_identical_shapes(nearest_pth, tmp_path):
    with pytest.raises(ConvertError, match="give --scale"):
        convert_checkpoint(nearest_pth)
    for scale in (2, 3):
        net, info = convert_checkpoint(nearest_pth, hints={"scale": scale})
        assert info.scale == scale == info.descriptor.scale
        assert net(torch.rand(1, 3, 5, 7)).shape[-2:] == (5 * scale, 7 * scale)
        assert info.extra["converted_by"] == "hinted"
    out = convert_file(nearest_pth, tmp_path / "x3.safetensors", hints={"scale": 3})
    assert load_network(out)[1].descriptor.scale == 3


def test_old_two_argument_converters_still_work(plugins, tmp_path):
    seen = {}

    def old_style(state_dict, path):  # written against the hook before hints existed
        seen["called"] = path
        if "head.weight" not in state_dict:
            return None
        return "nearest_up", {"features": 4, "scale": 2}, state_dict

    plugins.add_plugin(
        _module("old", register_generators=hookimpl(_register_nearest), convert_state_dict=hookimpl(old_style)), "old"
    )
    assert plugins.info["old"].state == "loaded", plugins.info["old"].error
    path = tmp_path / "old.pth"
    torch.save(NearestUp(features=4, scale=2).state_dict(), path)
    _, info = convert_checkpoint(path, hints={"scale": 2})
    assert seen["called"] == str(path) and info.name == "nearest_up" and info.extra["converted_by"] == "old"
    with pytest.raises(ConvertError, match="reads it as a x2 'nearest_up', but scale 3 was given"):
        convert_checkpoint(path, hints={"scale": 3})


def _esrgan_pth(tmp_path):
    net = registry("generators").build("rrdbnet", num_features=8, num_blocks=1, growth_channels=4, scale=4)
    path = tmp_path / "esrgan.pth"
    torch.save({"params_ema": net.state_dict()}, path)
    return path


def test_third_party_converters_are_asked_before_builtins_and_trylast_or_arch_changes_that(plugins, tmp_path):
    path = _esrgan_pth(tmp_path)

    def claims_everything(state_dict, path, hints):
        return "nearest_up", {"features": 4, "scale": 4}, {}, "greedy"

    plugins.add_plugin(
        _module("greedy", register_generators=hookimpl(_register_nearest),
                convert_state_dict=hookimpl(claims_everything)),
        "greedy",
    )  # fmt: skip
    with pytest.raises(ConvertError, match="weights do not fit"):  # the greedy third-party answer won
        convert_checkpoint(path)
    _, info = convert_checkpoint(path, hints={"arch": "rrdbnet"})  # only an rrdbnet answer is taken
    assert info.name == "rrdbnet" and info.extra["converted_by"] == "esrgan"

    reset_plugins()
    plugins = get_plugins()
    plugins.add_plugin(
        _module("polite", register_generators=hookimpl(_register_nearest),
                convert_state_dict=hookimpl(trylast=True)(claims_everything)),
        "polite",
    )  # fmt: skip
    _, info = convert_checkpoint(path)
    assert info.name == "rrdbnet" and info.extra["converted_by"] == "esrgan"


def test_a_converter_that_crashes_is_named_in_one_line(plugins, tmp_path):
    def crashes(state_dict, path):
        raise RuntimeError("bug in the plugin")

    plugins.add_plugin(_module("crashy", convert_state_dict=hookimpl(crashes)), "crashy")
    with pytest.raises(ConvertError) as caught:
        convert_checkpoint(_esrgan_pth(tmp_path))
    message = str(caught.value)
    assert "plugin 'crashy'" in message and "RuntimeError: bug in the plugin" in message and "\n" not in message


@pytest.mark.parametrize(
    ("hints", "message"),
    [
        ({"scale": 0}, "scale hint must be an integer from 1 to 16"),
        ({"scale": "4"}, "scale hint must be an integer"),
        ({"arch": "rrdbnett"}, "unknown generator 'rrdbnett'; did you mean rrdbnet"),
        ({"colour": "rgb"}, "unknown conversion hint"),
    ],
)
def test_bad_hints_are_one_line_errors(hints, message, tmp_path, plugins):
    with pytest.raises(ConvertError, match=message):
        convert_checkpoint(_esrgan_pth(tmp_path), hints=hints)
