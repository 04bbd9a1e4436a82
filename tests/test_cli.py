"""The `restore` command as users run it: real processes, real files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from restorekit.plugins import registry
from restorekit.weights import WeightInfo, save_weights


def restore(*args: str, env_home: Path | None = None) -> subprocess.CompletedProcess:
    import os

    env = dict(os.environ)
    if env_home is not None:
        env["RESTOREKIT_HOME"] = str(env_home)
    env["COLUMNS"] = "200"
    return subprocess.run([sys.executable, "-m", "restorekit.cli", *args], capture_output=True, text=True, env=env)


def test_version():
    from restorekit import __version__

    out = restore("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"restorekit {__version__}"


def test_list_shows_components_with_plugins():
    out = restore("list")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    for name, kind, plugin in [
        ("srresnet", "generator", "srgan"),
        ("rrdbnet", "generator", "esrgan"),
        ("patchgan", "discriminator", "deblurgan"),
        ("perceptual", "loss", "core"),
        ("super_resolution", "task", "core"),
        ("quickstart", "recipe", "core"),
    ]:
        assert any(name in line and kind in line and plugin in line for line in lines), name


def test_list_one_kind_and_unknown_kind():
    out = restore("list", "losses")
    assert out.returncode == 0 and "wgan_gp" in out.stdout and "srresnet" not in out.stdout
    out = restore("list", "gizmos")
    assert out.returncode == 1 and "unknown kind 'gizmos'" in out.stderr


def test_plugins_table():
    out = restore("plugins")
    assert out.returncode == 0
    for name in ("core", "srgan", "esrgan", "deblurgan", "rdn"):
        assert any(line.split("│")[1].strip() == name and "loaded" in line for line in out.stdout.splitlines() if "│" in line)


@pytest.fixture()
def weights(tmp_path: Path) -> Path:
    args = {"num_features": 8, "num_blocks": 1, "scale": 2}
    net = registry("generators").build("srresnet", **args)
    path = tmp_path / "tiny.safetensors"
    save_weights(net, path, WeightInfo("srresnet", args, plugin="srgan", task="super_resolution", scale=2, recipe_name="tiny"))
    return path


def test_info_rebuilds_from_file(weights):
    out = restore("info", str(weights))
    assert out.returncode == 0, out.stderr
    assert "srresnet" in out.stdout and "x2" in out.stdout and "super_resolution" in out.stdout
    assert f"{sum(p.numel() for p in registry('generators').build('srresnet', num_features=8, num_blocks=1, scale=2).parameters()):,}" in out.stdout


def test_info_bad_files(tmp_path, weights):
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    out = restore("info", str(empty))
    assert out.returncode == 1 and "empty file" in out.stderr and "Traceback" not in out.stderr
    out = restore("info", str(tmp_path / "missing.safetensors"))
    assert out.returncode == 1 and "no such file" in out.stderr
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 100)
    out = restore("info", str(junk))
    assert out.returncode == 1 and "not a readable safetensors file" in out.stderr and "Traceback" not in out.stderr
    # a safetensors file whose tensors do not fit the network it names
    from safetensors.torch import save_file

    import json
    import torch

    wrong = tmp_path / "wrong.safetensors"
    meta = WeightInfo("srresnet", {"num_features": 8, "num_blocks": 1, "scale": 2}).to_metadata()
    save_file({"head.0.weight": torch.zeros(1)}, str(wrong), metadata=meta)
    out = restore("info", str(wrong))
    assert out.returncode == 1 and "missing keys" in out.stderr and "unexpected keys" in out.stderr
    assert json.loads(meta["args"])["num_blocks"] == 1


def test_models_add_and_list(weights, tmp_path):
    home = tmp_path / "home"
    out = restore("models", "add", "mine", str(weights), env_home=home)
    assert out.returncode == 0, out.stderr
    out = restore("models", env_home=home)
    assert out.returncode == 0 and "mine" in out.stdout and "user" in out.stdout
    out = restore("models", "add", "bad", str(tmp_path / "nope.safetensors"), env_home=home)
    assert out.returncode == 1 and "no such file" in out.stderr


def test_apply_and_eval_share_one_declaration_of_the_inference_flags():
    """--tile/--overlap/--batch/--device/--precision: same names, defaults and help in both commands."""
    import typer.main

    from restorekit.cli import app
    from restorekit.inference.options import CLI_NAMES, InferenceOptions

    root = typer.main.get_command(app)
    flags = set(CLI_NAMES.values())

    def declared(command: str) -> dict[str, tuple]:
        params = root.commands[command].params  # type: ignore[attr-defined]
        return {p.opts[0]: (p.name, p.default, p.help) for p in params if p.opts[0] in flags}

    apply_flags, eval_flags = declared("apply"), declared("eval")
    assert set(apply_flags) == flags and apply_flags == eval_flags
    assert apply_flags["--batch"][1] == InferenceOptions().batch_size
    assert apply_flags["--precision"][1] == InferenceOptions().precision
    assert apply_flags["--tile"][1] is None  # not given: the model decides (see InferenceOptions.tile)


def test_eval_usage_errors_name_the_flag():
    out = restore("eval", "-m", "bicubic", "--data", ".", "--scale", "2", "--tile", "30", "--overlap", "12")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "--tile 30 must be larger than 3 × --overlap (36)" in " ".join(out.stderr.split())
    out = restore("eval", "-m", "bicubic", "--data", ".", "--scale", "2", "--precision", "fp8")
    assert out.returncode == 2 and "--precision must be one of auto, fp32, fp16, bf16" in " ".join(out.stderr.split())
