"""Recipe validation: every problem reported at once, with file, key path and suggestion."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from restorekit.recipe import RecipeError, load_recipe, recipe_digest, recipe_to_toml

BASE = """
name = "tiny"
[task]
name = "super_resolution"
args = {{ scale = 2 }}
[generator]
name = "srresnet"
args = {{ num_features = 8, num_blocks = 1, scale = 2 }}
[losses.generator.pixel]
name = "mse"
[data]
train = {{ hr = "{hr}", crop = 16 }}
batch_size = 2
workers = 0
[train]
steps = 2
"""


@pytest.fixture()
def hr_dir(tmp_path: Path) -> Path:
    from PIL import Image

    folder = tmp_path / "hr"
    folder.mkdir()
    for i in range(2):
        Image.new("RGB", (40, 36), (i * 90, 50, 200)).save(folder / f"img{i}.png")
    return folder


def write(tmp_path: Path, text: str, name: str = "recipe.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(path: Path, overrides=()) -> list[str]:
    with pytest.raises(RecipeError) as info:
        load_recipe(path, list(overrides))
    return [str(p) for p in info.value.problems]


def test_valid_recipe_loads(tmp_path, hr_dir):
    recipe = load_recipe(write(tmp_path, BASE.format(hr=hr_dir)))
    assert recipe.name == "tiny" and recipe.generator.args["num_blocks"] == 1
    assert recipe.output.dir == "runs/{name}"


def test_three_mistakes_reported_together(tmp_path, hr_dir):
    text = BASE.format(hr=hr_dir).replace("num_blocks = 1", "num_blocs = 1").replace('name = "mse"', 'name = "msee"')
    text = text.replace("steps = 2", "steps = 2\nbatchsize = 3")
    path = write(tmp_path, text)
    found = problems_of(path)
    joined = "\n".join(found)
    assert f"{path}: train.batchsize: unknown key" in joined
    # schema problems are reported first; fix that one and the component problems appear together
    text = text.replace("batchsize = 3\n", "")
    path = write(tmp_path, text)
    found = problems_of(path)
    assert f"{path}: generator.args.num_blocs: unknown; did you mean num_blocks?" in found
    assert any("losses.generator.pixel.name: unknown loss 'msee'; did you mean mse" in p for p in found)


def test_schema_errors_all_at_once_with_suggestions(tmp_path, hr_dir):
    text = BASE.format(hr=hr_dir).replace("[train]\nsteps = 2", "[train]\nstep = 2\nseed = \"x\"")
    text = text.replace("workers = 0", "workers = 0\nbatch_szie = 4")
    found = problems_of(write(tmp_path, text))
    joined = "\n".join(found)
    assert "train.step: unknown key; did you mean steps?" in joined
    assert "train.steps: missing" in joined
    assert "train.seed: " in joined
    assert "data.batch_szie: unknown key; did you mean batch_size?" in joined


def test_set_overrides_any_field(tmp_path, hr_dir):
    path = write(tmp_path, BASE.format(hr=hr_dir))
    recipe = load_recipe(path, ["train.steps=7", "generator.args.num_features=4", "train.optim.generator.lr=1e-3", 'name="other"'])
    assert recipe.train.steps == 7 and recipe.generator.args["num_features"] == 4
    assert recipe.train.optim["generator"].lr == 1e-3 and recipe.name == "other"
    found = problems_of(path, ["train.steps"])
    assert any("--set: train.steps: expected KEY.PATH=VALUE" in p for p in found)


def test_unknown_data_setting_and_bad_value(tmp_path, hr_dir):
    text = BASE.format(hr=hr_dir).replace("crop = 16", "crop = 16, flipp = true").replace("scale = 2 }\n[generator]", "scale = 0 }\n[generator]")
    found = problems_of(write(tmp_path, text))
    joined = "\n".join(found)
    assert "task.args: scale must be an integer" in joined


def test_scale_mismatch_and_missing_discriminator(tmp_path, hr_dir):
    text = BASE.format(hr=hr_dir).replace("scale = 2 }\n[losses", "scale = 4 }\n[losses")
    text += '[losses.generator.gan]\nname = "bce_gan"\nweight = 1e-3\n'
    found = "\n".join(problems_of(write(tmp_path, text)))
    assert "upscales x4 but the task expects x2" in found
    assert "adversarial loss 'bce_gan' needs a [discriminator] table" in found


def test_data_setting_unknown_key(tmp_path, hr_dir):
    text = BASE.format(hr=hr_dir).replace("crop = 16", "crop = 16, flipp = true")
    found = problems_of(write(tmp_path, text))
    assert any("data.train.flipp: unknown; did you mean flip?" in p for p in found)


def test_non_adversarial_on_discriminator_side(tmp_path, hr_dir):
    text = BASE.format(hr=hr_dir) + textwrap.dedent(
        """
        [discriminator]
        name = "srgan_discriminator"
        args = { num_features = 8 }
        [losses.generator.gan]
        name = "bce_gan"
        weight = 1e-3
        [losses.discriminator.gan]
        name = "l1"
        """
    )
    found = "\n".join(problems_of(write(tmp_path, text)))
    assert "losses.discriminator.gan.name: 'l1' is not an adversarial loss" in found


def test_extends_merges_tables_and_keeps_own_name(tmp_path, hr_dir):
    write(tmp_path, BASE.format(hr=hr_dir), "base.toml")
    child = write(
        tmp_path,
        """
        extends = "base"
        [generator.args]
        num_blocks = 3
        [losses.generator.pixel]
        weight = 0
        [losses.generator.l1]
        name = "l1"
        """,
        "child.toml",
    )
    recipe = load_recipe(child)
    assert recipe.name == "child"
    assert recipe.generator.args == {"num_features": 8, "num_blocks": 3, "scale": 2}
    assert list(recipe.losses.generator) == ["l1"]  # the zero-weight term is dropped


def test_circular_extends(tmp_path):
    write(tmp_path, 'extends = "b"\n', "a.toml")
    write(tmp_path, 'extends = "a"\n', "b.toml")
    found = problems_of(tmp_path / "a.toml")
    assert "circular extends" in found[0]


def test_invalid_toml_names_file(tmp_path):
    path = write(tmp_path, "name = \n")
    found = problems_of(path)
    assert found[0].startswith(f"{path}: invalid TOML")


def test_digest_changes_with_content(tmp_path, hr_dir):
    path = write(tmp_path, BASE.format(hr=hr_dir))
    a, b = load_recipe(path), load_recipe(path, ["train.steps=3"])
    assert recipe_digest(a) != recipe_digest(b)
    assert recipe_digest(a) == recipe_digest(load_recipe(path))
    # the printed TOML is itself a valid recipe
    again = write(tmp_path, recipe_to_toml(a), "again.toml")
    assert recipe_digest(load_recipe(again, ['name="tiny"'])) == recipe_digest(a)


def test_cli_check_exit_codes(tmp_path, hr_dir):
    good = write(tmp_path, BASE.format(hr=hr_dir))
    out = subprocess.run([sys.executable, "-m", "restorekit.cli", "check", str(good)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert 'name = "srresnet"' in out.stdout and "ok tiny" in out.stdout
    bad_text = BASE.format(hr=hr_dir).replace("num_blocks = 1", "num_blocs = 1").replace('name = "mse"', 'name = "msee"')
    bad_text = bad_text.replace("crop = 16", "crop = 16, flipp = true")
    bad = write(tmp_path, bad_text, "bad.toml")
    out = subprocess.run([sys.executable, "-m", "restorekit.cli", "check", str(bad)], capture_output=True, text=True)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "num_blocs: unknown; did you mean num_blocks?" in out.stderr
    assert "unknown loss 'msee'" in out.stderr
    assert "data.train.flipp: unknown; did you mean flip?" in out.stderr
    assert "3 problems found" in out.stderr


@pytest.mark.parametrize("name", ["quickstart", "srresnet"])
def test_builtin_recipes_validate(name):
    recipe = load_recipe(name, check_components=False)
    assert recipe.name == name
