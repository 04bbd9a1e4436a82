"""``restore compare``: the report's strip for arbitrary images, with their metrics under each tile."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from restorekit.data.images import load_rgb
from restorekit.data.resize import imresize
from restorekit.data.sources import to_uint8
from restorekit.metrics import psnr, ssim


def restore(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "restorekit.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"}, timeout=600)


@pytest.fixture()
def images(photo_dir: Path, tmp_path: Path) -> dict[str, Path]:
    """An HR photo, its half-size LR (MATLAB bicubic, 8 bits) and a noisy copy."""
    hr_path = photo_dir / "photo0.png"
    hr = load_rgb(hr_path)
    lr = imresize(to_uint8(hr), 0.5)
    noisy = (hr + 0.05 * torch.randn(hr.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    paths = {"hr": hr_path, "lr": tmp_path / "lr.png", "noisy": tmp_path / "noisy.png"}
    Image.fromarray(lr.permute(1, 2, 0).numpy()).save(paths["lr"])
    Image.fromarray(to_uint8(noisy).permute(1, 2, 0).numpy()).save(paths["noisy"])
    return paths


def test_strip_and_metrics_of_arbitrary_images(images, tmp_path):
    out = tmp_path / "strip.png"
    done = restore("compare", images["lr"], images["noisy"], "--reference", images["hr"], "--metrics", "psnr_y,ssim_y",
                   "--border", "2", "--crop", "24", "--at", "10,8", "--zoom", "2", "--labels", "LR,noisy", "-o", out, "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["crop"] == {"x": 10, "y": 8, "width": 24, "height": 24}
    hr = load_rgb(images["hr"])
    upscaled = imresize(to_uint8(load_rgb(images["lr"])), 2.0).float() / 255  # what the LR tile shows
    noisy = load_rgb(images["noisy"])
    rows = {row["label"]: row for row in doc["images"]}
    assert list(rows) == ["LR (bicubic x2)", "noisy", "reference"]
    for label, shown in (("LR (bicubic x2)", upscaled), ("noisy", noisy)):
        assert rows[label]["psnr_y"] == float(psnr(shown, hr, border=2))
        assert rows[label]["ssim_y"] == float(ssim(shown, hr, border=2))
    assert set(rows["reference"]) == {"image", "label"}  # nothing to compare the reference with

    strip = np.asarray(Image.open(out).convert("RGB"))
    tile, gap = 48, 4
    assert strip.shape[1] == 3 * tile + 2 * gap and strip.shape[0] > tile
    for index, shown in enumerate((upscaled, noisy, hr)):
        left = index * (tile + gap)
        expected = to_uint8(shown[:, 8:32, 10:34]).permute(1, 2, 0).numpy()
        assert np.array_equal(strip[:tile:2, left : left + tile : 2], expected), index

    again = restore("compare", images["noisy"], "-r", images["hr"], "-o", out)
    assert again.returncode == 1 and again.stderr.strip() == f"error: {out} exists; give --overwrite to replace it, or another --output"


def test_images_that_do_not_fit_and_metrics_without_reference_are_refused(images, tmp_path):
    # The real command in-process (typer's runner): the same parsing, error handling and exit codes.
    from typer.testing import CliRunner

    from restorekit.cli import app

    def run(*args: str | Path):
        return CliRunner().invoke(app, ["compare", *map(str, args)], env={"COLUMNS": "300"})

    odd = tmp_path / "odd.png"
    Image.new("RGB", (30, 17)).save(odd)
    done = run(images["noisy"], odd, "-r", images["hr"], "-o", tmp_path / "x.png")
    assert done.exit_code == 1 and isinstance(done.exception, SystemExit)
    assert done.output.strip() == (
        f"error: {odd}: 30x17 does not match the reference {images['hr']} (52x44), nor divides it by a whole factor")
    done = run(images["noisy"], images["lr"], "--metrics", "psnr_y,niqe", "-o", tmp_path / "y.png")
    assert done.exit_code == 2 and done.output.strip() == "error: psnr_y compares with a ground truth: give --reference"
    done = run(images["noisy"], "--metrics", "psnr_yy", "-o", tmp_path / "y.png")
    assert done.exit_code == 2 and done.output.strip() == "error: --metrics: unknown metric 'psnr_yy'; did you mean psnr_y, psnr, psnr_rgb?"
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "y.png").exists()
