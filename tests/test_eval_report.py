"""``restore eval --report DIR`` with several ``--model``: JSON, per-image CSV, strips of the same crop,
and an HTML page whose numbers are the JSON's."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from restorekit.evaluation import EvaluationError, evaluate
from restorekit.evaluation.loop import to_8bit
from restorekit.evaluation.report import Tile, choose_crop, compose_strip, evaluate_report, format_value
from restorekit.plugins import registry
from restorekit.tasks.super_resolution import SuperResolution
from restorekit.weights import WeightInfo, save_weights


def _weights(path: Path, seed: int, scale: int = 2) -> Path:
    torch.manual_seed(seed)
    args = {"num_features": 8, "num_blocks": 1, "scale": scale}
    net = registry("generators").build("srresnet", **args)
    info = WeightInfo("srresnet", args, plugin="srgan", task="super_resolution", scale=scale, recipe_name="tiny")
    return save_weights(net, path, info)


def _photos(folder: Path) -> Path:
    """Three small textured RGB photos (conftest's ``photo_dir``, made once for the module)."""
    folder.mkdir(parents=True)
    gen = torch.Generator().manual_seed(0)
    for i in range(3):
        yy, xx = torch.meshgrid(torch.linspace(0, 1, 44), torch.linspace(0, 1, 52), indexing="ij")
        base = torch.stack([xx, yy, (xx + yy) / 2]) * 0.7 + 0.15 * torch.rand(3, 44, 52, generator=gen)
        Image.fromarray((base.clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy()).save(folder / f"photo{i}.png")
    return folder


class Cells(HTMLParser):
    """Every ``<td data-value=...>`` cell of a page: (model, image, metric) -> (exact value, shown text)."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str, str, str], tuple[str, str]] = {}
        self.images: list[str] = []
        self._open: tuple[str, str, str, str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "td" and "data-value" in attrs:
            self._open = (attrs["data-model"], attrs["data-image"], attrs["data-metric"], attrs["data-value"])
        if tag == "img":
            self.images.append(attrs["src"])

    def handle_data(self, data):
        if self._open is not None:
            model, image, metric, value = self._open
            self.cells[(model, image, metric)] = (value, data)
            self._open = None


@pytest.fixture(scope="module")
def report_run(tmp_path_factory):
    """One real ``restore eval`` process: bicubic and two tiny models on three photos, with a report."""
    root = tmp_path_factory.mktemp("report")
    photos = _photos(root / "photos")
    a, b = _weights(root / "tiny_a.safetensors", 0), _weights(root / "tiny_b.safetensors", 1)
    out = root / "report"
    env = {**os.environ, "RESTOREKIT_HOME": str(root / "home"), "RESTOREKIT_OFFLINE": "1", "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-m", "restorekit.cli", "eval", "-m", "bicubic", "-m", str(a), "-m", str(b),
         "--data", str(photos), "--scale", "2", "--metrics", "psnr,ssim,psnr_rgb", "--report", str(out),
         "--crop", "16", "--zoom", "3"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return {"photos": photos, "a": a, "b": b, "out": out, "done": done}


def test_the_report_files_and_the_summary_table(report_run):
    out, done = report_run["out"], report_run["done"]
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "per_image.csv", "report.json", "strips"]
    doc = json.loads((out / "report.json").read_text())
    assert [m["model"] for m in doc["models"]] == ["tiny_a", "tiny_b"]
    assert doc["input"]["label"] == "bicubic x2 (input)" and doc["input"]["model"] == "bicubic"
    assert [m["name"] for m in doc["metrics"]] == ["psnr_y", "ssim_y", "psnr_rgb"]
    assert all(m["border"] == 2 and m["higher_is_better"] for m in doc["metrics"])
    # The models' numbers are restore eval's, one model at a time.
    for model, entry in zip((report_run["a"], report_run["b"]), doc["models"]):
        alone = evaluate(str(model), report_run["photos"], metrics=["psnr", "ssim", "psnr_rgb"])
        assert entry["mean"] == alone.mean
    assert doc["input"]["mean"] == evaluate("bicubic", report_run["photos"], scale=2, metrics=["psnr", "ssim", "psnr_rgb"]).mean
    # The summary: the input, then one row per model, with the directions.
    assert "PSNR-Y (dB) ↑" in done.stdout and "bicubic x2 (input)" in done.stdout
    for entry in doc["models"]:
        row = next(line for line in done.stdout.splitlines() if f" {entry['model']} " in line)
        assert format_value("psnr_y", entry["mean"]["psnr_y"]) in row
    assert str(out / "index.html") in done.stderr


def test_csv_numbers_equal_the_json(report_run):
    out = report_run["out"]
    doc = json.loads((out / "report.json").read_text())
    rows = list(csv.DictReader((out / "per_image.csv").open()))
    entries = {"bicubic": doc["input"], **{m["model"]: m for m in doc["models"]}}
    assert len(rows) == 3 * len(entries)
    for row in rows:
        entry = entries[row["model"]]
        assert row["role"] == ("input" if row["model"] == "bicubic" else "model")
        image = next(i for i in entry["images"] if i["name"] == row["image"])
        for metric in ("psnr_y", "ssim_y", "psnr_rgb"):
            value = float(row[metric])
            assert value == image[metric] if image[metric] is not None else math.isinf(value), (row, metric)


def test_html_numbers_equal_the_json(report_run):
    out = report_run["out"]
    doc = json.loads((out / "report.json").read_text())
    page = Cells()
    page.feed((out / "index.html").read_text())
    entries = [doc["input"], *doc["models"]]
    labels = [doc["input"]["label"], *(m["model"] for m in doc["models"])]
    checked = 0
    for label, entry in zip(labels, entries):
        for metric in ("psnr_y", "ssim_y", "psnr_rgb"):
            exact, shown = page.cells[(label, "mean", metric)]
            assert float(exact) == entry["mean"][metric] and shown == format_value(metric, entry["mean"][metric])
            for image in entry["images"]:
                exact, shown = page.cells[(label, image["name"], metric)]
                assert float(exact) == image[metric] and shown == format_value(metric, image[metric])
                checked += 2
    assert checked == 2 * 3 * 3 * 3
    assert page.images == [f"strips/photo{i}.png" for i in range(3)]
    assert all((out / src).is_file() for src in page.images)


def test_strips_show_the_same_crop_of_input_models_and_ground_truth(report_run):
    out, photos = report_run["out"], report_run["photos"]
    doc = json.loads((out / "report.json").read_text())
    task = SuperResolution(scale=2)
    sample = task.benchmark(photos)[0]
    crop = doc["crops"][sample.name]
    assert (crop["height"], crop["width"]) == (16, 16)
    assert (crop["y"], crop["x"], 16, 16) == choose_crop(sample.target, 16)
    strip = torch.from_numpy(np.asarray(Image.open(out / doc["strips"][sample.name]).convert("RGB")).copy())
    tile, gap = 16 * 3, 4
    assert strip.shape[1] == 4 * tile + 3 * gap  # input, tiny_a, tiny_b, ground truth

    def shown(index: int) -> torch.Tensor:  # one tile, de-zoomed (nearest: every 3rd pixel)
        left = index * (tile + gap)
        return strip[:tile:3, left : left + tile : 3].permute(2, 0, 1)

    def expected(image: torch.Tensor) -> torch.Tensor:
        y, x = crop["y"], crop["x"]
        return (image[:, y : y + 16, x : x + 16].clamp(0, 1) * 255 + 0.5).floor().to(torch.uint8)

    bicubic = to_8bit(task.baseline("bicubic", sample.input))
    assert torch.equal(shown(0), expected(bicubic))
    assert torch.equal(shown(3), expected(sample.target))
    from restorekit.inference.model import RestorationModel

    restored = to_8bit(RestorationModel.load(str(report_run["a"])).restore_tensor(sample.input))
    assert torch.equal(shown(1), expected(restored))


def test_models_of_different_scales_are_refused_and_the_baseline_takes_the_models_scale(tmp_path, photo_dir):
    a, b = _weights(tmp_path / "x2.safetensors", 0, 2), _weights(tmp_path / "x4.safetensors", 0, 4)
    with pytest.raises(EvaluationError, match="'x4' is super-resolution x4, but 'x2' is super-resolution x2"):
        evaluate_report([str(a), str(b)], photo_dir)
    # bicubic needs a scale, which the model gives: no --scale needed, the order given is kept.
    report = evaluate_report(["bicubic", str(a)], photo_dir)
    assert report.input_result.model == "bicubic" and report.input_result.scale == 2
    assert [r.model for r in report.results] == ["x2"]


def test_a_single_baseline_report_and_a_report_path_that_is_a_file(tmp_path, photo_dir):
    report = evaluate_report(["bicubic"], photo_dir, scale=2, directory=tmp_path / "r", crop=8, zoom=1)
    assert report.input_result is None and [r.model for r in report.results] == ["bicubic"]
    assert len(list((tmp_path / "r" / "strips").iterdir())) == 3
    busy = tmp_path / "file"
    busy.write_text("x")
    from typer.testing import CliRunner

    from restorekit.cli import app

    done = CliRunner().invoke(app, ["eval", "-m", "bicubic", "--data", str(photo_dir), "--scale", "2", "--report", str(busy)],
                              env={"COLUMNS": "300"})
    assert done.exit_code == 2 and done.output.strip() == f"error: --report {busy}: exists and is not a folder"


def test_compose_strip_refuses_tiles_of_different_sizes():
    with pytest.raises(ValueError, match="tiles differ in size"):
        compose_strip([Tile("a", torch.zeros(3, 8, 8)), Tile("b", torch.zeros(3, 8, 9))])
    image = compose_strip([Tile("a very long label that does not fit", torch.ones(3, 8, 8), ["PSNR 30.00"])], zoom=4)
    assert image.size[0] == 32 and image.getpixel((0, 0)) == (255, 255, 255)


class MeanLevel:
    """A no-reference score: the mean grey level on 0..255 (what a plugin's NIQE-like metric looks like)."""

    def __init__(self, *, border: int = 0):
        self.border = border

    def __call__(self, output, target=None):
        b = self.border
        return (output[..., b:-b, b:-b] if b else output).double().flatten(-3).mean(-1) * 255


def test_no_reference_metrics_also_score_the_ground_truth(tmp_path, photo_dir):
    import types

    from restorekit.hookspecs import hookimpl
    from restorekit.plugins import get_plugins, reset_plugins

    plugin = types.ModuleType("restorekit_level")
    plugin.register_metrics = hookimpl(lambda register: register("level", MeanLevel, higher_is_better=True,
                                                                 needs_reference=False, colour="grey"))
    get_plugins().add_plugin(plugin, "level")
    try:
        report = evaluate_report([_weights(tmp_path / "m.safetensors", 0)], photo_dir, metrics=["psnr", "level"],
                                 directory=tmp_path / "r", crop=16)
    finally:
        reset_plugins()
    doc = json.loads((tmp_path / "r" / "report.json").read_text())
    task = SuperResolution(scale=2)
    for sample in task.benchmark(photo_dir):
        expected = float(MeanLevel(border=2)(sample.target))
        assert doc["reference"]["images"][sample.name] == {"level": expected}
    assert doc["reference"]["mean"]["level"] == sum(doc["reference"]["images"][n]["level"] for n in doc["reference"]["images"]) / 3
    page = Cells()
    page.feed((tmp_path / "r" / "index.html").read_text())
    for name, scores in [("mean", doc["reference"]["mean"]), *doc["reference"]["images"].items()]:
        exact, shown = page.cells[("ground truth", name, "level")]
        assert float(exact) == scores["level"] and shown == format_value("level", scores["level"])
        assert page.cells[("ground truth", name, "psnr_y")] == ("null", "-")
    rows = [r for r in csv.DictReader((tmp_path / "r" / "per_image.csv").open()) if r["role"] == "reference"]
    assert [(r["image"], float(r["level"]), r["psnr_y"]) for r in rows] == [
        (n, doc["reference"]["images"][n]["level"], "") for n in doc["reference"]["images"]]
    assert report.results[0].metric_names == ("psnr_y", "level")
