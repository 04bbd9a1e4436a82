"""``restore eval`` and :mod:`restorekit.evaluation`: the published bicubic numbers, JSON, models, deblurring."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from restorekit.data.resize import imresize
from restorekit.evaluation import EvaluationError, evaluate, evaluate_super_resolution
from restorekit.inference.model import RestorationModel
from restorekit.plugins import registry
from restorekit.weights import WeightInfo, save_weights

# Published bicubic x4 (Y channel, 4-pixel border, MATLAB imresize): ../shared/data/README.md
SET5 = (28.42, 0.810)
BSD100 = (25.96, 0.668)
PSNR_TOL, SSIM_TOL = 0.02, 0.002
SR_KEYS = ("psnr_y", "ssim_y", "psnr_rgb")


def run_cli(*args: str | Path | int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "restorekit.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=600,
    )


def run_json(*args: str | Path | int) -> dict:
    result = run_cli(*args, "--json")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return json.loads(result.stdout)


def table_rows(stdout: str) -> dict[str, list[str]]:
    """The body rows of a rich table: first cell → the other cells."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells and cells[0] not in ("", "image"):
            rows[cells[0]] = cells[1:]
    return rows


def assert_published(mean: dict, published: tuple[float, float]) -> None:
    assert abs(mean["psnr_y"] - published[0]) <= PSNR_TOL, mean
    assert abs(mean["ssim_y"] - published[1]) <= SSIM_TOL, mean


# --- the published bicubic numbers ----------------------------------------------------------------


def test_bicubic_set5_from_shipped_lr_json(shared_data: Path) -> None:
    bench = shared_data / "sr-bench" / "Set5"
    doc = run_json("eval", "--model", "bicubic", "--data", bench / "HR", "--lr-dir", bench / "LR_bicubic", "--scale", 4)
    assert set(doc) >= {"task", "model", "scale", "data", "settings", "count", "images", "mean"}
    assert (doc["task"], doc["model"], doc["scale"], doc["count"]) == ("super_resolution", "bicubic", 4, 5)
    assert doc["settings"]["lr_source"] == "files" and doc["settings"]["border"] == 4
    assert doc["settings"]["lr_dir"].endswith("X4")  # the EDSR layout's scale folder was found
    assert [im["name"] for im in doc["images"]] == ["baby", "bird", "butterfly", "head", "woman"]
    for key in SR_KEYS:
        assert doc["mean"][key] == pytest.approx(sum(im[key] for im in doc["images"]) / 5)
    assert_published(doc["mean"], SET5)


def test_bicubic_set5_with_lr_made_by_imresize_table(shared_data: Path) -> None:
    # The EDSR root (HR/ beside LR_bicubic/) is understood; without --lr-dir the LR comes from imresize.
    result = run_cli("eval", "--model", "bicubic", "--data", shared_data / "sr-bench" / "Set5", "--scale", 4)
    assert result.returncode == 0, result.stderr
    rows = table_rows(result.stdout)
    assert set(rows) == {"baby", "bird", "butterfly", "head", "woman", "mean (5)"}
    psnr_y, ssim_y, _ = (float(v) for v in rows["mean (5)"])
    assert_published({"psnr_y": psnr_y, "ssim_y": ssim_y}, SET5)


def test_bicubic_bsd100_from_shipped_lr(shared_data: Path) -> None:
    # In-process (the CLI path is the same function, checked on Set5 above): 100 images are enough work.
    bench = shared_data / "sr-bench" / "BSD100"
    result = evaluate("bicubic", bench / "HR", lr_dir=bench / "LR_bicubic", scale=4)
    assert len(result.images) == 100 and result.settings["lr_source"] == "files"
    assert_published(result.mean, BSD100)


@pytest.mark.slow
def test_bicubic_bsd100_with_lr_made_by_imresize(shared_data: Path) -> None:
    result = evaluate_super_resolution("bicubic", shared_data / "sr-bench" / "BSD100" / "HR", scale=4)
    assert len(result.images) == 100 and result.settings["lr_source"] == "matlab_bicubic"
    assert_published(result.mean, BSD100)


# --- models --------------------------------------------------------------------------------------


def test_tiny_model_on_set5(shared_data: Path, tmp_path: Path) -> None:
    args = {"num_features": 8, "num_blocks": 1, "scale": 2}
    torch.manual_seed(0)
    net = registry("generators").build("srresnet", **args)
    weights = save_weights(
        net,
        tmp_path / "tiny.safetensors",
        WeightInfo(name="srresnet", args=args, task="super_resolution", scale=2, plugin="srgan"),
    )
    bench = shared_data / "sr-bench" / "Set5"
    # The scale comes from the model; the LR files are the X2 ones of the EDSR layout.
    result = run_cli("eval", "--model", weights, "--data", bench / "HR", "--lr-dir", bench / "LR_bicubic")
    assert result.returncode == 0, result.stderr
    assert "tiny x2" in result.stdout
    rows = table_rows(result.stdout)
    assert set(rows) - {"mean (5)"} == {"baby", "bird", "butterfly", "head", "woman"}
    assert all(len(cells) == 3 and all(math.isfinite(float(c)) for c in cells) for cells in rows.values())



def test_settings_that_do_not_fit_are_usage_errors(shared_data: Path) -> None:
    result = run_cli("eval", "--model", "bicubic", "--data", shared_data / "sr-bench" / "Set5" / "HR")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "needs a scale" in " ".join(result.stderr.split())


class MatlabBicubic(nn.Module):
    """A stand-in for a third-party plugin's network: MATLAB bicubic as a 'model'."""

    def __init__(self, *, scale: int) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return imresize(x, float(self.scale))


def test_any_network_through_restoration_model_scores_like_the_baseline(shared_data: Path, tmp_path: Path) -> None:
    """The model path (RestorationModel, nothing special-cased) uses the same crop, LR and rounding."""
    hr = tmp_path / "hr"
    hr.mkdir()
    for name in ("bird.png", "butterfly.png"):  # two of Set5, linked
        (hr / name).symlink_to(shared_data / "sr-bench" / "Set5" / "HR" / name)
    model = RestorationModel(MatlabBicubic(scale=4), WeightInfo(name="matlab_bicubic", args={"scale": 4}), tile=None)
    as_model = evaluate(model, hr)
    baseline = evaluate("bicubic", hr, scale=4)
    assert as_model.task == "super_resolution" and as_model.model == "matlab_bicubic"
    for key in SR_KEYS:
        # The baseline resizes in MATLAB's uint8 arithmetic, the network in float: a few hundredths of a dB.
        assert as_model.mean[key] == pytest.approx(baseline.mean[key], abs=0.01)
    with pytest.raises(EvaluationError, match="upscales x4"):
        evaluate(model, hr, scale=2)
    with pytest.raises(EvaluationError, match="needs a scale"):
        evaluate("bicubic", hr)
    with pytest.raises(EvaluationError, match="deblurring baseline"):
        evaluate("identity", hr, task="super_resolution")


# --- deblurring ----------------------------------------------------------------------------------


def independent_rgb_psnr(blur: Path, sharp: Path) -> float:
    a = np.asarray(Image.open(blur).convert("RGB"), dtype=np.float64)
    b = np.asarray(Image.open(sharp).convert("RGB"), dtype=np.float64)
    return 10 * math.log10(255.0**2 / np.mean((a - b) ** 2))


def test_deblurring_identity_baseline_on_gopro(shared_data: Path) -> None:
    root = shared_data / "deblur" / "gopro-avg8"
    doc = run_json("eval", "--model", "identity", "--data", root)  # a root with blur/ and sharp/
    assert (doc["task"], doc["model"], doc["scale"], doc["count"]) == ("deblurring", "identity", 1, 7)
    assert set(doc["mean"]) == {"psnr", "ssim"}
    names = sorted(p.stem for p in (root / "sharp").glob("*.png"))
    assert [im["name"] for im in doc["images"]] == names
    expected = [independent_rgb_psnr(root / "blur" / f"{n}.png", root / "sharp" / f"{n}.png") for n in names]
    assert [im["psnr"] for im in doc["images"]] == pytest.approx(expected, abs=1e-6)
    # The blurred input's own scores (the floor a deblurring model must beat): 27.10 dB / 0.824.
    assert doc["mean"]["psnr"] == pytest.approx(27.098, abs=0.005)
    assert doc["mean"]["ssim"] == pytest.approx(0.8241, abs=0.0005)


def test_deblurring_from_two_folders_matches_the_root_layout(shared_data: Path, tmp_path: Path) -> None:
    # One pair, linked (not copied) into both layouts.
    source = shared_data / "deblur" / "gopro-avg8"
    names = sorted(p.name for p in (source / "sharp").glob("*.png"))[:1]
    for kind in ("blur", "sharp"):
        (tmp_path / "root" / kind).mkdir(parents=True)
        (tmp_path / f"only-{kind}").mkdir()
        for name in names:
            (tmp_path / "root" / kind / name).symlink_to(source / kind / name)
            (tmp_path / f"only-{kind}" / name).symlink_to(source / kind / name)
    folders = evaluate("none", tmp_path / "only-sharp", blur_dir=tmp_path / "only-blur")
    gopro = evaluate("identity", tmp_path / "root")
    assert len(folders.images) == 1 and folders.mean == gopro.mean
    with pytest.raises(EvaluationError, match="super-resolution baseline"):
        evaluate("bicubic", tmp_path / "root", task="deblurring")
    with pytest.raises(EvaluationError, match="for super-resolution"):
        evaluate("identity", tmp_path / "root", lr_dir=tmp_path / "only-blur")
