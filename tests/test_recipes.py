"""Every shipped recipe validates and trains end to end on CPU (tiny networks via overrides)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from restorekit.plugins import get_plugins, registry
from restorekit.recipe import load_recipe
from restorekit.recipe.loader import find_recipe, read_recipe_tree
from restorekit.train.trainer import train
from restorekit.weights import read_info

RECIPE_DIR = Path(__file__).resolve().parents[1] / "recipes"
RECIPES = sorted(p.stem for p in RECIPE_DIR.glob("*.toml"))


def _inline(value: dict) -> str:
    return "{" + ", ".join(f"{k} = {json.dumps(v)}" for k, v in value.items()) + "}"


def tiny_overrides(name: str, photos: Path, out: Path) -> list[str]:
    """Shrink a shipped recipe to seconds on a CPU while keeping its losses, schedule and networks."""
    tree = read_recipe_tree(find_recipe(name))
    task = tree["task"]["name"]
    # The scale is stated once, on the generator (a task that is not super-resolution keeps the size).
    scale = tree["generator"].get("args", {}).get("scale", 1) if task == "super_resolution" else 1
    gen = registry("generators").get(tree["generator"]["name"])
    gen_args = dict(gen.info.get("tiny_args", {}))
    if "scale" in gen_args:
        gen_args["scale"] = scale
    sets = [
        f"generator.args={_inline(gen_args)}",
        "generator.init=null",
        "train.steps=2",
        "data.batch_size=2",
        "data.workers=0",
        f'output.dir="{out}"',
        "output.checkpoint_every=1",
        "output.val_every=1",
        "output.tensorboard=false",
    ]
    crop = 16 * scale
    if "discriminator" in tree:
        disc = registry("discriminators").get(tree["discriminator"]["name"])
        disc_args = {**tree["discriminator"].get("args", {}), **disc.info.get("tiny_args", {})}
        sets.append(f"discriminator.args={_inline(disc_args)}")
        if tree["discriminator"]["name"] == "vgg_discriminator":
            crop = disc_args.get("input_size", 128)
    for side, terms in tree["losses"].items():
        for label, term in terms.items():
            if term.get("name") == "perceptual" and term.get("weight", 1) != 0:
                sets.append(f'losses.{side}.{label}.args.weights="random"')
    if task == "super_resolution":
        sets += [f'data.train={{hr = "{photos}", crop = {crop}}}', f'data.val={{hr = "{photos}", limit = 1}}']
    else:
        sets += [
            "task.args={kernel_size = 9}",
            f'data.train={{sharp = "{photos}", synthetic = true, crop = 32}}',
            f'data.val={{sharp = "{photos}", synthetic = true, limit = 1}}',
        ]
    return sets


def test_every_recipe_file_is_registered():
    assert set(RECIPES) <= set(get_plugins().recipes)


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_validates_as_shipped(name):
    recipe = load_recipe(name, ["generator.init=null"])  # init names weights trained by another recipe
    assert recipe.name == name and recipe.description


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_trains_end_to_end(name, photo_dir, tmp_path):
    recipe = load_recipe(name, tiny_overrides(name, photo_dir, tmp_path / "run"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random VGG weights warn loudly, by design
        result = train(recipe, quiet=True)
    info = read_info(result.weights)
    assert info.recipe_name == name and info.name == recipe.generator.name
    assert result.step == 2 and result.metrics
    assert result.stored is not None
