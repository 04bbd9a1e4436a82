"""The shared trainer on tiny CPU runs: outputs, exact resume, NaN stop, Ctrl-C, corrupt checkpoints."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from restorekit.recipe import load_recipe
from restorekit.train import checkpoint as ckpt
from restorekit.train.errors import TrainingError
from restorekit.train.trainer import train
from restorekit.weights import load_network, read_info, read_weights

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


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_run_writes_weights_metrics_previews_and_store(tiny_recipe, tmp_path):
    result = train(load_recipe(tiny_recipe()), quiet=True)
    run = tmp_path / "run"
    assert result.weights == run / "tiny.safetensors" and result.step == 6
    info = read_info(result.weights)
    assert info.name == "srresnet" and info.recipe_name == "tiny" and info.scale == 2
    assert len(info.recipe_digest) == 64 and "psnr_y" in info.metrics
    kinds = [r["kind"] for r in records(run)]
    assert kinds.count("train") == 6 and kinds.count("val") == 3 and "baseline" in kinds and kinds[-1] == "done"
    assert all(r["it_s"] > 0 and r["hr_mpix_s"] > 0 for r in records(run) if r["kind"] == "train")
    previews = sorted((run / "previews").glob("*.png"))
    assert len(previews) == 3  # step 0, 3 and the end
    gif = Image.open(run / "previews.gif")
    assert gif.n_frames == 2  # from the first trained preview: step 0 is the untrained network
    width, height = Image.open(previews[0]).size
    assert width == 4 * 52 and height > 44  # LR | bicubic | output | HR, under a label bar
    before_after = Image.open(run / "before_after.png")
    assert before_after.width == 2 * 52 and before_after.height > 44  # bicubic | restored, labelled
    assert (run / "recipe.toml").is_file()
    assert result.stored is not None and result.stored.is_file()
    net, _ = load_network(result.stored)
    assert net.scale == 2
    assert [p.name for p in sorted((run / "checkpoints").glob("*.ckpt"))] == [
        "step_00000002.ckpt", "step_00000004.ckpt", "step_00000006.ckpt"
    ]


def test_learning_lowers_the_loss(tiny_recipe):
    result = train(load_recipe(tiny_recipe(), ["train.steps=30", "output.val_every=100", "output.previews=false"]), quiet=True)
    train_records = [r for r in records(result.run_dir) if r["kind"] == "train"]
    first = sum(r["g_total"] for r in train_records[:5]) / 5
    last = sum(r["g_total"] for r in train_records[-5:]) / 5
    assert last < first


@pytest.mark.parametrize("extra", ["", GAN], ids=["pixel", "gan_ema"])
def test_resume_gives_exactly_the_same_weights(tiny_recipe, tmp_path, extra):
    settings = ["train.accumulate=2"] + (["train.ema=0.9", "train.d_steps=2"] if extra else [])
    straight = train(load_recipe(tiny_recipe(extra, out=tmp_path / "a"), settings), quiet=True)
    # The same run stopped after 4 steps, then resumed to 6.
    train(load_recipe(tiny_recipe(extra, out=tmp_path / "b"), settings + ["train.steps=4"]), quiet=True)
    resumed = train(load_recipe(tiny_recipe(extra, out=tmp_path / "b"), settings), resume=True, quiet=True)
    a, _ = read_weights(straight.weights)
    b, _ = read_weights(resumed.weights)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    payload_a = ckpt.load_checkpoint(tmp_path / "a" / "checkpoints" / "step_00000006.ckpt")
    payload_b = ckpt.load_checkpoint(tmp_path / "b" / "checkpoints" / "step_00000006.ckpt")
    for side in payload_a["models"]:
        for key, value in payload_a["models"][side].items():
            assert torch.equal(value, payload_b["models"][side][key]), (side, key)


def test_existing_run_needs_resume(tiny_recipe):
    recipe = load_recipe(tiny_recipe(), ["train.steps=2"])
    train(recipe, quiet=True)
    with pytest.raises(TrainingError, match="--resume"):
        train(recipe, quiet=True)


def test_corrupt_newest_checkpoint_is_skipped(tiny_recipe, tmp_path):
    train(load_recipe(tiny_recipe(), ["train.steps=4"]), quiet=True)
    newest = tmp_path / "run" / "checkpoints" / "step_00000004.ckpt"
    newest.write_bytes(newest.read_bytes()[:1000])  # torn file
    with pytest.warns(UserWarning, match="damaged checkpoint"):
        result = train(load_recipe(tiny_recipe()), resume=True, quiet=True)
    assert result.step == 6


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_recipe, tmp_path):
    recipe = load_recipe(tiny_recipe(), ["train.optim.generator.lr=1e30", "output.checkpoint_every=1", "train.steps=50"])
    with pytest.raises(TrainingError, match="became (nan|inf)") as info:
        train(recipe, quiet=True)
    assert "last good checkpoint" in str(info.value)
    kept = ckpt.list_checkpoints(tmp_path / "run" / "checkpoints")
    assert kept
    payload = ckpt.load_checkpoint(kept[0][1])
    assert all(torch.isfinite(v).all() for v in payload["models"]["generator"].values() if v.is_floating_point())
    assert not (tmp_path / "run" / "tiny.safetensors").exists()


def test_ctrl_c_writes_a_checkpoint_and_resume_continues(tiny_recipe, tmp_path):
    path = tiny_recipe()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "restorekit.cli", "run", str(path), "--set", "train.steps=100000",
           "--set", "output.checkpoint_every=100000", "--set", "output.val_every=100000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if metrics.is_file() and sum(1 for line in metrics.read_text().splitlines() if '"train"' in line) >= 3:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err  # a requested stop, not an error
    assert "Traceback" not in err and "error" not in err.lower()
    kept = ckpt.list_checkpoints(tmp_path / "run" / "checkpoints")
    assert len(kept) == 1 and kept[0][0] >= 3
    line = " ".join(err.split())
    assert f"stopped at step {kept[0][0]} of 100000; checkpoint {kept[0][1]}; resume with: restore resume {tmp_path / 'run'}" in line
    # The printed command, as printed, continues the run: the run folder's recipe.toml already holds the
    # --set flags it was started with; the one change given on resume is recorded.
    command = shlex.split(line.split("resume with: ")[1])
    assert command[:2] == ["restore", "resume"]
    out = subprocess.run(
        [sys.executable, "-m", "restorekit.cli", *command[1:], "--set", f"train.steps={kept[0][0] + 2}"],
        capture_output=True, text=True, env=env,
    )
    assert out.returncode == 0, out.stderr
    assert f"resuming from {kept[0][1]}" in out.stderr.replace("\n", "")
    resumes = [r for r in records(tmp_path / "run") if r["kind"] == "resume"]
    assert resumes == [{**resumes[0], "step": kept[0][0], "overrides": [f"train.steps={kept[0][0] + 2}"]}]
    saved = load_recipe(tmp_path / "run" / "recipe.toml")
    assert saved.output.checkpoint_every == 100000 and saved.train.steps == kept[0][0] + 2
