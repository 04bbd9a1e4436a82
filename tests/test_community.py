"""Community checkpoints through spandrel (``restorekit[community]``): parity, descriptor, CLI, safety.

Every architecture here is spandrel's own class with small hyperparameters and random weights, saved
the way community checkpoints are (``{"params": state_dict}`` in a ``.pth``, or a bare
``.safetensors``); restorekit's output is compared with spandrel's own call on the same tensors.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from restorekit.community import SpandrelNetwork, install_hint, load_with_spandrel, map_descriptor
from restorekit.convert import ConvertError, convert_checkpoint, convert_file, load_foreign, read_foreign_state
from restorekit.inference.model import RestorationModel, is_foreign_checkpoint

spandrel = pytest.importorskip("spandrel")
from spandrel.architectures.Compact import Compact  # noqa: E402
from spandrel.architectures.ESRGAN import ESRGAN  # noqa: E402
from spandrel.architectures.SPAN import SPAN  # noqa: E402
from spandrel.architectures.SwinIR import SwinIR  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:torch.meshgrid")


def swinir_small() -> nn.Module:
    return SwinIR(
        img_size=16, embed_dim=12, depths=[2], num_heads=[2], window_size=4, mlp_ratio=2.0, upscale=2,
        upsampler="pixelshuffledirect",
    )  # fmt: skip


def span_small() -> nn.Module:
    # norm=False keeps random outputs inside [0, 1] often enough for the comparison to mean something.
    return SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=2, norm=False)


def compact_small() -> nn.Module:
    return Compact(num_feat=8, num_conv=2, upscale=2)


ARCHITECTURES = {"SwinIR": swinir_small, "SPAN": span_small, "Compact": compact_small}


def checkpoint(tmp_path: Path, arch: str, suffix: str = ".pth", seed: int = 0) -> tuple[Path, dict[str, torch.Tensor]]:
    """A community-style checkpoint of *arch* with random weights, and its state dict."""
    torch.manual_seed(seed)
    state = {k: v.clone() for k, v in ARCHITECTURES[arch]().state_dict().items()}
    path = tmp_path / f"2x_{arch}{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save({"params": state}, path)
    return path, state


def spandrel_reference(state: dict[str, torch.Tensor], image: torch.Tensor) -> torch.Tensor:
    """spandrel's own answer for a (C, H, W) image: its loader and its call, nothing of restorekit."""
    loaded = spandrel.ModelLoader().load_from_state_dict(state)
    return loaded(image[None])[0]


def assert_meaningful(reference: torch.Tensor) -> None:
    """Random weights may saturate everything at 0 or 1, which would make equality trivial."""
    inside = ((reference > 0.01) & (reference < 0.99)).float().mean().item()
    assert inside > 0.3, f"only {inside:.0%} of the reference is inside (0, 1)"


# --- parity with spandrel ------------------------------------------------------------------------------


@pytest.mark.parametrize(("arch", "suffix"), [("SwinIR", ".pth"), ("SPAN", ".safetensors"), ("SPAN", ".pth")])
def test_spandrel_only_architectures_equal_spandrel_whole_image(tmp_path: Path, arch: str, suffix: str) -> None:
    path, state = checkpoint(tmp_path, arch, suffix)
    model = RestorationModel.load(path, device="cpu", tile=None)
    assert model.info.plugin == "spandrel" and model.name == arch
    image = torch.rand(3, 21, 26)  # odd sides: whatever padding happens must be undone exactly
    expected = spandrel_reference(state, image)
    assert_meaningful(expected)
    restored = model.restore_tensor(image)
    assert restored.shape == (3, 42, 52)
    torch.testing.assert_close(restored, expected, atol=1e-5, rtol=0)


def test_span_tiled_equals_spandrel(tmp_path: Path) -> None:
    path, state = checkpoint(tmp_path, "SPAN")
    # SPAN's receptive field is about 21 pixels (20 3x3 convolutions): overlap 24 covers it.
    model = RestorationModel.load(path, device="cpu", tile=80, overlap=24)
    assert model.descriptor.tiling == "tileable" and model.tile == 80
    image = torch.rand(3, 150, 130)
    torch.testing.assert_close(model.restore_tensor(image), spandrel_reference(state, image), atol=1e-5, rtol=0)


def test_compact_through_the_bridge_equals_spandrel_whole_and_tiled(tmp_path: Path) -> None:
    path, state = checkpoint(tmp_path, "Compact")
    network, info = load_with_spandrel(read_foreign_state(path), path)
    assert info.name == "Compact" and info.descriptor.tiling == "tileable" and info.scale == 2
    image = torch.rand(3, 70, 50)
    expected = spandrel_reference(state, image)
    assert_meaningful(expected)
    whole = RestorationModel(network, info, device="cpu", tile=None).restore_tensor(image)
    tiled = RestorationModel(network, info, device="cpu", tile=32, overlap=8).restore_tensor(image)
    torch.testing.assert_close(whole, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(tiled, expected, atol=1e-5, rtol=0)


def test_compact_file_goes_to_restorekits_own_plugin_first(tmp_path: Path) -> None:
    """Plugins have their turn before spandrel: Compact is restorekit's srvgg_compact, and still equal."""
    path, state = checkpoint(tmp_path, "Compact")
    model = RestorationModel.load(path, device="cpu", tile=None)
    assert model.name == "srvgg_compact" and model.info.plugin != "spandrel"
    image = torch.rand(3, 17, 23)
    torch.testing.assert_close(model.restore_tensor(image), spandrel_reference(state, image), atol=1e-5, rtol=0)


def test_variant_a_plugin_refuses_is_run_by_spandrel(tmp_path: Path) -> None:
    """ESRGAN+ is recognised by the esrgan plugin but not built; spandrel builds it for apply/eval."""
    torch.manual_seed(4)
    state = ESRGAN(num_filters=16, num_blocks=1, scale=4, plus=True).state_dict()
    path = tmp_path / "4x_plus.pth"
    torch.save(state, path)
    with pytest.raises(ConvertError, match="ESRGAN\\+"):
        convert_checkpoint(path)  # a restorekit file still cannot be written
    network, info = load_foreign(path)
    assert info.plugin == "spandrel" and info.name == "ESRGAN" and info.scale == 4
    image = torch.rand(3, 12, 9)
    restored = RestorationModel(network, info, device="cpu", tile=None).restore_tensor(image)
    torch.testing.assert_close(restored, spandrel_reference(state, image), atol=1e-5, rtol=0)


# --- the descriptor ------------------------------------------------------------------------------------


def test_swinir_descriptor_and_provenance(tmp_path: Path) -> None:
    path, _ = checkpoint(tmp_path, "SwinIR")
    network, info = load_foreign(path)
    d = info.descriptor
    assert isinstance(network, SpandrelNetwork)
    assert (d.name, d.plugin, d.args, d.kind, d.task) == ("SwinIR", "spandrel", {}, "generator", "super_resolution")
    assert (d.scale, d.in_channels, d.out_channels, d.size_multiple) == (2, 3, 3, 1)
    assert (d.supports_fp16, d.supports_bf16, d.tiling, d.tile_margin) == (False, True, "tile_with_warning", 0)
    assert info.extra["loaded_by"] == "spandrel" and info.extra["spandrel_architecture"] == "SwinIR"
    assert info.extra["spandrel_version"] == spandrel.__version__ and info.extra["source_file"] == path.name
    assert len(info.extra["source_sha256"]) == 64
    assert "minimum 16" in info.extra["spandrel_size_requirements"]
    with pytest.warns(UserWarning, match="slightly different results in tiles"):
        RestorationModel(network, info, device="cpu", tile=128)


class _FixedArch(spandrel.Architecture):
    """A stand-in architecture for descriptors built by hand (spandrel never loads through it)."""

    def __init__(self) -> None:
        super().__init__(id="SquareNet", detect=lambda state: False)

    def load(self, state_dict):  # noqa: ANN001, ANN201
        raise NotImplementedError


class _SquareOnly(nn.Module):
    """Refuses anything but square inputs of at least 16 pixels, as some transformer models do."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        # Reflect padding inside the network agrees with the reflect padding around tiles and images, so
        # tiles and the whole image see the same border: equality then tests the padding alone.
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, padding_mode="reflect"), nn.ReLU(), nn.Conv2d(8, 3, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != x.shape[-2] or x.shape[-1] < 16 or x.shape[-1] % 8:
            raise AssertionError(f"unsupported input {tuple(x.shape)}")
        return torch.sigmoid(self.body(x))


def _described(tiling: object, purpose: str = "Restoration", square: bool = True) -> object:
    net = _SquareOnly()
    return spandrel.ImageModelDescriptor(
        net, net.state_dict(), architecture=_FixedArch(), purpose=purpose, tags=[], supports_half=True,
        supports_bfloat16=False, scale=1, input_channels=3, output_channels=3,
        size_requirements=spandrel.SizeRequirements(minimum=16, multiple_of=8, square=square), tiling=tiling,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("tiling", "rule"),
    [("SUPPORTED", "tileable"), ("DISCOURAGED", "tile_with_warning"), ("INTERNAL", "whole_image_only")],
)
def test_tiling_rule_mapping(tiling: str, rule: str) -> None:
    d = map_descriptor(_described(spandrel.ModelTiling[tiling]))
    assert d.tiling == rule
    # Same-size restoration maps to restorekit's same-size task; multiple_of becomes size_multiple.
    assert (d.task, d.scale, d.size_multiple, d.supports_fp16, d.supports_bf16) == ("deblurring", 1, 8, True, False)


def test_square_and_minimum_sizes_are_honoured_whole_and_tiled() -> None:
    """restorekit pads to size_multiple; the wrapper pads to square/minimum as spandrel's call does."""
    loaded = _described(spandrel.ModelTiling.SUPPORTED)
    network = SpandrelNetwork(loaded)
    from restorekit.weights import WeightInfo

    info = WeightInfo.of(map_descriptor(loaded))
    small = torch.rand(3, 10, 23)
    whole = RestorationModel(network, info, device="cpu", tile=None).restore_tensor(small)
    assert whole.shape == small.shape
    torch.testing.assert_close(whole, loaded(small[None])[0], atol=1e-5, rtol=0)
    wide = torch.rand(3, 40, 90)
    tiled = RestorationModel(network, info, device="cpu", tile=32, overlap=4).restore_tensor(wide)
    torch.testing.assert_close(tiled, loaded(wide[None])[0], atol=1e-5, rtol=0)


# --- hints, unknown files, safety ----------------------------------------------------------------------


def test_hints_must_agree_with_spandrel(tmp_path: Path) -> None:
    path, _ = checkpoint(tmp_path, "SwinIR")
    assert load_foreign(path, hints={"scale": 2})[1].scale == 2
    with pytest.raises(ConvertError, match="spandrel reads it as a x2 SwinIR, but scale 3 was given"):
        load_foreign(path, hints={"scale": 3})
    with pytest.raises(ConvertError, match="spandrel reads it as SwinIR, not as 'rrdbnet'"):
        load_foreign(path, hints={"arch": "rrdbnet"})


def test_unknown_file_names_plugins_and_spandrel(tmp_path: Path) -> None:
    path = tmp_path / "linear.pth"
    torch.save(nn.Linear(4, 2).state_dict(), path)
    with pytest.raises(ConvertError) as caught:
        load_foreign(path)
    message = str(caught.value)
    assert "no plugin recognises this checkpoint" in message and "esrgan" in message
    assert f"spandrel {spandrel.__version__}" in message and "does not recognise it either" in message
    assert "\n" not in message


def test_without_spandrel_the_message_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "spandrel", None)  # `import spandrel` now fails, as when not installed
    path, _ = checkpoint(tmp_path, "SwinIR")
    for call in (load_foreign, convert_checkpoint):
        with pytest.raises(ConvertError) as caught:
            call(path)
        message = str(caught.value)
        assert "no plugin recognises this checkpoint" in message and install_hint() in message
        assert "restorekit[community]" in message and "\n" not in message


def test_pickled_code_is_refused_before_spandrel_is_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pth"
    torch.save({"params": ARCHITECTURES["SPAN"]().state_dict(), "hook": _Payload(marker)}, path)
    asked: list[object] = []
    original = spandrel.ModelLoader.load_from_state_dict
    monkeypatch.setattr(
        spandrel.ModelLoader, "load_from_state_dict", lambda self, sd: asked.append(sd) or original(self, sd)
    )
    with pytest.raises(ConvertError, match="pickled Python objects beyond tensors"):
        load_foreign(path)
    assert not marker.exists() and asked == []


class _Payload:
    """Unpickling this creates a folder: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.mkdir, (str(self.marker),))


def test_foreign_safetensors_is_recognised_as_foreign(tmp_path: Path) -> None:
    path, _ = checkpoint(tmp_path, "SPAN", ".safetensors")
    assert is_foreign_checkpoint(path)
    assert not is_foreign_checkpoint(tmp_path / "absent.safetensors")


# --- the command line, in real processes -------------------------------------------------------------


def restore(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "400"}
    return subprocess.run(
        [sys.executable, "-m", "restorekit.cli", *map(str, args)],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=300,
    )  # fmt: skip


def assert_one_line_failure(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], proc.stderr


def test_cli_apply_info_convert_with_a_spandrel_model(tmp_path: Path) -> None:
    path, _ = checkpoint(tmp_path, "SPAN")
    photo = tmp_path / "photo.png"
    Image.fromarray((torch.rand(19, 27, 3) * 255).byte().numpy()).save(photo)

    applied = restore("apply", "--model", path, photo, "-o", tmp_path / "out", "--device", "cpu", cwd=tmp_path)
    assert applied.returncode == 0, applied.stderr
    outputs = list((tmp_path / "out").iterdir())
    assert len(outputs) == 1 and Image.open(outputs[0]).size == (54, 38)

    shown = restore("info", path, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "not a restorekit weight file" in shown.stdout and "spandrel" in shown.stdout
    assert "SPAN" in shown.stdout and "x2" in shown.stdout and "tiling: tileable" in shown.stdout

    converted = restore("convert", path, cwd=tmp_path)
    assert_one_line_failure(
        converted, "spandrel reads it as SPAN, which no restorekit plugin registers as a generator", "use it directly"
    )
    assert not path.with_suffix(".safetensors").exists()
    with pytest.raises(ConvertError, match="no restorekit plugin registers"):
        convert_file(path)
    assert not path.with_suffix(".safetensors").exists()


def test_cli_refuses_unknown_and_unsafe_files(tmp_path: Path) -> None:
    unknown = tmp_path / "linear.pth"
    torch.save(nn.Linear(4, 2).state_dict(), unknown)
    photo = tmp_path / "photo.png"
    Image.new("RGB", (8, 8)).save(photo)
    proc = restore("apply", "--model", unknown, photo, "--device", "cpu", cwd=tmp_path)
    assert_one_line_failure(proc, "no plugin recognises this checkpoint", "does not recognise it either")

    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pth"
    torch.save({"params": ARCHITECTURES["SPAN"]().state_dict(), "hook": _Payload(marker)}, evil)
    for command in (("info", evil), ("apply", "--model", evil, photo, "--device", "cpu")):
        assert_one_line_failure(restore(*command, cwd=tmp_path), "does not unpickle untrusted files")
    assert not marker.exists()
