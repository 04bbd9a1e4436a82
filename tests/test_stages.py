"""Staged runs: a recipe's prerequisite chain, the message when a stage is missing, training the chain.

The chain tests use tiny recipes in a tmp folder and a real ``restore run`` process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from restorekit.plugins import registry
from restorekit.recipe import RecipeError
from restorekit.recipe.stages import MissingStagesError, missing_message, plan_stages, stage_overrides, train_prerequisites
from restorekit.store import store_network
from restorekit.weights import WeightInfo

STAGE = """
name = "{name}"
{extra}
[task]
name = "super_resolution"
[generator]
name = "srresnet"
args = {{ num_features = 8, num_blocks = 1, scale = 2 }}
{init}
[losses.generator.pixel]
name = "l1"
[data]
train = {{ hr = "{hr}", crop = 16 }}
val = {{ hr = "{hr}", limit = 1 }}
batch_size = 2
workers = 0
[train]
steps = 3
seed = 1
[train.optim.generator]
lr = 1e-3
[output]
dir = "{out}/{{name}}"
checkpoint_every = 3
val_every = 3
log_every = 1
previews = false
tensorboard = false
"""


def _write(folder: Path, name: str, photos: Path, init: str | None = None, extra: str = "") -> Path:
    path = folder / f"{name}.toml"
    init_line = f'init = "{init}"' if init else ""
    path.write_text(STAGE.format(name=name, hr=photos, out=folder / "runs", init=init_line, extra=extra))
    return path


def _store_tiny(name: str) -> Path:
    """Store a tiny SRResNet under *name*, as a finished run would."""
    component = registry("generators").get("srresnet")
    args = {"num_features": 8, "num_blocks": 1, "scale": 2}
    network = component.build(**args)
    info = WeightInfo(name="srresnet", args=args, plugin=component.plugin, task="super_resolution", scale=2)
    return store_network(name, network, info, source="run")


# --- the chain -----------------------------------------------------------------------------------------


def test_shipped_gan_recipes_name_their_stage_and_say_how_to_get_it():
    stages = plan_stages("recipes/srgan.toml")
    assert [(s.name, s.ref, s.stored) for s in stages] == [("srresnet", "srresnet", False)]
    assert missing_message("recipes/srgan.toml", stages) == (
        "recipes/srgan.toml starts from 'srresnet', which is not stored: run `restore run srresnet` first, "
        "or add --with-prerequisites"
    )
    assert [s.name for s in plan_stages("esrgan")] == ["esrgan_psnr"]
    assert [s.name for s in plan_stages("realesrgan_x4plus")] == ["realesrnet_x4plus"]
    assert [s.name for s in plan_stages("realesrgan_x2plus")] == ["realesrnet_x2plus"]
    for ref in ("srresnet", "esrgan_psnr", "realesrnet_x4plus", "quickstart"):
        assert plan_stages(ref) == []
    # Weights that are not a recipe end the chain: a file, or a catalogue model (downloaded on use).
    assert plan_stages("esrgan", ["generator.init=some/weights.safetensors"]) == []
    assert plan_stages("realesrgan_x4plus", ["generator.init=realesrnet-x4plus"]) == []


def test_a_stored_stage_is_not_a_missing_one(photo_dir, tmp_path):
    _write(tmp_path, "first", photo_dir)
    second = _write(tmp_path, "second", photo_dir, init="first")
    stages = plan_stages(second)
    assert [(s.name, s.stored) for s in stages] == [("first", False)]
    with pytest.raises(MissingStagesError, match="starts from 'first', which is not stored"):
        train_prerequisites(second, run=False)
    _store_tiny("first")
    assert [(s.name, s.stored) for s in plan_stages(second)] == [("first", True)]
    assert missing_message(second, plan_stages(second)) == ""
    lines: list[str] = []
    train_prerequisites(second, run=True, say=lines.append, train_stage=lambda recipe: pytest.fail("trained"))
    assert lines == ["stage first: its weights are stored; not trained again"]


def test_a_longer_chain_is_listed_first_stage_first(photo_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, "a", photo_dir)
    _write(tmp_path, "b", photo_dir, init="a")
    c = _write(tmp_path, "c", photo_dir, init="b")
    stages = plan_stages(c)
    assert [(s.name, s.ref, s.needed_by) for s in stages] == [("a", "a.toml", "b.toml"), ("b", "b.toml", str(c))]
    assert missing_message("c.toml", stages) == (
        "c.toml starts from 'b', which is not stored ('b' starts from 'a': not stored either): "
        "run `restore run a.toml` then `restore run b.toml` first, or add --with-prerequisites"
    )
    # A stored stage ends the chain: what it started from no longer matters.
    _store_tiny("b")
    assert [(s.name, s.stored) for s in plan_stages(c)] == [("b", True)]


def test_bad_chains_are_named(photo_dir, tmp_path):
    _write(tmp_path, "x", photo_dir, init="y")
    y = _write(tmp_path, "y", photo_dir, init="x")
    with pytest.raises(RecipeError, match="go round in a circle"):
        plan_stages(y)
    (tmp_path / "odd.toml").write_text((tmp_path / "x.toml").read_text().replace('name = "x"', 'name = "renamed"'))
    z = _write(tmp_path, "z", photo_dir, init="odd")
    with pytest.raises(MissingStagesError, match="stored as 'renamed'"):
        plan_stages(z)
    _write(tmp_path, "nostore", photo_dir, extra="").write_text(
        (tmp_path / "nostore.toml").read_text() + "store = false\n"
    )
    w = _write(tmp_path, "w", photo_dir, init="nostore")
    with pytest.raises(MissingStagesError, match="output.store is false"):
        plan_stages(w)


def test_overrides_carry_to_stages_except_the_recipes_own_keys():
    sets = ["data.train.hr=/data/DF2K", "name=mine", "generator.init=x.pth", "train.steps=10", "description=d"]
    assert stage_overrides(sets) == ["data.train.hr=/data/DF2K", "train.steps=10"]
    # Settings of parts a pixel-loss stage does not have stay with the GAN recipe.
    from restorekit.recipe.loader import find_recipe, read_recipe_tree

    gan_only = [
        "discriminator.args={num_features = 4}", "train.optim.discriminator.lr=1e-5",
        "losses.generator.perceptual.args.weights=\"random\"", "losses.discriminator.adversarial.weight=2",
    ]  # fmt: skip
    shared = ["generator.args={num_features = 8, num_blocks = 1, growth_channels = 4, scale = 4}", "losses.generator.pixel.weight=2"]
    stage = read_recipe_tree(find_recipe("realesrnet_x4plus"))
    assert stage_overrides([*gan_only, *shared], stage) == shared
    assert stage_overrides([*gan_only, *shared], read_recipe_tree(find_recipe("realesrgan_x4plus"))) == [*gan_only, *shared]


def test_every_stage_is_validated_before_the_first_trains(photo_dir, tmp_path):
    _write(tmp_path, "base", photo_dir)
    top = _write(tmp_path, "top", photo_dir, init="base")
    top.write_text(top.read_text().replace('name = "l1"', 'name = "l11"'))
    trained: list[str] = []
    with pytest.raises(RecipeError, match="unknown loss 'l11'"):
        train_prerequisites(top, run=True, say=lambda line: None, train_stage=lambda recipe: trained.append(recipe.name))
    assert trained == []


# --- restore run, for real -------------------------------------------------------------------------------


def _restore(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "restorekit.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_restore_run_with_prerequisites_trains_the_chain_and_then_skips_the_stored_stage(photo_dir, tmp_path):
    _write(tmp_path, "pretrain", photo_dir)
    _write(tmp_path, "finetune", photo_dir, init="pretrain")

    refused = _restore("run", "finetune.toml", cwd=tmp_path)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert (
        "finetune.toml starts from 'pretrain', which is not stored: run `restore run pretrain.toml` first, "
        "or add --with-prerequisites"
    ) in " ".join(refused.stderr.split())
    assert not (tmp_path / "runs").exists()  # nothing was run

    chain = _restore("run", "finetune.toml", "--with-prerequisites", "--set", "train.steps=2", cwd=tmp_path)
    assert chain.returncode == 0, chain.stderr
    assert "stage 1/1: pretrain" in chain.stderr
    assert "initialised the generator from" in chain.stderr
    for name in ("pretrain", "finetune"):
        records = [json.loads(line) for line in (tmp_path / "runs" / name / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2]  # --set carried to the stage
    stage_metrics = (tmp_path / "runs" / "pretrain" / "metrics.jsonl").read_bytes()

    again = _restore("run", "finetune.toml", "--with-prerequisites", "--set", f"output.dir={tmp_path}/again/{{name}}",
                     cwd=tmp_path)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "stage pretrain: its weights are stored; not trained again" in " ".join(again.stderr.split())
    assert (tmp_path / "runs" / "pretrain" / "metrics.jsonl").read_bytes() == stage_metrics
    assert not (tmp_path / "again" / "pretrain").exists() and (tmp_path / "again" / "finetune").is_dir()
    # Both stages' weights are in the store under their recipe names.
    from restorekit.store import resolve_weights
    from restorekit.weights import read_info

    assert read_info(resolve_weights("finetune", download=False)).recipe_name == "finetune"
