"""Each trained network with its optimizer, schedule, scaler and losses; checkpoints of earlier versions resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from restorekit.plugins import registry
from restorekit.recipe import load_recipe, recipe_digest, recipe_to_toml
from restorekit.recipe.schema import ScheduleSpec
from restorekit.train import checkpoint as ckpt
from restorekit.train.errors import TrainingError
from restorekit.train.optim import Schedule
from restorekit.train.trainer import Trainer, train

GAN = """
[discriminator]
name = "srgan_discriminator"
args = { num_features = 4, num_blocks = 2, dense_features = 8 }
[losses.generator.gan]
name = "bce_gan"
weight = 0.01
[losses.discriminator.gan]
name = "bce_gan"
"""

SETTINGS = ["train.ema=0.9", "train.steps=4"]


def write_checkpoint_the_old_way(recipe, path: Path, step: int) -> dict:
    """A checkpoint exactly as the trainer with ``opt_g``/``opt_d`` twins wrote it (restorekit <= 0.x).

    Built from plain torch objects, not from the trainer under test: one section per kind of state
    (``models``, ``optimizers``, ``schedulers``, ``scalers``) keyed ``generator`` / ``discriminator``,
    the EMA weights under ``models.ema``, and the architecture as a sorted JSON string.
    """
    torch.manual_seed(123)
    gen = registry("generators").build(recipe.generator.name, **recipe.generator.args)
    disc = registry("discriminators").build(recipe.discriminator.name, **recipe.discriminator.args)
    models, optimizers, schedulers, scalers = {}, {}, {}, {}
    for role, net in (("generator", gen), ("discriminator", disc)):
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.0, foreach=False)
        sched = Schedule(opt, ScheduleSpec(), recipe.train.steps)
        for _ in range(step):  # a few real updates, so the optimizer state is not empty
            opt.zero_grad()
            sum(p.square().sum() for p in net.parameters()).backward()
            opt.step()
            sched.step()
        models[role] = net.state_dict()
        optimizers[role] = opt.state_dict()
        schedulers[role] = sched.state_dict()
        scalers[role] = torch.amp.GradScaler("cpu", enabled=False).state_dict()
    ema = AveragedModel(gen, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    ema.update_parameters(gen)
    models["ema"] = ema.state_dict()
    payload = {
        "step": step,
        "recipe_digest": recipe_digest(recipe),
        "recipe": recipe_to_toml(recipe),
        "architecture": json.dumps(
            {
                "generator": [recipe.generator.name, recipe.generator.args],
                "discriminator": [recipe.discriminator.name, recipe.discriminator.args],
            },
            sort_keys=True,
        ),
        "models": models,
        "optimizers": optimizers,
        "schedulers": schedulers,
        "scalers": scalers,
        "rng": ckpt.capture_rng(),
        "best": {"psnr_y": 10.0, "step": step},
        "last_val": {"psnr_y": 10.0},
        "previews": [],
    }
    ckpt.save_checkpoint(path, payload)
    return payload


def test_a_checkpoint_in_the_old_layout_resumes(tiny_recipe, tmp_path):
    recipe = load_recipe(tiny_recipe(GAN), SETTINGS)
    old = write_checkpoint_the_old_way(recipe, tmp_path / "run" / "checkpoints" / "step_00000002.ckpt", step=2)

    trainer = Trainer(recipe, quiet=True)
    trainer.prepare_run_dir(resume=True, resume_from=None)
    assert trainer.step == 2 and trainer.best == {"psnr_y": 10.0, "step": 2}
    for net in trainer.networks:
        for key, value in old["models"][net.role].items():
            assert torch.equal(net.module.state_dict()[key], value), (net.role, key)
        state = net.optimizer.state_dict()["state"]
        assert state and all(
            torch.equal(state[i]["exp_avg"], s["exp_avg"]) for i, s in old["optimizers"][net.role]["state"].items()
        )
        assert net.schedule.last_epoch == 2
    for key, value in old["models"]["ema"].items():
        assert torch.equal(trainer.ema.state_dict()[key], value), key

    # And the run continues from there to its last step.
    result = train(recipe, resume=True, quiet=True)
    assert result.step == 4 and result.weights is not None and result.weights.is_file()


def test_checkpoints_keep_the_layout_earlier_versions_read(tiny_recipe, tmp_path):
    """What the trainer writes now has the sections and keys of the old layout (older versions can read it)."""
    recipe = load_recipe(tiny_recipe(GAN), SETTINGS)
    old = write_checkpoint_the_old_way(recipe, tmp_path / "old.ckpt", step=1)
    train(recipe, quiet=True)
    new = ckpt.load_checkpoint(tmp_path / "run" / "checkpoints" / "step_00000004.ckpt")
    # Keys added since are read with defaults by this version and ignored by older ones.
    assert set(new) == set(old) | {"format", "version", "baseline"}
    for section in ("models", "optimizers", "schedulers", "scalers"):
        assert new[section].keys() == old[section].keys(), section
    for role in ("generator", "discriminator"):
        assert new["models"][role].keys() == old["models"][role].keys()
        assert new["schedulers"][role].keys() == old["schedulers"][role].keys()


def test_one_object_per_network(tiny_recipe):
    trainer = Trainer(load_recipe(tiny_recipe(GAN), SETTINGS), quiet=True)
    roles = [net.role for net in trainer.networks]
    assert roles == ["generator", "discriminator"]
    gen, disc = trainer.networks
    assert trainer.generator is gen.module and trainer.discriminator is disc.module and trainer.opt_g is gen.optimizer
    assert [t.label for t in gen.terms] == ["pixel", "gan"] and [t.label for t in disc.terms] == ["gan"]
    # The same loss (name and arguments) on both sides is one module.
    assert gen.terms[1].module is disc.terms[0].module
    assert gen.optimizer is not disc.optimizer and gen.scaler is not disc.scaler

    plain = Trainer(load_recipe(tiny_recipe(out=trainer.run_dir.parent / "plain"), SETTINGS), quiet=True)
    assert [net.role for net in plain.networks] == ["generator"] and plain.discriminator is None


def test_a_checkpoint_missing_a_network_is_refused(tiny_recipe, tmp_path):
    recipe = load_recipe(tiny_recipe(GAN), SETTINGS)
    payload = write_checkpoint_the_old_way(recipe, tmp_path / "x.ckpt", step=1)
    del payload["optimizers"]["discriminator"]
    trainer = Trainer(recipe, quiet=True)
    with pytest.raises(TrainingError, match="no optimizers state for the discriminator"):
        trainer.load_state(payload, tmp_path / "x.ckpt")
