"""The model descriptor: produced once, written verbatim into the weight file, read back by everyone."""

from __future__ import annotations

import json
import types

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from restorekit.descriptor import (
    TILING_RULES,
    DescriptorError,
    ModelDescriptor,
    describe,
    describe_network,
)
from restorekit.hookspecs import hookimpl
from restorekit.plugins import get_plugins, reset_plugins
from restorekit.recipe import load_recipe
from restorekit.recipe.components import ScaleMismatch, build_task, generator_descriptor
from restorekit.weights import WeightInfo, WeightsError, load_network, read_info, save_weights

PLUGINS = get_plugins()
GENERATORS = PLUGINS.registry("generators").names()


class GlobalPool(nn.Module):
    """A network whose output depends on the whole image (channel attention from the global mean)."""

    def __init__(self, *, features: int = 4) -> None:
        super().__init__()
        self.scale = 1
        self.conv = nn.Conv2d(3, features, 3, padding=1)
        self.out = nn.Conv2d(features, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        return self.out(feat * torch.sigmoid(feat.mean(dim=(2, 3), keepdim=True)))


class Legacy(nn.Module):
    """An older plugin's network: only ``scale`` and ``supports_half`` set."""

    def __init__(self, *, scale: int = 2) -> None:
        super().__init__()
        self.scale = scale
        self.supports_half = False
        self.conv = nn.Conv2d(3, 3 * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


@pytest.fixture()
def test_plugin():
    module = types.ModuleType("descriptor_test_plugin")

    def register_generators(register):
        register("global_pool", GlobalPool, "global channel attention", task="denoising", tiling="whole_image_only")
        register("legacy_net", Legacy, "legacy attributes", task="super_resolution", size_multiple=4)

    module.register_generators = hookimpl(register_generators)
    get_plugins().add_plugin(module, "descriptor_test")
    assert get_plugins().info["descriptor_test"].state == "loaded", get_plugins().info["descriptor_test"].error
    yield get_plugins()
    reset_plugins()


@pytest.mark.parametrize("name", GENERATORS)
def test_every_generator_is_described_and_the_file_carries_it_verbatim(name, tmp_path):
    comp = PLUGINS.registry("generators").get(name)
    args = comp.info.get("tiny_args", {})
    net = comp.build(**args)
    on_meta = describe(comp, args)  # built on the meta device: no memory
    descriptor = describe(comp, args, net)
    assert on_meta == descriptor
    assert descriptor.scale == net.scale and descriptor.plugin == comp.plugin and descriptor.name == name
    assert descriptor.task == comp.info.get("task", "")
    assert descriptor.tiling in TILING_RULES

    path = tmp_path / f"{name}.safetensors"
    save_weights(net, path, WeightInfo.of(descriptor))
    with open(path, "rb") as handle:  # the JSON in the header is the record itself
        header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
    assert ModelDescriptor.from_json(header["__metadata__"]["descriptor"]) == descriptor
    assert read_info(path).descriptor == descriptor
    _, info = load_network(path)
    assert info.descriptor == descriptor


def test_network_attributes_win_over_registration_info_and_supports_half_means_both(test_plugin):
    comp = test_plugin.registry("generators").get("legacy_net")
    d = describe(comp, {"scale": 3})
    assert (d.scale, d.size_multiple, d.task) == (3, 4, "super_resolution")  # attribute, info, info
    assert d.supports_fp16 is False and d.supports_bf16 is False and d.supports_half is False
    pool = describe(test_plugin.registry("generators").get("global_pool"), {})
    assert pool.tiling == "whole_image_only" and not pool.tileable and pool.task == "denoising"


def test_files_written_before_descriptors_get_one_derived_once(tmp_path):
    comp = PLUGINS.registry("generators").get("srresnet")
    args = {"num_features": 8, "num_blocks": 1, "scale": 2}
    net = comp.build(**args)
    old_meta = {  # what restorekit wrote before the descriptor existed
        "format": "restorekit", "format_version": "1", "kind": "generator", "name": "srresnet",
        "plugin": "srgan", "args": json.dumps(args), "task": "super_resolution", "scale": "2",
    }  # fmt: skip
    path = tmp_path / "old.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path), metadata=old_meta)
    assert read_info(path).descriptor is None
    _, info = load_network(path)
    assert info.descriptor == describe(comp, args, net)


def test_hand_made_weight_info_is_completed_when_saved(tmp_path):
    net = Legacy(scale=2)
    path = tmp_path / "legacy.safetensors"
    # A name no plugin registers: the network's own attributes describe it.
    save_weights(net, path, WeightInfo("not_registered", {"scale": 2}, task="super_resolution", scale=2))
    d = read_info(path).descriptor
    assert d == describe_network("not_registered", {"scale": 2}, net, task="super_resolution")
    assert d.scale == 2 and d.supports_half is False


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"scale": 0}, "scale must be an integer from 1 to 64"),
        ({"scale": 10**9}, "scale must be an integer"),
        ({"tiling": "sometimes"}, "tiling must be one of tileable, whole_image_only, tile_with_warning"),
        ({"supports_fp16": "yes"}, "supports_fp16 must be true or false"),
        ({"size_multiple": 1.5}, "size_multiple must be an integer"),
    ],
)
def test_impossible_values_are_refused_naming_the_field(change, message):
    with pytest.raises(DescriptorError, match=message):
        ModelDescriptor(name="net", **change)


def test_a_damaged_descriptor_in_a_file_is_one_line_naming_the_file(tmp_path):
    net = Legacy(scale=2)
    path = tmp_path / "bad.safetensors"
    save_weights(net, path, WeightInfo("not_registered", {"scale": 2}, scale=2))
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        meta = dict(handle.metadata())
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    for damaged in ("{not json", json.dumps({"name": "not_registered", "tiling": "maybe"}), "[1, 2]"):
        save_file(tensors, str(path), metadata={**meta, "descriptor": damaged})
        with pytest.raises(WeightsError) as caught:
            read_info(path)
        assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_a_recipe_states_the_scale_once(tiny_recipe):
    path = tiny_recipe()
    text = path.read_text().replace("args = { scale = 2 }\n", "")  # the task takes the generator's scale
    path.write_text(text)
    recipe = load_recipe(path)
    assert "scale" not in recipe.task.args
    descriptor = generator_descriptor(recipe)
    assert descriptor.scale == 2
    assert build_task(recipe, descriptor).scale == 2

    recipe = load_recipe(path, ["generator.args.scale=4", "data.train.crop=16"])
    assert build_task(recipe, generator_descriptor(recipe)).scale == 4


def test_a_scale_stated_twice_must_agree(tiny_recipe):
    recipe = load_recipe(tiny_recipe(), check_components=False)
    recipe = load_recipe(tiny_recipe(), ["task.args.scale=4"], check_components=False)
    with pytest.raises(ScaleMismatch, match="the generator upscales x2 but the task expects x4"):
        build_task(recipe, generator_descriptor(recipe))


def test_deblurgan_with_instance_norm_says_tiles_change_its_result():
    comp = PLUGINS.registry("generators").get("deblurgan_resnet")
    small = {"num_features": 4, "num_blocks": 1}
    assert describe(comp, small).tiling == "tile_with_warning"  # per-tile instance-norm statistics
    assert describe(comp, {**small, "norm": "batch"}).tiling == "tileable"

    torch.manual_seed(0)
    net = comp.build(**small).eval()
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        whole = net(image)
        tiles = torch.cat([net(image[..., :32]), net(image[..., 32:])], dim=-1)
    assert (whole - tiles).abs().max() > 1e-3  # why the rule exists
