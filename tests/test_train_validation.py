"""Validation during training: built-in tasks through their EvalSet, tasks of earlier versions through dicts."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest
import torch

from restorekit.data.images import load_rgb
from restorekit.data.resize import imresize
from restorekit.hookspecs import hookimpl
from restorekit.plugins import get_plugins, reset_plugins
from restorekit.recipe import load_recipe
from restorekit.tasks.super_resolution import SuperResolution
from restorekit.train.trainer import Trainer, train
from restorekit.weights import load_network


class OldStyleSR(SuperResolution):
    """A task as plugins wrote them before EvalSet: ``val_data`` yields dicts, metrics take (1, C, H, W)."""

    name = "old_style_sr"
    metric_names = ()
    baselines = ()

    def val_data(self, *, hr: str, limit: int | None = None) -> list[dict[str, torch.Tensor]]:
        files = sorted(Path(hr).glob("*.png"))[:limit]
        return [{"target": load_rgb(f)[:, : 44 // 2 * 2, : 52 // 2 * 2]} for f in files]

    def metrics(self, output: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        assert output.dim() == 4  # the batched shape earlier versions passed
        return super().metrics(output, target)

    def baseline_metrics(self, model_input: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        return self.metrics(imresize(model_input, float(self.scale)).clamp(0, 1), target)


@pytest.fixture()
def old_style_task():
    plugin = types.ModuleType("restorekit_old_style")
    plugin.register_tasks = hookimpl(lambda register: register("old_style_sr", OldStyleSR, "dict validation"))
    get_plugins().add_plugin(plugin, "old_style")
    yield
    reset_plugins()


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_task_with_dict_validation_data_still_validates(old_style_task, tiny_recipe, tmp_path, photo_dir):
    path = tiny_recipe()
    path.write_text(path.read_text().replace('name = "super_resolution"', 'name = "old_style_sr"'))
    result = train(load_recipe(path), quiet=True)
    kinds = [r["kind"] for r in records(result.run_dir)]
    assert kinds.count("val") == 3 and "baseline" in kinds
    last = [r for r in records(result.run_dir) if r["kind"] == "val"][-1]

    # The legacy path: make_batch(training=False), the network, the task's own metrics.
    net, _ = load_network(result.weights)
    task = OldStyleSR(scale=2)
    hr = task.val_data(hr=str(photo_dir), limit=1)[0]["target"][None]
    with torch.no_grad():
        lr, target = task.make_batch({"target": hr}, torch.device("cpu"), training=False)
        expected = task.metrics(net.eval()(lr).float().clamp(0, 1), target)
    assert last["psnr_y"] == pytest.approx(expected["psnr_y"], rel=1e-9)
    assert (result.run_dir / "before_after.png").is_file()


def test_the_task_takes_its_scale_from_the_generator(tiny_recipe):
    path = tiny_recipe()
    path.write_text(path.read_text().replace("args = { scale = 2 }\n", "", 1))  # the [task] table's
    trainer = Trainer(load_recipe(path), quiet=True)
    assert trainer.task.scale == 2 and trainer.descriptor.scale == 2


def test_validation_scores_the_ema_network_and_logs_the_baseline_once(tiny_recipe):
    result = train(load_recipe(tiny_recipe(), ["train.ema=0.5"]), quiet=True)
    logged = records(result.run_dir)
    assert [r["kind"] for r in logged].count("baseline") == 1
    baseline = next(r for r in logged if r["kind"] == "baseline")
    assert set(baseline) >= {"psnr_y", "ssim_y", "psnr_rgb"}
    # The weights are the EMA copy: what the last validation scored.
    assert result.metrics == {k: v for k, v in logged[-1].items() if k in ("psnr_y", "ssim_y", "psnr_rgb")}
