"""Weights from every source work with `restore apply` and `restore eval`: converted ESRGAN .pth
files and RDN weights (the ESRGAN and RDN issues' acceptance checks), through real CLI processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from PIL import Image

from restorekit.plugins import registry
from restorekit.weights import WeightInfo, save_weights


def restore(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "300"}
    return subprocess.run(
        [sys.executable, "-m", "restorekit.cli", *map(str, args)], capture_output=True, text=True, env=env
    )


def write_photo(path: Path, size: tuple[int, int] = (40, 32)) -> Path:
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size[1]), torch.linspace(0, 1, size[0]), indexing="ij")
    rgb = torch.stack([xx, yy, 1 - xx * yy])
    Image.fromarray((rgb * 255).byte().permute(1, 2, 0).numpy()).save(path)
    return path


def test_converted_esrgan_pth_applies_and_evaluates(tmp_path):
    # A community-style BasicSR checkpoint: params_ema wrapper, BasicSR key names, x4.
    net = registry("generators").build("rrdbnet", num_features=8, num_blocks=1, growth_channels=4, scale=4)
    pth = tmp_path / "community_x4.pth"
    torch.save({"params_ema": net.state_dict()}, pth)
    photo = write_photo(tmp_path / "photo.png")

    out = restore("apply", "--model", pth, photo, "-o", tmp_path / "out")
    assert out.returncode == 0, out.stderr
    assert Image.open(tmp_path / "out" / "photo.png").size == (160, 128)

    converted = tmp_path / "community_x4.safetensors"
    assert restore("convert", pth, converted).returncode == 0
    hr = tmp_path / "hr"
    hr.mkdir()
    write_photo(hr / "a.png", (48, 40))
    out = restore("eval", "--model", converted, "--data", hr, "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["scale"] == 4 and len(result["images"]) == 1


def test_rdn_weights_round_trip_and_apply(tmp_path):
    args = {"G0": 8, "D": 2, "C": 2, "G": 4, "scale": 3}
    net = registry("generators").build("rdn", **args)
    weights = tmp_path / "rdn.safetensors"
    save_weights(net, weights, WeightInfo("rdn", args, plugin="rdn", task="super_resolution", scale=3))
    info = restore("info", weights)
    assert info.returncode == 0 and "rdn" in info.stdout and "x3" in info.stdout
    photo = write_photo(tmp_path / "photo.png", (21, 17))
    out = restore("apply", "--model", weights, photo)
    assert out.returncode == 0, out.stderr
    result = Image.open(tmp_path / "photo_rdn.png")
    assert result.size == (63, 51)
