"""``restore apply`` as a user runs it: real CLI processes, tiny networks, real files on disk."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from restorekit.data.images import Picture, read_picture, write_picture
from restorekit.plugins import registry
from restorekit.weights import WeightInfo, load_network, save_weights

SR_ARGS = {"num_features": 8, "num_blocks": 1, "scale": 2}
DEBLUR_ARGS = {"num_features": 4, "num_blocks": 1, "use_dropout": False}
# SRResNet's receptive-field radius in input pixels: 9x9 head (4) + residual block (2) + trunk conv (1)
# + sub-pixel conv (1) + 9x9 tail at x2 (2) = 10. The overlap must cover it for seam-free tiles.
OVERLAP = 12
TILE = 40


def run_cli(*args: str | Path | int, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``restore`` in a child process (which inherits RESTOREKIT_HOME unless *env* is given)."""
    return subprocess.run(
        [sys.executable, "-m", "restorekit.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env if env is not None else dict(os.environ),
        timeout=600,
    )


def one_line_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def save_tiny_sr(path: Path) -> Path:
    torch.manual_seed(0)
    net = registry("generators").build("srresnet", **SR_ARGS)
    info = WeightInfo(name="srresnet", args=SR_ARGS, task="super_resolution", scale=2, plugin="srgan")
    return save_weights(net, path, info)


def save_tiny_deblur(path: Path) -> Path:
    torch.manual_seed(0)
    net = registry("generators").build("deblurgan_resnet", **DEBLUR_ARGS)
    info = WeightInfo(name="deblurgan_resnet", args=DEBLUR_ARGS, task="deblurring", scale=1, plugin="deblurgan")
    return save_weights(net, path, info)


def noise_image(h: int, w: int, channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    smooth = np.stack([xx, yy, (xx + yy) / 2, 1 - xx][:channels], axis=-1)
    return (np.clip(0.7 * smooth + 0.3 * rng.random((h, w, channels)), 0, 1) * 255).astype(np.uint8)


def srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


# --- one folder run, checked from several sides ----------------------------------------------------


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``restore apply`` over a folder of every kind of image plus two broken files, into ``-o out``."""
    root = tmp_path_factory.mktemp("apply-folder")
    weights = save_tiny_sr(root / "tiny-sr.safetensors")
    src = root / "photos"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(noise_image(20, 26, 3, 1)).save(src / "photo.jpg", quality=95)
    Image.fromarray(noise_image(18, 22, 4, 2)).save(src / "rgba.png")
    Image.fromarray(noise_image(21, 19, 3, 3)[..., 0]).save(src / "gray.png")
    Image.fromarray(noise_image(16, 20, 3, 4)).save(src / "icc.png", icc_profile=srgb_profile())
    deep = torch.from_numpy(np.random.default_rng(5).random((3, 14, 18)).astype(np.float32))
    write_picture(Picture(rgb=deep, bit_depth=16, mode="RGB", format="PNG"), src / "deep.png")
    Image.fromarray(noise_image(17, 23, 3, 6)).save(src / "sub" / "nested.png")
    Image.fromarray(noise_image(70, 90, 3, 7)).save(src / "big.png")  # larger than a tile: several tiles
    Image.fromarray(noise_image(12, 12, 3, 8)).save(src / "kept.png")
    good = (src / "photo.jpg").read_bytes()
    (src / "broken.jpg").write_bytes(good[: len(good) // 3])  # truncated
    (src / "empty.png").write_bytes(b"")
    (src / "notes.txt").write_text("not an image; folders are searched for images only")

    out = root / "out"
    out.mkdir()
    Image.new("RGB", (3, 3), (255, 0, 0)).save(out / "kept.png")  # an earlier output: must be kept
    env = dict(os.environ, RESTOREKIT_HOME=str(root / "home"))
    result = run_cli(
        "apply", "--model", weights, src, "-o", out, "--tile", TILE, "--overlap", OVERLAP, "--batch", 2, env=env
    )
    return {"src": src, "out": out, "weights": weights, "result": result}


def test_folder_with_bad_files_restores_the_others_and_exits_1(folder_run: dict) -> None:
    result = folder_run["result"]
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    errors = one_line_errors(result.stderr)
    assert any("broken.jpg" in line for line in errors), result.stderr
    assert any("empty.png" in line and "empty file" in line for line in errors), result.stderr
    assert "2 of 10 images failed" in result.stderr
    assert "notes.txt" not in result.stdout + result.stderr
    out = folder_run["out"]
    assert not (out / "broken.jpg").exists() and not (out / "empty.png").exists()
    assert not [p for p in out.rglob(".*")], "temporary files left behind"


def test_outputs_keep_format_alpha_depth_grayscale_and_icc(folder_run: dict) -> None:
    src, out = folder_run["src"], folder_run["out"]
    for name in ("photo.jpg", "rgba.png", "gray.png", "icc.png", "deep.png", "sub/nested.png", "big.png"):
        with Image.open(src / name) as a, Image.open(out / name) as b:
            assert b.size == (a.size[0] * 2, a.size[1] * 2), name
            assert b.format == a.format, name
    with Image.open(out / "rgba.png") as im:
        assert im.mode == "RGBA"
    with Image.open(out / "gray.png") as im:
        assert im.mode == "L"
    with Image.open(src / "icc.png") as a, Image.open(out / "icc.png") as b:
        assert a.info["icc_profile"] and b.info.get("icc_profile") == a.info["icc_profile"]
    deep = read_picture(out / "deep.png")
    assert deep.bit_depth == 16 and deep.rgb.shape == (3, 28, 36)
    # Real 16-bit output: values between the 8-bit levels exist.
    levels = deep.rgb.numpy() * 65535
    assert np.any(levels % 257 != 0)


def test_existing_output_is_kept_without_overwrite(folder_run: dict) -> None:
    result, out = folder_run["result"], folder_run["out"]
    with Image.open(out / "kept.png") as im:
        assert im.size == (3, 3) and im.getpixel((1, 1)) == (255, 0, 0)
    assert f"{out / 'kept.png'}: exists, skipped (use --overwrite)" in result.stderr


def test_tiled_output_matches_whole_image_pass(folder_run: dict) -> None:
    """The multi-tile CLI result equals the network run on the whole image (up to 8-bit rounding)."""
    net, _ = load_network(folder_run["weights"])
    with Image.open(folder_run["src"] / "big.png") as im:
        x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255).permute(2, 0, 1)
    with torch.no_grad():
        whole = net(x[None])[0].clamp(0, 1)
    with Image.open(folder_run["out"] / "big.png") as im:
        tiled = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255).permute(2, 0, 1)
    assert tiled.shape == whole.shape
    assert float((tiled - whole).abs().max()) <= 1 / 255 + 1e-6


# --- other runs ---------------------------------------------------------------------------------


def test_deblurring_model_keeps_size_writes_next_to_inputs_and_overwrites(tmp_path: Path) -> None:
    weights = save_tiny_deblur(tmp_path / "deblur.safetensors")
    shots = tmp_path / "shots"
    shots.mkdir()
    Image.fromarray(noise_image(22, 30, 3, 1)).save(shots / "a.png")
    Image.fromarray(noise_image(25, 19, 3, 2)).save(shots / "b.png")
    Image.new("RGB", (2, 2)).save(shots / "a_deblur.png")  # replaced because of --overwrite
    # A quoted pattern, as the shell leaves it on Windows: expanded by restore itself.
    result = run_cli("apply", "-m", weights, str(shots / "*.png"), "--overwrite")
    assert result.returncode == 0, result.stderr
    for name, size in (("a", (30, 22)), ("b", (19, 25))):
        with Image.open(shots / f"{name}_deblur.png") as im:
            assert im.size == size and im.format == "PNG"
    # The earlier output matched the pattern too, but is not restored again.
    assert not (shots / "a_deblur_deblur.png").exists()


def test_outscale_and_format(tmp_path: Path) -> None:
    weights = save_tiny_sr(tmp_path / "tiny-sr.safetensors")
    Image.fromarray(noise_image(20, 16, 3, 3)).save(tmp_path / "photo.png")
    result = run_cli(
        "apply", "-m", weights, tmp_path / "photo.png", "--outscale", "3", "--format", "webp", "--tile", "0"
    )
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "photo_tiny-sr.webp") as im:
        assert im.format == "WEBP" and im.size == (48, 60)


def test_unwritable_output_folder_is_one_error(tmp_path: Path) -> None:
    weights = tmp_path / "unused.safetensors"  # never loaded: the output folder is checked first
    Image.fromarray(noise_image(8, 8, 3, 0)).save(tmp_path / "photo.png")
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file where a folder is needed")
    result = run_cli("apply", "-m", weights, tmp_path / "photo.png", "-o", blocker / "out")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(one_line_errors(result.stderr)) == 1
    assert "cannot create the output folder" in " ".join(result.stderr.split())


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write into any folder")
def test_read_only_output_folder_is_one_error(tmp_path: Path) -> None:
    Image.fromarray(noise_image(8, 8, 3, 0)).save(tmp_path / "photo.png")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        result = run_cli("apply", "-m", tmp_path / "unused.safetensors", tmp_path / "photo.png", "-o", locked)
    finally:
        locked.chmod(0o700)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "not writable" in " ".join(result.stderr.split())


def test_model_by_store_name(tmp_path: Path, _isolated_home: Path) -> None:
    # The autouse fixture set RESTOREKIT_HOME in os.environ; child processes inherit it.
    assert os.environ["RESTOREKIT_HOME"] == str(_isolated_home)
    weights = save_tiny_sr(tmp_path / "trained.safetensors")
    added = run_cli("models", "add", "tinysr", weights)
    assert added.returncode == 0, added.stderr
    assert list((_isolated_home / "models" / "tinysr").glob("*.safetensors"))
    Image.fromarray(noise_image(10, 12, 3, 0)).save(tmp_path / "photo.png")
    result = run_cli("apply", "--model", "tinysr", tmp_path / "photo.png")
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "photo_tinysr.png") as im:
        assert im.size == (24, 20)


def test_unknown_model_gives_the_store_message(tmp_path: Path) -> None:
    Image.fromarray(noise_image(8, 8, 3, 0)).save(tmp_path / "photo.png")
    result = run_cli("apply", "--model", "deblurgan", tmp_path / "photo.png")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    message = " ".join(result.stderr.split())
    assert "no model named 'deblurgan'" in message and "restore models add deblurgan" in message
    assert not (tmp_path / "photo_deblurgan.png").exists()


def test_discriminator_weights_are_refused(tmp_path: Path) -> None:
    args = {"num_features": 4, "num_layers": 1}
    critic = registry("discriminators").build("patchgan", **args)
    weights = save_weights(
        critic, tmp_path / "critic.safetensors", WeightInfo(name="patchgan", args=args, kind="discriminator")
    )
    Image.fromarray(noise_image(8, 8, 3, 0)).save(tmp_path / "photo.png")
    result = run_cli("apply", "--model", weights, tmp_path / "photo.png")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "not a generator" in " ".join(result.stderr.split())


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    # Checked before anything is loaded: no weights needed.
    result = run_cli("apply", "-m", "x", tmp_path / "missing.png", "--tile", "30", "--overlap", "12")
    assert result.returncode == 2
    assert "must be larger than 3 × --overlap" in " ".join(result.stderr.split())
    result = run_cli("apply", "-m", "x", tmp_path / "missing.png")
    assert result.returncode == 2
    assert "no such file or folder" in " ".join(result.stderr.split()) and "Traceback" not in result.stderr
