"""A task added by a third-party plugin is evaluable with no change to restorekit: registry, benchmark, baseline."""

from __future__ import annotations

import types
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from restorekit.data.images import load_rgb
from restorekit.evaluation import EvaluationError, evaluate
from restorekit.evaluation.loop import run_benchmark
from restorekit.hookspecs import hookimpl
from restorekit.inference.model import RestorationModel
from restorekit.metrics import psnr, quantize
from restorekit.plugins import get_plugins, reset_plugins
from restorekit.tasks.base import EvalSet, Task
from restorekit.weights import WeightInfo


class Denoising(Task):
    """What a plugin would ship: noisy inputs made from clean images with noise seeded per image."""

    name = "denoising"
    primary_metric = "psnr"
    metric_names = ("psnr",)
    baselines = ("noisy",)

    def __init__(self, *, sigma: float = 0.1):
        self.sigma = sigma

    def benchmark(
        self,
        data: str | Path,
        *,
        inputs: str | Path | None = None,
        include: Sequence[str] | None = None,
        limit: int | None = None,
        max_pixels: int | None = None,
    ) -> EvalSet:
        files = sorted(Path(data).glob("*.png"))[:limit]

        def load(index: int) -> tuple[Tensor, Tensor]:
            clean = load_rgb(files[index])
            noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(index))
            return quantize((clean + self.sigma * noise).clamp(0, 1)), clean

        settings = {"protocol": f"RGB PSNR, Gaussian noise sigma {self.sigma} seeded per image"}
        return EvalSet(Path(data), [f.stem for f in files], files, load, settings)

    def baseline(self, name: str, model_input: Tensor) -> Tensor:
        if name != "noisy":
            raise ValueError(f"denoising has no baseline {name!r}")
        return model_input

    def metrics(self, output: Tensor, target: Tensor) -> dict[str, float]:
        return {"psnr": float(psnr(output, target, channel="rgb"))}


class BoxFilter(nn.Module):
    """A 'denoiser' a plugin might register: a 3x3 mean filter per channel."""

    scale = 1

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1, padding_mode="replicate", groups=3, bias=False)
        nn.init.constant_(self.conv.weight, 1 / 9)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


@pytest.fixture()
def denoising_plugin():
    plugin = types.ModuleType("restorekit_denoising")
    plugin.register_tasks = hookimpl(lambda register: register("denoising", Denoising, "Gaussian denoising"))
    get_plugins().add_plugin(plugin, "denoising")
    yield
    reset_plugins()


@pytest.fixture()
def clean_images(tmp_path: Path) -> Path:
    folder = tmp_path / "clean"
    folder.mkdir()
    for i in range(2):
        yy, xx = torch.meshgrid(torch.linspace(0, 1, 24), torch.linspace(0, 1, 32), indexing="ij")
        image = torch.stack([xx, yy, (xx + yy) / 2]) * 0.8 + 0.1
        Image.fromarray((image * 255).round().byte().permute(1, 2, 0).numpy()).save(folder / f"img{i}.png")
    return folder


def test_a_plugin_task_is_listed_with_its_baseline_and_metrics(denoising_plugin):
    from restorekit import evaluation  # TASKS, BASELINES, METRICS are read from the registry when asked for

    assert {"super_resolution", "deblurring", "denoising"} <= set(evaluation.TASKS)
    assert evaluation.BASELINES["noisy"] == "denoising" and evaluation.BASELINES["bicubic"] == "super_resolution"
    assert evaluation.METRICS["denoising"] == ("psnr",)


def test_a_plugin_task_evaluates_its_baseline_and_a_model(denoising_plugin, clean_images):
    samples = Denoising().benchmark(clean_images)
    noisy = evaluate("noisy", clean_images)  # the baseline's owner task is found in the registry
    assert (noisy.task, noisy.model, noisy.scale, noisy.metric_names) == ("denoising", "noisy", 1, ("psnr",))
    assert noisy.settings["protocol"].startswith("RGB PSNR")
    assert [im.name for im in noisy.images] == ["img0", "img1"]
    for image, sample in zip(noisy.images, samples):
        assert image.metrics["psnr"] == float(psnr(sample.input, sample.target, channel="rgb"))

    model = RestorationModel(BoxFilter(), WeightInfo(name="box", args={}, task="denoising", scale=1), tile=None)
    result = evaluate(model, clean_images)  # the model's task comes from its metadata
    assert result.task == "denoising" and result.model == "box"
    with torch.no_grad():
        filtered = [quantize(BoxFilter()(s.input[None])[0].clamp(0, 1)) for s in samples]
    assert [im.metrics["psnr"] for im in result.images] == [
        float(psnr(out, s.target, channel="rgb")) for out, s in zip(filtered, samples)
    ]
    assert result.mean["psnr"] > noisy.mean["psnr"]  # a mean filter does remove some noise
    # The same numbers through the loop directly: evaluate adds nothing of its own.
    assert run_benchmark(Denoising(), samples, model.restore_tensor) == result.images


def test_a_plugin_task_gets_the_generic_checks(denoising_plugin, clean_images, tmp_path):
    with pytest.raises(EvaluationError, match="denoising keeps the image size; scale 2 does not apply"):
        evaluate("noisy", clean_images, scale=2)
    with pytest.raises(EvaluationError, match="'bicubic' is the super-resolution baseline; for denoising use 'noisy'"):
        evaluate("bicubic", clean_images, task="denoising")
    with pytest.raises(EvaluationError, match=r"an LR folder \(--lr-dir\) is for super-resolution"):
        evaluate("noisy", clean_images, lr_dir=tmp_path)


def test_a_task_without_a_benchmark_is_refused_in_one_line(clean_images):
    class Untestable(Task):
        name = "untestable"

    plugin = types.ModuleType("restorekit_untestable")
    plugin.register_tasks = hookimpl(lambda register: register("untestable", Untestable, "no protocol"))
    get_plugins().add_plugin(plugin, "untestable")
    try:
        model = RestorationModel(BoxFilter(), WeightInfo(name="box", args={}, task="untestable", scale=1), tile=None)
        with pytest.raises(EvaluationError, match="does not define a benchmark protocol"):
            evaluate(model, clean_images)
    finally:
        reset_plugins()
