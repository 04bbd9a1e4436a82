"""Metrics are a registry: the core's with their facts, a plugin's through ``register_metrics``, chosen by
``restore eval --metrics`` and by the recipe (``task.args.metrics``), logged by training validation with
the same numbers ``restore eval`` gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
import warnings

import pytest
import torch

from restorekit.evaluation import EvaluationError, evaluate
from restorekit.hookspecs import hookimpl
from restorekit.metrics import psnr, ssim
from restorekit.metrics.registry import metric_registry
from restorekit.metrics.selection import MetricSet, parse_metric_names
from restorekit.plugins import get_plugins, reset_plugins
from restorekit.recipe import load_recipe
from restorekit.recipe.loader import RecipeError
from restorekit.tasks.deblurring import Deblurring
from restorekit.tasks.super_resolution import SuperResolution


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "restorekit.cli", *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=600)


# --- the core's metrics ------------------------------------------------------------------------------


def test_core_metrics_state_direction_reference_and_colour():
    registry = metric_registry()
    facts = {s.name: (s.higher_is_better, s.needs_reference, s.colour) for s in registry}
    assert facts["psnr_y"] == (True, True, "y") and facts["ssim_y"] == (True, True, "y")
    assert facts["psnr"] == (True, True, "rgb") and facts["psnr_rgb"] == (True, True, "rgb")
    assert facts["lpips"] == (False, True, "rgb") and facts["lpips_vgg"] == (False, True, "rgb")
    assert facts["dists"] == (False, True, "rgb")
    assert facts["niqe"] == (False, False, "y")
    assert all(s.plugin == "core" for s in registry)
    assert registry.get("niqe").protocol(4) == "Y (BT.601 luma), 4 border pixels shaved, no reference"
    assert get_plugins().info["core"].counts["metrics"] == len(registry)


def test_unknown_names_list_the_closest_ones():
    with pytest.raises(KeyError, match="unknown metric 'lpip'; did you mean lpips"):
        metric_registry().get("lpip")
    with pytest.raises(ValueError, match="did you mean niqe"):
        SuperResolution(scale=2, metrics=["psnr_y", "niqee"])
    assert parse_metric_names("psnr, ssim lpips,,niqe") == ["psnr", "ssim", "lpips", "niqe"]
    with pytest.raises(ValueError, match="no metric named"):
        parse_metric_names(" , ")


def test_the_registry_path_gives_the_floats_the_tasks_always_gave():
    """psnr_y/ssim_y/psnr_rgb through the registry are the very psnr()/ssim() calls, bit for bit."""
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(3, 40, 36, generator=generator)
    output = (target + 0.05 * torch.randn(target.shape, generator=generator)).clamp(0, 1)
    task = SuperResolution(scale=4)
    assert task.metric_names == ("psnr_y", "ssim_y", "psnr_rgb")
    assert task.metrics(output, target) == {
        "psnr_y": float(psnr(output, target, border=4, channel="y").mean()),
        "ssim_y": float(ssim(output, target, border=4, channel="y").mean()),
        "psnr_rgb": float(psnr(output, target, border=4, channel="rgb").mean()),
    }
    assert Deblurring().metrics(output, target) == {
        "psnr": float(psnr(output, target, channel="rgb").mean()),
        "ssim": float(ssim(output, target, channel="rgb").mean()),
    }


def test_tasks_take_their_metrics_with_aliases_and_keep_the_primary_one():
    sr = SuperResolution(scale=2, metrics=["psnr", "ssim", "ssim_rgb", "psnr_y"])
    assert sr.metric_names == ("psnr_y", "ssim_y", "ssim_rgb")  # psnr/ssim are the SR tables' Y ones
    assert SuperResolution(scale=2, metrics=["ssim_rgb"]).metric_names == ("psnr_y", "ssim_rgb")
    assert Deblurring(metrics=["ssim", "psnr_y"]).metric_names == ("psnr", "ssim", "psnr_y")
    assert SuperResolution.metric_names == ("psnr_y", "ssim_y", "psnr_rgb")  # the class default is untouched
    target = torch.rand(3, 32, 32)
    assert list(sr.metrics(target, target)) == ["psnr_y", "ssim_y", "ssim_rgb"]


# --- a plugin's metric ---------------------------------------------------------------------------------


class MeanAbsoluteError:
    """Mean absolute error on 0..255 of the RGB values, border shaved (a plugin's metric)."""

    def __init__(self, *, border: int = 0, peak: float = 255.0):
        self.border, self.peak = border, peak

    def __call__(self, output, target):
        b = self.border
        if b:
            output, target = output[..., b:-b, b:-b], target[..., b:-b, b:-b]
        return ((output - target).abs() * self.peak).double().flatten(-3).mean(-1)


def seeded_random_lpips(*, border: int = 0):
    """LPIPS on a random AlexNet seeded the same at every build (a stand-in for the ImageNet one)."""
    from restorekit.metrics.perceptual import LPIPS

    with torch.random.fork_rng(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        return LPIPS(net="alex", border=border, weights="random")


@pytest.fixture()
def metric_plugin():
    plugin = types.ModuleType("restorekit_mae")

    @hookimpl
    def register_metrics(register):
        register("mae", MeanAbsoluteError, higher_is_better=False, colour="rgb", label="MAE")
        register("lpips_random", seeded_random_lpips, "LPIPS on a seeded random AlexNet", higher_is_better=False)

    plugin.register_metrics = register_metrics
    get_plugins().add_plugin(plugin, "mae_plugin")
    yield
    reset_plugins()


def test_a_plugin_adds_a_metric_that_eval_uses_under_the_task_protocol(metric_plugin, photo_dir):
    info = get_plugins().info["mae_plugin"]
    assert info.state == "loaded" and info.counts["metrics"] == 2
    spec = metric_registry().get("mae")
    assert (spec.plugin, spec.higher_is_better, spec.header, spec.description) == (
        "mae_plugin", False, "MAE", "Mean absolute error on 0..255 of the RGB values, border shaved (a plugin's metric).")
    result = evaluate("bicubic", photo_dir, scale=2, metrics=["psnr", "mae"])
    assert result.metric_names == ("psnr_y", "mae")
    assert [f["name"] for f in result.metric_info] == ["psnr_y", "mae"] and result.metric_info[1]["border"] == 2
    # The value is the plugin's own function on the 8-bit output, with the SR border.
    from restorekit.evaluation.loop import to_8bit

    task = SuperResolution(scale=2)
    sample = task.benchmark(photo_dir)[0]
    expected = float(MeanAbsoluteError(border=2)(to_8bit(task.baseline("bicubic", sample.input)), sample.target))
    assert result.images[0].metrics["mae"] == expected


def test_duplicate_or_malformed_metric_registrations_break_the_plugin_only():
    for name, metric, facts in (
        ("dup", "psnr_y", {"higher_is_better": True}),
        ("nodir", "mae2", {"higher_is_better": "yes"}),
        ("badname", "m a e", {"higher_is_better": False}),
    ):
        def register_metrics(register, metric=metric, facts=facts):
            register(metric, MeanAbsoluteError, **facts)

        plugin = types.ModuleType(f"restorekit_{name}")
        plugin.register_metrics = hookimpl(register_metrics)
        before = metric_registry().names()
        get_plugins().add_plugin(plugin, name)
        info = get_plugins().info[name]
        assert info.state == "broken", name
        assert metric_registry().names() == before
    assert "duplicate metric 'psnr_y': registered by plugin 'core' and by plugin 'dup'" in get_plugins().info["dup"].error
    assert "higher_is_better must be True or False" in get_plugins().info["nodir"].error
    reset_plugins()


# --- the recipe chooses, validation logs, restore eval agrees -------------------------------------------


def test_recipe_check_reports_unknown_metric_names_with_did_you_mean(tiny_recipe):
    path = tiny_recipe()
    path.write_text(path.read_text().replace("args = { scale = 2 }", 'args = { scale = 2, metrics = ["psnr", "lpip", "nique"] }', 1))
    done = _cli("check", str(path))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert lines == [
        f"error: {path}: task.args.metrics[1]: unknown metric 'lpip'; did you mean lpips, lpips_vgg?",
        f"error: {path}: task.args.metrics[2]: unknown metric 'nique'; did you mean niqe?",
    ]
    path.write_text(path.read_text().replace('metrics = ["psnr", "lpip", "nique"]', 'metrics = "psnr"'))
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert [str(p) for p in info.value.problems] == [
        f"{path}: task.args.metrics: must be a list of metric names, e.g. [\"psnr_y\", \"lpips\"]; got 'psnr'"]
    path.write_text(path.read_text().replace('metrics = "psnr"', 'metrics = ["ssim", "lpips", "niqe"]'))
    assert load_recipe(path).task.args["metrics"] == ["ssim", "lpips", "niqe"]  # valid: nothing is built or fetched


def test_validation_logs_the_recipe_metrics_equal_to_evaluate(metric_plugin, tiny_recipe, photo_dir):
    from restorekit.train.trainer import train

    path = tiny_recipe()
    chosen = '["ssim_rgb", "mae", "lpips_random"]'
    path.write_text(path.read_text().replace("args = { scale = 2 }", f"args = {{ scale = 2, metrics = {chosen} }}", 1))
    result = train(load_recipe(path), quiet=True)
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    vals = [r for r in records if r["kind"] == "val"]
    assert len(vals) == 3
    assert set(vals[-1]) - {"kind", "step", "time"} == {"psnr_y", "ssim_rgb", "mae", "lpips_random"}
    baseline = next(r for r in records if r["kind"] == "baseline")
    assert set(baseline) - {"kind", "step", "time"} == {"psnr_y", "ssim_rgb", "mae", "lpips_random"}

    evaluated = evaluate(str(result.weights), photo_dir, metrics=["psnr_y", "ssim_rgb", "mae", "lpips_random"],
                         inputs=None)
    # val_data has limit = 1: the first image.
    first = evaluated.images[0].metrics
    for key in ("psnr_y", "ssim_rgb", "mae", "lpips_random"):
        assert vals[-1][key] == first[key], key  # equal floats


def test_restore_eval_metrics_option_and_list(photo_dir):
    done = _cli("eval", "--model", "bicubic", "--data", str(photo_dir), "--scale", "2", "--metrics", "ssim,psnr_rgb", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    expected = evaluate("bicubic", photo_dir, scale=2, metrics=["ssim", "psnr_rgb"])
    assert list(doc["mean"]) == ["ssim_y", "psnr_rgb"] and doc["mean"] == expected.mean
    assert [m["name"] for m in doc["metrics"]] == ["ssim_y", "psnr_rgb"] and doc["metrics"][0]["higher_is_better"]

    bad = _cli("eval", "--model", "bicubic", "--data", str(photo_dir), "--scale", "2", "--metrics", "psnr,lpipz")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip() == "error: metrics: unknown metric 'lpipz'; did you mean lpips, lpips_vgg?"

    listing = _cli("eval", "--list-metrics")
    assert listing.returncode == 0
    niqe_row = next(line for line in listing.stdout.splitlines() if " niqe " in line)
    assert "lower" in niqe_row and " no " in niqe_row


def test_no_reference_metrics_need_no_target_and_reference_ones_do():
    scores = MetricSet(["psnr_y"], border=0)
    with pytest.raises(ValueError, match="psnr_y compares with a reference image"):
        scores(torch.rand(3, 16, 16), None)
    with pytest.raises(EvaluationError, match="unknown metric"):
        evaluate("bicubic", ".", scale=2, metrics=["nope"])
