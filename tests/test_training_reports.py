"""What a run tells its user: plain progress lines without a terminal, the expected duration, the
end-of-run summary against the baseline, labelled previews, run folders resumed by name, and
checkpoints that hold only what resuming needs."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from restorekit.recipe import load_recipe
from restorekit.tasks.base import PreviewPanel
from restorekit.train.finish import metric_verdict
from restorekit.train.reporting import DurationEstimate, format_duration, labelled_strip, panel_psnr
from restorekit.train.trainer import Trainer, train

def restore(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``restore ARGS`` in a real process (the test's isolated model store, no terminal)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "restorekit.cli", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


def test_a_run_without_terminal_prints_plain_lines_duration_and_a_summary(tiny_recipe, tmp_path):
    out = restore("run", str(tiny_recipe()), "--set", "train.steps=12", "--set", "output.log_every=4",
                  "--set", "output.val_every=6")  # fmt: skip
    assert out.returncode == 0, out.stderr
    err = out.stderr
    assert "━" not in err  # no progress bar drawn into a pipe
    lines = err.splitlines()
    progress = [line for line in lines if line.startswith("step ") and "it/s" in line]
    assert [line.split()[1] for line in progress] == ["4/12", "8/12", "12/12"]
    assert all("g_total" in line and "ETA" in line and "elapsed" in line for line in progress)
    # The expected duration, measured after the warm-up steps, before the run is a third done.
    duration = [i for i, line in enumerate(lines) if line.startswith("expected duration: ")]
    assert len(duration) == 1 and "more steps at" in lines[duration[0]] and "on cpu" in lines[duration[0]]
    assert duration[0] < lines.index(progress[1])
    # The summary: each metric against the bicubic baseline with its verdict, the weights, the command.
    baseline = json.loads(next(r for r in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if '"baseline"' in r))
    summary = lines[next(i for i, line in enumerate(lines) if line.startswith("done: 12 steps of 'tiny'")):]
    row = next(line for line in summary if line.split()[0] == "psnr_y")
    assert f"bicubic {baseline['psnr_y']:9.4f}" in row and row.endswith(("better", "worse", "equal"))
    final = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert f"{final['psnr_y']:9.4f}" in row
    if row.endswith("worse"):
        assert any("below the bicubic baseline on psnr_y" in line for line in summary)
    assert f"weights: {tmp_path / 'run' / 'tiny.safetensors'} (stored as 'tiny')" in summary
    assert summary[-1] == "apply them: restore apply --model tiny photo.jpg"


def test_a_validation_below_the_baseline_says_so(tiny_recipe, tmp_path):
    # One step at a negligible learning rate: the untrained network cannot beat bicubic.
    out = restore("run", str(tiny_recipe()), "--set", "train.steps=1", "--set", "train.optim.generator.lr=1e-12")
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stderr.split())
    assert "psnr_y" in text and "worse" in text
    assert "the model is below the bicubic baseline on psnr_y" in text


def test_verdicts_follow_each_metrics_direction():
    assert metric_verdict("psnr_y", 30.5, 30.0) == "+0.5 better"
    assert metric_verdict("ssim_y", 0.7, 0.8) == "-0.1 worse"
    assert metric_verdict("psnr_y", 30.0, 30.0) == "equal"
    assert metric_verdict("lpips", 0.1, 0.3).endswith("better")  # lower is better
    assert metric_verdict("niqe", 6.0, 5.0).endswith("worse")


def test_the_duration_estimate_skips_the_warm_up_and_then_measures():
    est = DurationEstimate(0, 100, warmup=2, min_steps=3, min_seconds=1000)
    times = {1: 10.0, 2: 11.0, 3: 11.5, 4: 12.0, 5: 12.5, 6: 13.0}  # step 1 pays for the warm-up
    got = [est.observe(step, now) for step, now in times.items()]
    assert got[:4] == [None, None, None, None] and got[4] == pytest.approx(0.5) and got[5] is None
    slow = DurationEstimate(10, 20, warmup=1, min_steps=5, min_seconds=20)
    assert slow.observe(11, 0.0) is None and slow.observe(12, 30.0) == pytest.approx(30.0)  # one slow step is enough
    assert format_duration(250) == "4m 10s" and format_duration(3 * 86400) == "3.0 days" and format_duration(7200) == "2h 00m"


def test_a_recipe_that_takes_days_says_what_helps(tiny_recipe):
    trainer = Trainer(load_recipe(tiny_recipe(), ["train.steps=1000000"]), quiet=True)
    short = trainer.duration_message(0.01)
    assert len(short) == 1 and "≈ 2h 46m" in short[0]
    lines = trainer.duration_message(2.0)
    assert "23.1 days" in lines[0]
    hint = lines[1]
    for advice in ("23.1 days on this device", "--set train.device=cuda", "--set generator.args.num_blocks=...",
                   "--set generator.args.num_features=...", "--set data.train.crop=...", "--set train.steps=43200",
                   "generator.init=NAME"):  # fmt: skip
        assert advice in hint


def test_previews_are_labelled_with_step_and_psnr(tiny_recipe, tmp_path):
    train(load_recipe(tiny_recipe(), ["output.store=false"]), quiet=True)
    run = tmp_path / "run"
    previews = sorted((run / "previews").glob("*.png"))
    picture = Image.open(previews[-1]).convert("RGB")
    assert picture.width == 4 * 52  # LR | bicubic | output | HR
    top = picture.height - 44
    bar = torch.from_numpy(np.asarray(picture)[:top].copy()).float()
    assert top > 20 and bar.max() > 200 and bar.min() == 24  # light text on the dark label bar
    # The GIF starts at the first trained preview.
    gif = Image.open(run / "previews.gif")
    assert gif.n_frames == len(previews) - 1


def test_labelled_strip_keeps_the_pixels_and_scores_the_panels():
    gen = torch.Generator().manual_seed(0)
    hr = torch.rand(3, 40, 48, generator=gen)
    noisy = (hr + 0.05 * torch.randn(3, 40, 48, generator=gen)).clamp(0, 1)
    panels = [PreviewPanel("bicubic", noisy), PreviewPanel("HR", hr, scored=False)]
    strip = labelled_strip(panels, caption="step 5", target=hr)
    assert strip.size[0] == 96
    body = torch.from_numpy(np.asarray(strip)[-40:].copy()).permute(2, 0, 1).float() / 255
    assert torch.allclose(body[:, :, 49:], (hr * 255).round()[:, :, 1:] / 255, atol=1e-6)  # 1 px separator
    assert 20 < panel_psnr(noisy, hr) < 35 and panel_psnr(hr, hr) == float("inf")
    # A scored panel has a second label line (its PSNR): the bar is taller than with none scored.
    plain = labelled_strip([PreviewPanel("a", hr, scored=False)], caption="step 5", target=hr)
    assert strip.size[1] > plain.size[1]


def test_resume_by_run_folder_keeps_the_original_settings(tiny_recipe, tmp_path):
    # Started with a --set (a run of 4 steps with a different seed), resumed by folder with no flags at all.
    first = restore("run", str(tiny_recipe()), "--set", "train.steps=4", "--set", "train.seed=11")
    assert first.returncode == 0, first.stderr
    run = tmp_path / "run"
    again = restore("resume", str(run))  # the run is done: nothing more to train, weights written again
    assert again.returncode == 0, again.stderr
    assert "resuming from" in again.stderr and "recipe changed" not in again.stderr
    assert load_recipe(run / "recipe.toml").train.seed == 11
    more = restore("run", "--resume", str(run), "--set", "train.steps=6")
    assert more.returncode == 0, more.stderr
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["overrides"] for r in records if r["kind"] == "resume"] == [[], ["train.steps=6"]]
    assert records[-1]["kind"] == "done" and records[-1]["step"] == 6
    assert "changed on resume (recorded in metrics.jsonl): train.steps=6" in " ".join(more.stderr.split())


def test_run_folder_mistakes_are_one_line(tiny_recipe, tmp_path):
    first = restore("run", str(tiny_recipe()), "--set", "train.steps=2")
    assert first.returncode == 0, first.stderr
    plain = restore("run", str(tmp_path / "run"))
    assert plain.returncode == 2 and "is a run folder: continue it with 'restore resume" in plain.stderr
    (tmp_path / "empty").mkdir()
    nothing = restore("resume", str(tmp_path / "empty"))
    assert nothing.returncode == 2 and "not a run folder (no recipe.toml in it)" in nothing.stderr
    for out in (plain, nothing):
        assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def _tensor_elements(tree: object) -> int:
    if isinstance(tree, torch.Tensor):
        return tree.numel()
    if isinstance(tree, dict):
        return sum(_tensor_elements(v) for v in tree.values())
    if isinstance(tree, (list, tuple)):
        return sum(_tensor_elements(v) for v in tree)
    return 0


def test_checkpoints_hold_the_trained_networks_and_no_loss_network(tiny_recipe, tmp_path):
    extra = """
[discriminator]
name = "srgan_discriminator"
args = { num_features = 4, num_blocks = 2, dense_features = 8 }
[losses.generator.content]
name = "perceptual"
args = { network = "vgg19", layers = { relu2_2 = 1.0 }, weights = "random" }
[losses.generator.gan]
name = "bce_gan"
weight = 0.01
[losses.discriminator.gan]
name = "bce_gan"
"""
    with pytest.warns(UserWarning, match="random"):
        trainer = Trainer(load_recipe(tiny_recipe(extra), ["train.ema=0.9"]), quiet=True)
    batch = trainer.task.make_batch(next(iter(trainer._loader(0))), trainer.device, training=True)
    trainer.train_step([batch])
    state = trainer.state()
    own = sum(t.numel() for net in (trainer.generator, trainer.discriminator) for t in net.state_dict().values())
    ema = sum(t.numel() for t in trainer.ema.state_dict().values())
    vgg = sum(p.numel() for term in trainer.generator_slot.terms for p in term.module.parameters())
    assert vgg > 100_000  # the perceptual loss holds a real (random) VGG19 trunk up to relu2_2
    assert _tensor_elements(state["models"]) == own + ema
    params = sum(p.numel() for net in (trainer.generator, trainer.discriminator) for p in net.parameters())
    tensors = sum(1 for net in (trainer.generator, trainer.discriminator) for _ in net.parameters())
    assert _tensor_elements(state["optimizers"]) == 2 * params + tensors  # Adam's two moments and a step count
    buffer = io.BytesIO()
    torch.save(state, buffer)
    assert buffer.tell() < 4 * (own + ema + 2 * params) + 200_000  # float32 tensors, and nothing of the VGG
