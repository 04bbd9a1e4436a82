"""The descriptor's tiling rule in ``RestorationModel`` and ``restore apply``, with a globally pooling network.

A network with IMDN-style channel attention and global statistics is registered by a test plugin as
``whole_image_only``. Tiling it would change the image (shown below), so it runs whole by default and an
explicit ``--tile`` is refused before any image is read.
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from restorekit.cli import app
from restorekit.hookspecs import hookimpl
from restorekit.inference.model import RestorationModel
from restorekit.inference.options import InferenceOptions, InferenceOptionsError
from restorekit.inference.tiling import tiled_apply
from restorekit.plugins import get_plugins, registry, reset_plugins
from restorekit.weights import WeightInfo, load_network, save_weights

ARGS = {"num_features": 6, "scale": 2}


class GlobalPoolNet(nn.Module):
    """x2 super-resolution whose every output pixel depends on the whole image's statistics."""

    def __init__(self, num_features: int = 6, scale: int = 2) -> None:
        super().__init__()
        self.scale = scale
        self.head = nn.Conv2d(3, num_features, 3, padding=1)
        self.attention = nn.Conv2d(num_features, num_features, 1)
        self.tail = nn.Conv2d(num_features, 3 * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.head(x)
        # Global statistics: features are centred on the image's mean, which a tile sees only in part.
        features = features - features.mean(dim=(2, 3), keepdim=True)
        # Channel attention over the whole image (IMDN's CCA layer reduces the same way).
        gate = torch.sigmoid(self.attention(features.abs().mean(dim=(2, 3), keepdim=True)))
        residual = self.shuffle(self.tail(features * gate))
        return F.interpolate(x, scale_factor=self.scale, mode="nearest") + residual


class Tap(nn.Module):
    """Counts forward passes of a wrapped network (to see how many tiles ran)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network, self.scale, self.calls = network, network.scale, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += x.shape[0]
        return self.network(x)


def register_generators(register):  # type: ignore[no-untyped-def]
    sr = {"task": "super_resolution"}
    register("globalpool_test", GlobalPoolNet, "test: global pooling", tiling="whole_image_only", **sr)
    register("tilewarn_test", GlobalPoolNet, "test: tiles with warning", tiling="tile_with_warning", **sr)


@pytest.fixture()
def pooling_plugin() -> Iterator[None]:
    plugin = types.ModuleType("globalpool_test_plugin")
    plugin.register_generators = hookimpl(register_generators)  # type: ignore[attr-defined]
    get_plugins().add_plugin(plugin, "globalpool_test_plugin")
    assert get_plugins().info["globalpool_test_plugin"].state == "loaded", get_plugins().info["globalpool_test_plugin"]
    yield
    reset_plugins()


def built(name: str = "globalpool_test") -> nn.Module:
    torch.manual_seed(0)
    network = registry("generators").build(name, **ARGS).eval()
    with torch.no_grad():  # larger weights than the default init, so the global terms matter
        for param in network.parameters():
            param.mul_(3)
    return network


def gradient_image(height: int, width: int) -> torch.Tensor:
    """Dark on the left, bright on the right: tiles see very different means."""
    ramp = torch.linspace(0.05, 0.95, width).expand(height, width)
    return torch.stack([ramp, ramp.flip(-1) * 0.5 + 0.25, ramp**2]).contiguous()


def whole_pass(network: nn.Module, image: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return network(image[None])[0].clamp(0, 1)


def test_tiling_such_a_network_would_change_the_image(pooling_plugin: None) -> None:
    network, image = built(), gradient_image(48, 96)
    with torch.inference_mode():
        tiled = tiled_apply(network, image, scale=2, tile=40, overlap=4).clamp(0, 1)
    difference = float((tiled - whole_pass(network, image)).abs().max()) * 255
    assert difference > 10, f"tiles differ by only {difference:.2f} levels; the rule would not matter"


def test_registration_states_the_rule_and_the_model_runs_whole(pooling_plugin: None) -> None:
    network = built()
    image = gradient_image(40, 600)  # wider than the default tile of 512: a tileable model would tile it
    tap = Tap(network)
    model = RestorationModel(tap, WeightInfo(name="globalpool_test", args=ARGS), device="cpu")
    assert model.descriptor.tiling == "whole_image_only" and model.tile is None
    assert "runs on whole images" in model.plan.note
    out = model.restore_tensor(image)
    assert tap.calls == 1
    assert torch.equal(out, whole_pass(network, image))


def test_an_explicit_tile_is_refused(pooling_plugin: None) -> None:
    info = WeightInfo(name="globalpool_test", args=ARGS)
    with pytest.raises(InferenceOptionsError, match="runs on whole images only"):
        RestorationModel(built(), info, tile=256)
    with pytest.raises(InferenceOptionsError, match="runs on whole images only"):
        RestorationModel(built(), info, options=InferenceOptions(tile=128, overlap=8))
    assert RestorationModel(built(), info, tile=None).tile is None  # asking for a whole pass is fine


def test_tile_with_warning_tiles_and_warns_once(pooling_plugin: None) -> None:
    with pytest.warns(UserWarning, match="slightly different results in tiles") as caught:
        model = RestorationModel(built("tilewarn_test"), WeightInfo(name="tilewarn_test", args=ARGS), device="cpu")
    assert len(caught) == 1 and model.tile == 512


# --- restore apply, in process (the test plugin lives in this process) ---------------------------------


@pytest.fixture()
def pooling_weights(pooling_plugin: None, tmp_path: Path) -> Path:
    network = built()
    path = save_weights(network, tmp_path / "globalpool.safetensors", WeightInfo(name="globalpool_test", args=ARGS))
    _, info = load_network(path)
    assert info.descriptor is not None and info.descriptor.tiling == "whole_image_only"
    return path


def write_photo(path: Path, height: int, width: int) -> Path:
    array = (gradient_image(height, width).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(array).save(path)
    return path


def one_line(text: str) -> str:
    return " ".join(text.split())


def test_apply_refuses_tile_before_reading_any_image(pooling_weights: Path, tmp_path: Path) -> None:
    not_an_image = tmp_path / "broken.png"
    not_an_image.write_bytes(b"not a png")  # would fail if it were read
    result = CliRunner().invoke(app, ["apply", "-m", str(pooling_weights), str(not_an_image), "--tile", "256"])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "runs on whole images only" in errors[0] and "--tile 0" in errors[0]
    assert "broken.png" not in result.stderr and not (tmp_path / "broken_globalpool.png").exists()


def test_apply_runs_whole_and_says_so_once(pooling_weights: Path, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    write_photo(photos / "a.png", 24, 40)
    write_photo(photos / "b.png", 30, 20)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["apply", "-m", str(pooling_weights), str(photos), "-o", str(out)])
    assert result.exit_code == 0, result.output
    notes = re.findall(r"note: model 'globalpool_test' runs on whole images", one_line(result.stderr))
    assert len(notes) == 1
    network, _ = load_network(pooling_weights)
    for name in ("a.png", "b.png"):
        source = torch.from_numpy(np.asarray(Image.open(photos / name), dtype=np.float32) / 255).permute(2, 0, 1)
        restored = torch.from_numpy(np.asarray(Image.open(out / name), dtype=np.float32) / 255).permute(2, 0, 1)
        assert float((restored - whole_pass(network, source)).abs().max()) <= 0.5 / 255 + 1e-6


def test_eval_shares_the_rule(pooling_weights: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["eval", "-m", str(pooling_weights), "--data", str(tmp_path), "--scale", "2", "--tile", "256"]
    )
    assert result.exit_code == 2 and "runs on whole images only" in one_line(result.stderr)


# --- conversion hints reach the converter ------------------------------------------------------------


@pytest.fixture()
def esrgan_x2_pth(tmp_path: Path) -> Path:
    from restorekit_plugins.esrgan.rrdbnet import RRDBNet

    network = RRDBNet(num_features=8, num_blocks=1, growth_channels=4, scale=2)
    path = tmp_path / "esrgan_x2.pth"
    torch.save({"params_ema": network.state_dict()}, path)
    return path


def test_apply_passes_scale_and_arch_hints_to_the_converter(esrgan_x2_pth: Path, tmp_path: Path) -> None:
    photo = write_photo(tmp_path / "p.png", 8, 8)
    runner = CliRunner()
    wrong_scale = runner.invoke(app, ["apply", "-m", str(esrgan_x2_pth), str(photo), "--scale", "3"])
    assert wrong_scale.exit_code == 1 and "but scale 3 was given" in one_line(wrong_scale.stderr)
    wrong_arch = runner.invoke(app, ["apply", "-m", str(esrgan_x2_pth), str(photo), "--arch", "srresnet"])
    assert wrong_arch.exit_code == 1
    assert "no plugin recognises this checkpoint as 'srresnet'" in one_line(wrong_arch.stderr)
    right = runner.invoke(app, ["apply", "-m", str(esrgan_x2_pth), str(photo), "--scale", "2", "--arch", "rrdbnet"])
    assert right.exit_code == 0, right.stderr
    assert Image.open(tmp_path / "p_esrgan_x2.png").size == (16, 16)
