"""Validation during training and ``restore eval`` on the saved weights give the same numbers, bit for bit.

Both go through the task's benchmark samples and :func:`restorekit.evaluation.loop.run_benchmark`: the same
LR images (made by MATLAB bicubic in uint8 arithmetic, or the shipped files), the same 8-bit rounding, the
same metrics and the same mean. The memory format changes the convolutions' float rounding and ``restore
eval`` runs the network in the default (contiguous) format, so validation judges a contiguous copy: the
numbers agree with ``train.channels_last`` on (the default) and off.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from restorekit.recipe import load_recipe
from restorekit.train.trainer import train

IMAGES = ("bird", "butterfly", "head")

RECIPE = """
name = "equal"
[task]
name = "super_resolution"
args = {{ scale = 2 }}
[generator]
name = "srresnet"
args = {{ num_features = 8, num_blocks = 1, scale = 2 }}
[losses.generator.pixel]
name = "l1"
[data]
train = {{ hr = "{hr}", crop = 32 }}
val = {val}
batch_size = 2
workers = 0
[train]
steps = 3
seed = 5
channels_last = {channels_last}
[train.optim.generator]
lr = 1e-3
[output]
dir = "{out}"
checkpoint_every = 3
val_every = 2
log_every = 1
tensorboard = false
store = false
previews = false
"""


@pytest.fixture()
def set5_subset(shared_data: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Three Set5 images in the EDSR layout (HR/, LR_bicubic/X2/), linked, not copied."""
    source = shared_data / "sr-bench" / "Set5"
    hr, lr = tmp_path / "Set5" / "HR", tmp_path / "Set5" / "LR_bicubic" / "X2"
    hr.mkdir(parents=True)
    lr.mkdir(parents=True)
    for name in IMAGES:
        (hr / f"{name}.png").symlink_to(source / "HR" / f"{name}.png")
        (lr / f"{name}x2.png").symlink_to(source / "LR_bicubic" / "X2" / f"{name}x2.png")
    return hr, lr.parent


@pytest.mark.parametrize("channels_last", ["true", "false"], ids=["channels_last", "contiguous"])
@pytest.mark.parametrize("shipped_lr", [False, True], ids=["lr_made_by_matlab_bicubic", "lr_bicubic_files"])
def test_last_validation_equals_restore_eval_bit_for_bit(set5_subset, tmp_path, shipped_lr, channels_last):
    hr, lr = set5_subset
    val = f'{{ hr = "{hr}", lr = "{lr}" }}' if shipped_lr else f'{{ hr = "{hr}" }}'
    path = tmp_path / "equal.toml"
    path.write_text(RECIPE.format(hr=hr, val=val, out=tmp_path / "run", channels_last=channels_last))
    result = train(load_recipe(path), quiet=True)

    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    last_val = [r for r in records if r["kind"] == "val"][-1]
    assert last_val["step"] == 3

    command = [sys.executable, "-m", "restorekit.cli", "eval", "--model", str(result.weights), "--data", str(hr), "--json"]
    if shipped_lr:
        command += ["--lr-dir", str(lr)]
    done = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ), timeout=600)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["count"] == len(IMAGES)
    assert doc["settings"]["lr_source"] == ("files" if shipped_lr else "matlab_bicubic")
    for key in ("psnr_y", "ssim_y", "psnr_rgb"):
        assert last_val[key] == doc["mean"][key], key  # equal floats, not approximately
    # The weights' metadata carries the same numbers.
    assert result.metrics == {key: doc["mean"][key] for key in ("psnr_y", "ssim_y", "psnr_rgb")}
