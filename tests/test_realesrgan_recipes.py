"""The Real-ESRGAN recipes: the official settings, restore check, and the staged chain.

``tests/test_recipes.py`` validates every shipped recipe and trains each for 2 steps with tiny
``--set`` overrides (these five included: it lists ``recipes/*.toml``). Here the resolved fields are
compared with the official options (xinntao/Real-ESRGAN ``options/*.yml``), ``restore check`` runs in
a real process, and (slow) ``restore run realesrgan_x4plus --with-prerequisites`` trains the chain.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from restorekit.recipe import load_recipe
from restorekit.recipe.components import build_task, generator_descriptor
from test_recipes import tiny_overrides

RECIPES = ("realesrnet_x4plus", "realesrgan_x4plus", "realesrnet_x2plus", "realesrgan_x2plus", "realesr_general_x4v3")
KERNELS = {
    "iso": 0.45, "aniso": 0.25, "generalized_iso": 0.12, "generalized_aniso": 0.03, "plateau_iso": 0.12,
    "plateau_aniso": 0.03,
}  # fmt: skip


def _restore(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "restorekit.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_the_degradation_settings_are_the_official_ones():
    args = load_recipe("realesrnet_x4plus", check_components=False).task.args
    assert args["sharpen_target"] is True  # gt_usm
    first_blur, first_resize, first_noise, first_jpeg, blur2, resize2, noise2, final = args["degradations"]
    for blur, sigma, prob in ((first_blur, [0.2, 3.0], 1.0), (blur2, [0.2, 1.5], 0.8)):
        assert blur["kernels"] == KERNELS and blur["kernel_size"] == [7, 21] and blur["sigma"] == sigma
        assert blur["betag"] == [0.5, 4.0] and blur["betap"] == [1.0, 2.0] and blur["sinc_prob"] == 0.1
        assert blur.get("prob", 1.0) == prob
    assert (first_resize["scale"], first_resize["up_down_keep"]) == ([0.15, 1.5], [0.2, 0.7, 0.1])
    assert (resize2["scale"], resize2["up_down_keep"], resize2["relative_to"]) == ([0.3, 1.2], [0.3, 0.4, 0.3], "output")
    for noise, sigma, poisson in ((first_noise, [1, 30], [0.05, 3.0]), (noise2, [1, 25], [0.05, 2.5])):
        assert (noise["sigma_levels"], noise["poisson_scale"]) == (sigma, poisson)
        assert (noise["gaussian_prob"], noise["gray_prob"]) == (0.5, 0.4)
    assert first_jpeg["quality"] == [30, 95]
    (resize_back, sinc), (jpeg2,) = final["blocks"]
    assert resize_back["size"] == "output" and jpeg2["quality"] == [30, 95]
    assert sinc["prob"] == 0.8 and sinc["sinc_prob"] == 1.0 and sinc["kernel_size"] == [7, 21]
    assert sinc["sinc_cutoff"] == sinc["sinc_cutoff_large"] == [pytest.approx(math.pi / 3), pytest.approx(math.pi)]
    # Every recipe of the family degrades alike.
    for name in RECIPES[1:]:
        assert load_recipe(name, check_components=False).task.args == args, name


def test_the_training_settings_are_the_official_ones():
    net = load_recipe("realesrnet_x4plus", check_components=False)
    assert (net.generator.name, net.generator.args) == (
        "rrdbnet", {"num_features": 64, "num_blocks": 23, "growth_channels": 32, "scale": 4}
    )
    assert [(label, t.name, t.weight) for label, t in net.losses.generator.items()] == [("pixel", "l1", 1.0)]
    assert net.discriminator is None and net.generator.init is None
    g = net.train.optim["generator"]
    assert (g.name, g.lr, g.betas) == ("adam", 2e-4, (0.9, 0.99))
    assert (net.train.steps, net.train.ema, net.data.batch_size) == (1_000_000, 0.999, 48)
    assert net.data.train["crop"] == 256 and net.data.train["rot90"] is False
    assert net.train.schedule["generator"].milestones == [1_000_000]

    gan = load_recipe("realesrgan_x4plus", check_components=False)
    assert gan.discriminator.name == "unet_discriminator"
    assert gan.discriminator.args == {"num_features": 64, "skip_connection": True}
    terms = gan.losses.generator
    assert (terms["pixel"].name, terms["pixel"].weight) == ("l1", 1.0)
    assert (terms["perceptual"].weight, terms["perceptual"].args["criterion"]) == (1.0, "l1")
    assert terms["perceptual"].args["layers"] == {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}
    assert (terms["adversarial"].name, terms["adversarial"].weight) == ("bce_gan", 0.1)
    for side in ("generator", "discriminator"):
        optim = gan.train.optim[side]
        assert (optim.lr, optim.betas) == (1e-4, (0.9, 0.99))
        assert gan.train.schedule[side].milestones == [400_000]
    assert (gan.train.steps, gan.train.ema, gan.data.batch_size) == (400_000, 0.999, 48)
    assert gan.generator.init == "realesrnet_x4plus"
    assert load_recipe("realesrgan_x2plus", check_components=False).generator.init == "realesrnet_x2plus"
    for name, scale in (("realesrnet_x2plus", 2), ("realesrgan_x2plus", 2)):
        recipe = load_recipe(name, ["generator.init=null"], check_components=False)
        assert recipe.generator.args == {**net.generator.args, "scale": scale}
        assert build_task(recipe, generator_descriptor(recipe)).scale == scale

    compact = load_recipe("realesr_general_x4v3", check_components=False)
    assert (compact.generator.name, compact.generator.args) == (
        "srvgg_compact", {"num_features": 64, "num_conv": 32, "scale": 4, "act_type": "prelu"}
    )
    assert compact.generator.init is None
    assert compact.losses.model_dump() == gan.losses.model_dump()
    assert compact.train.model_dump() == gan.train.model_dump()


def test_realesrgan_x4plus_passes_restore_check(photo_dir, tmp_path):
    # Its file extends realesrnet_x4plus: one real process reads and checks both, data included (the
    # other recipes are validated in-process by tests/test_recipes.py).
    name = "realesrgan_x4plus"
    sets = [arg for item in tiny_overrides(name, photo_dir, tmp_path / name) for arg in ("--set", item)]
    out = _restore("check", name, *sets, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"ok {name}" in out.stdout
    assert 'type = "shuffle"' in out.stdout  # the resolved recipe is printed, nested steps included


@pytest.mark.slow
def test_restore_run_realesrgan_with_prerequisites_trains_realesrnet_first(photo_dir, tmp_path):
    sets = [
        arg
        for item in tiny_overrides("realesrgan_x4plus", photo_dir, tmp_path / "runs" / "{name}")
        if not item.startswith("generator.init")
        for arg in ("--set", item)
    ]
    out = _restore("run", "realesrgan_x4plus", "--with-prerequisites", *sets, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "stage 1/1: realesrnet_x4plus" in out.stderr
    for name in ("realesrnet_x4plus", "realesrgan_x4plus"):
        assert (tmp_path / "runs" / name / f"{name}.safetensors").is_file()
