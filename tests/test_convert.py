"""Foreign ESRGAN checkpoints: safe reading, the three key layouts, and ``restore convert``.

The reference is spandrel, an independent implementation: the same weights written in each layout
must give the same outputs through spandrel and through restorekit's converted network.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from restorekit.convert import ConvertError, convert_checkpoint, convert_file, read_foreign_state
from restorekit.weights import WeightInfo, load_network, read_info, save_weights
from restorekit_plugins.esrgan.convert import convert_esrgan_state_dict, detect_layout
from restorekit_plugins.esrgan.rrdbnet import RRDBNet

spandrel = pytest.importorskip("spandrel")
from spandrel.architectures.ESRGAN import ESRGAN as SpandrelESRGAN  # noqa: E402

TINY = {"num_features": 16, "num_blocks": 2, "growth_channels": 32}  # spandrel fixes growth at 32


def make_rrdbnet(scale: int, seed: int = 0, **overrides: int) -> RRDBNet:
    torch.manual_seed(seed)
    net = RRDBNet(**{**TINY, **overrides}, scale=scale).eval()
    # The default init leaves dense-block outputs tiny; larger weights make a wrong mapping visible.
    with torch.no_grad():
        for param in net.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return net


# --- the foreign layouts, written independently of the converter ---------------------------------


def to_new_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """ESRGAN repository's RRDBNet_arch.py names."""
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "body":
            key = f"RRDB_trunk.{parts[1]}.{parts[2].upper()}.{parts[3]}.{parts[4]}"
        else:
            top = {"conv_body": "trunk_conv", "conv_hr": "HRconv"}.get(parts[0], parts[0])
            top = top.replace("conv_up", "upconv")
            key = f"{top}.{parts[1]}"
        out[key] = value
    return out


def to_old_layout(net: RRDBNet) -> dict[str, torch.Tensor]:
    """Original ESRGAN names, taken from spandrel's own old-layout module: parameters pair up in order."""
    shuffle = net.unshuffle_factor if net.unshuffle_factor > 1 else None
    reference = SpandrelESRGAN(
        in_nc=net.conv_first.in_channels,
        out_nc=net.out_channels,
        num_filters=net.conv_first.out_channels,
        num_blocks=len(net.body),
        scale=net.scale * (shuffle or 1),
        shuffle_factor=shuffle,
    )
    old_keys = list(reference.state_dict())
    ours = list(net.state_dict().items())
    assert len(old_keys) == len(ours)
    for old_key, (_, value) in zip(old_keys, ours):
        assert reference.state_dict()[old_key].shape == value.shape, old_key
    return {old_key: value.clone() for old_key, (_, value) in zip(old_keys, ours)}


def foreign_state(net: RRDBNet, layout: str) -> dict[str, torch.Tensor]:
    state = {k: v.clone() for k, v in net.state_dict().items()}
    if layout == "basicsr":
        return state
    if layout == "esrgan-new":
        return to_new_layout(state)
    return to_old_layout(net)


def wrap(state: dict[str, torch.Tensor], how: str) -> object:
    if how == "params_ema":  # Real-ESRGAN releases: the EMA copy next to the raw one
        decoy = {k: torch.zeros_like(v) for k, v in state.items()}
        return {"params": decoy, "params_ema": state}
    if how == "params":
        return {"params": state}
    if how == "module":
        return {f"module.{k}": v for k, v in state.items()}
    if how == "state_dict":
        return {"state_dict": state, "epoch": 7, "optimizer": {"lr": 1e-4}}
    return state


def spandrel_output(state: dict[str, torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, int]:
    descriptor = spandrel.ModelLoader().load_from_state_dict(dict(state))
    model = descriptor.model.eval()
    with torch.no_grad():
        return model(x), descriptor.scale


# --- layouts x scales, against spandrel ------------------------------------------------------------

LAYOUT_CASES = [
    ("basicsr", "params_ema"),
    ("esrgan-new", "module"),
    ("esrgan-old", "plain"),
]


@pytest.mark.parametrize("scale", [1, 2, 4, 8])
@pytest.mark.parametrize("layout,how", LAYOUT_CASES)
def test_layouts_match_spandrel(tmp_path: Path, scale: int, layout: str, how: str) -> None:
    net = make_rrdbnet(scale, seed=scale)
    foreign = foreign_state(net, layout)
    src = tmp_path / f"{layout}_x{scale}.pth"
    torch.save(wrap(foreign, how), src)

    converted, info = convert_checkpoint(src)

    assert info.name == "rrdbnet" and info.plugin == "esrgan" and info.task == "super_resolution"
    assert info.args == {**TINY, "in_channels": 3, "out_channels": 3, "scale": scale}
    assert info.scale == scale
    assert info.extra["source_layout"] == layout and info.extra["source_file"] == src.name

    x = torch.rand(1, 3, 6, 9)  # odd width: the pixel-unshuffle padding is compared too
    reference, reference_scale = spandrel_output(foreign, x)
    with torch.no_grad():
        ours = converted(x)
        original = net(x)
    assert reference_scale == scale
    assert ours.shape == (1, 3, 6 * scale, 9 * scale)
    assert torch.allclose(ours, reference, atol=1e-5, rtol=0), (ours - reference).abs().max()
    assert torch.allclose(ours, original, atol=1e-6, rtol=0)


@pytest.mark.parametrize("layout", ["basicsr", "esrgan-new", "esrgan-old"])
def test_round_trip_rebuilds_from_file_alone(tmp_path: Path, layout: str) -> None:
    net = make_rrdbnet(2, seed=3)
    src = tmp_path / "foreign.pth"
    torch.save(wrap(foreign_state(net, layout), "params"), src)

    out = convert_file(src, tmp_path / "converted.safetensors")

    rebuilt, info = load_network(out)
    assert info.name == "rrdbnet" and info.scale == 2
    assert info.extra["source_layout"] == layout and info.extra["source_file"] == "foreign.pth"
    x = torch.rand(1, 3, 9, 7)  # odd sides exercise the pixel-unshuffle padding
    with torch.no_grad():
        assert torch.equal(rebuilt(x), net(x))


def test_half_precision_checkpoint_converts_to_float32(tmp_path: Path) -> None:
    net = make_rrdbnet(4, seed=5)
    half = {k: v.half() for k, v in foreign_state(net, "esrgan-old").items()}
    src = tmp_path / "half.pth"
    torch.save(half, src)
    converted, _ = convert_checkpoint(src)
    assert all(p.dtype == torch.float32 for p in converted.parameters())
    assert torch.equal(converted.conv_first.weight, half["model.0.weight"].float())
    x = torch.rand(1, 3, 6, 6)
    reference, _ = spandrel_output(half, x)
    with torch.no_grad():
        assert torch.allclose(converted(x), reference, atol=1e-5, rtol=0)


def test_inferred_hyperparameters_beyond_defaults(tmp_path: Path) -> None:
    """Growth, channel counts and block count come from shapes, not from defaults."""
    torch.manual_seed(0)
    net = RRDBNet(in_channels=1, out_channels=1, num_features=8, num_blocks=3, growth_channels=4, scale=2).eval()
    src = tmp_path / "gray.pth"
    torch.save({"params_ema": to_new_layout(net.state_dict())}, src)
    converted, info = convert_checkpoint(src)
    assert info.args == {
        "in_channels": 1, "out_channels": 1, "num_features": 8, "num_blocks": 3, "growth_channels": 4, "scale": 2,
    }
    x = torch.rand(1, 1, 5, 6)
    with torch.no_grad():
        assert torch.equal(converted(x), net(x))


def test_foreign_safetensors_is_read(tmp_path: Path) -> None:
    net = make_rrdbnet(4, seed=1)
    src = tmp_path / "community.safetensors"
    save_file(foreign_state(net, "esrgan-new"), str(src))
    out = convert_file(src)
    assert out == tmp_path / "community.restorekit.safetensors"
    assert read_info(out).extra["source_layout"] == "esrgan-new"


# --- reading and canonicalising ----------------------------------------------------------------------


def test_params_ema_preferred_and_wrappers_removed(tmp_path: Path) -> None:
    ema, raw = {"w": torch.ones(2)}, {"w": torch.zeros(2)}
    cases = {
        "both.pth": {"params": raw, "params_ema": ema},
        "nested.pt": {"model": {"params_ema": ema}, "step": 10},
        "ddp.ckpt": {"state_dict": {"module.w": torch.ones(2), "note": "x"}, "epoch": 3},
        "net.pth": {"net": ema, "generator": "not a dict"},
    }
    for name, payload in cases.items():
        torch.save(payload, tmp_path / name)
        state = read_foreign_state(tmp_path / name)
        assert list(state) == ["w"], name
        assert torch.equal(state["w"], torch.ones(2)), name


def test_plain_state_dict_without_wrapper_keeps_everything(tmp_path: Path) -> None:
    torch.save({"a.weight": torch.ones(1), "b.bias": torch.zeros(1), "meta": 3}, tmp_path / "plain.pth")
    assert sorted(read_foreign_state(tmp_path / "plain.pth")) == ["a.weight", "b.bias"]


class Payload:
    """Unpickling this creates a folder: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.mkdir, (str(self.marker),))


def test_pickled_objects_are_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    src = tmp_path / "evil.pth"
    torch.save({"params": {"w": torch.ones(1)}, "hook": Payload(marker)}, src)
    out = tmp_path / "evil.safetensors"
    with pytest.raises(ConvertError, match=r"pickled Python objects beyond tensors \(found (posix|nt|os)\.mkdir\)"):
        convert_file(src, out)
    assert not marker.exists()
    assert not out.exists()


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("empty.pth", b"", "empty file"),
        ("junk.pth", b"this is not a checkpoint at all", "not a readable PyTorch checkpoint"),
        ("junk.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage", "not a readable safetensors"),
        ("model.onnx", b"onnx", "unsupported checkpoint type"),
    ],
)
def test_unreadable_files(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ConvertError, match=message) as info:
        read_foreign_state(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file_and_non_state_dict(tmp_path: Path) -> None:
    with pytest.raises(ConvertError, match="no such file"):
        read_foreign_state(tmp_path / "absent.pth")
    torch.save([torch.ones(1)], tmp_path / "list.pth")
    with pytest.raises(ConvertError, match="holds a list, not a state dict"):
        read_foreign_state(tmp_path / "list.pth")
    torch.save({"epoch": 3}, tmp_path / "none.pth")
    with pytest.raises(ConvertError, match="no tensors found"):
        read_foreign_state(tmp_path / "none.pth")


def test_restorekit_file_is_not_converted_again(tmp_path: Path) -> None:
    net = make_rrdbnet(4)
    own = tmp_path / "own.safetensors"
    save_weights(net, own, WeightInfo("rrdbnet", {**TINY, "scale": 4}))
    with pytest.raises(ConvertError, match="already a restorekit weight file"):
        read_foreign_state(own)


# --- recognition --------------------------------------------------------------------------------------


def test_unknown_state_dict_names_keys_and_converters(tmp_path: Path) -> None:
    src = tmp_path / "linear.pth"
    torch.save(torch.nn.Linear(4, 2).state_dict(), src)
    with pytest.raises(ConvertError, match="no plugin recognises") as info:
        convert_checkpoint(src)
    message = str(info.value)
    assert "weight" in message and "esrgan" in message and str(src) in message


def test_detect_layout_ignores_other_networks() -> None:
    assert detect_layout(torch.nn.Conv2d(3, 3, 3).state_dict()) is None
    assert convert_esrgan_state_dict({"conv_first.weight": torch.ones(1)}) is None


@pytest.mark.parametrize("scale", [1, 2])
def test_original_x2_and_x1_without_unshuffle_match_spandrel(tmp_path: Path, scale: int) -> None:
    """Old-layout x2 (one upconv) and x1 (none), as many community '2x_'/'1x_' models are built."""
    torch.manual_seed(1)
    reference = SpandrelESRGAN(num_filters=16, num_blocks=1, scale=scale).eval()
    with torch.no_grad():
        for param in reference.parameters():
            param.add_(0.05 * torch.randn_like(param))
    src = tmp_path / f"old_x{scale}.pth"
    torch.save(reference.state_dict(), src)
    net, info = convert_checkpoint(src)
    assert info.args["scale"] == scale and info.args["pixel_unshuffle"] is False
    assert info.extra["source_layout"] == "esrgan-old"
    x = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        expected = reference(x)
        assert torch.allclose(net(x), expected, atol=1e-5)
    assert expected.shape[-2:] == (9 * scale, 11 * scale)
    out = convert_file(src, tmp_path / "old.safetensors")
    rebuilt, _ = load_network(out)
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), expected, atol=1e-5)


def test_esrgan_plus_is_refused_clearly(tmp_path: Path) -> None:
    reference = SpandrelESRGAN(num_filters=16, num_blocks=1, scale=4, plus=True)
    src = tmp_path / "plus.pth"
    torch.save(reference.state_dict(), src)
    with pytest.raises(ConvertError, match="ESRGAN\\+"):
        convert_checkpoint(src)


def test_truncated_esrgan_reports_missing_keys(tmp_path: Path) -> None:
    state = make_rrdbnet(4).state_dict()
    del state["conv_hr.weight"]
    src = tmp_path / "truncated.pth"
    torch.save(state, src)
    with pytest.raises(ConvertError, match="missing keys.*conv_hr.weight"):
        convert_checkpoint(src)


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    src = tmp_path / "net.pth"
    torch.save(make_rrdbnet(4).state_dict(), src)
    out = tmp_path / "net.safetensors"
    out.write_bytes(b"keep me")
    with pytest.raises(ConvertError, match="already exists"):
        convert_file(src, out)
    assert out.read_bytes() == b"keep me"
    convert_file(src, out, overwrite=True)
    assert read_info(out).name == "rrdbnet"
    with pytest.raises(ConvertError, match="must be a .safetensors"):
        convert_file(src, tmp_path / "net.pt")


# --- the command line, in a real process ------------------------------------------------------------

# Registers the command itself if the CLI does not have it yet, so the test runs the real app either way.
CLI = (
    "from restorekit.cli import app, main\n"
    "from restorekit.cli import convert\n"
    "if not any(c.name == 'convert' for c in app.registered_commands):\n"
    "    convert.register(app)\n"
    "main()\n"
)


def restore(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "400"}
    return subprocess.run(
        [sys.executable, "-c", CLI, *map(str, args)], capture_output=True, text=True, env=env, timeout=300
    )


def assert_clean_failure(proc: subprocess.CompletedProcess[str], message: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_cli_converts(tmp_path: Path) -> None:
    net = make_rrdbnet(4, seed=2)
    src = tmp_path / "RRDB_x4.pth"
    torch.save(to_old_layout(net), src)
    proc = restore("convert", src)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "RRDB_x4.safetensors"
    assert "rrdbnet" in proc.stdout and "esrgan-old" in proc.stdout and "x4" in proc.stdout
    rebuilt, info = load_network(out)
    assert info.args["num_blocks"] == 2
    x = torch.rand(1, 3, 5, 5)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), net(x))

    again = restore("convert", src, out)
    assert_clean_failure(again, "already exists")


def test_cli_refuses_bad_inputs(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pth"
    torch.save({"w": torch.ones(1), "x": Payload(marker)}, evil)
    proc = restore("convert", evil)
    assert_clean_failure(proc, "does not unpickle untrusted files")
    assert not marker.exists() and not (tmp_path / "evil.safetensors").exists()

    linear = tmp_path / "linear.pth"
    torch.save(torch.nn.Linear(3, 1).state_dict(), linear)
    assert_clean_failure(restore("convert", linear), "no plugin recognises")
    assert not (tmp_path / "linear.safetensors").exists()

    empty = tmp_path / "empty.pth"
    empty.touch()
    assert_clean_failure(restore("convert", empty), "empty file")

    assert_clean_failure(restore("convert", tmp_path / "absent.pth"), "no such file")
