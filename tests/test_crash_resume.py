"""Crash-proof resume: real training processes killed with SIGKILL (and stopped with Ctrl-C) at random
moments, then resumed with ``--resume``, end with exactly the weights of an uninterrupted run.

Kill times come from a seeded RNG, but where a kill lands also depends on the machine's speed and load;
every assertion holds wherever it lands. Some kills wait for a checkpoint's temporary file to appear, so
that they usually land in the middle of a checkpoint write, and the last one waits for the final weights
(or their copy in the model store) to be written.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from PIL import Image

from restorekit.recipe import load_recipe
from restorekit.train import checkpoint as ckpt
from restorekit.train.reporting import read_metrics
from restorekit.train.trainer import train
from restorekit.weights import read_weights

TIMEOUT = 240  # seconds for one process on a busy two-core machine
STEPS = 24
# SRResNet + SRGAN discriminator + EMA: BatchNorm buffers, two optimizers and the EMA copy all resume.
SETTINGS = [
    f"train.steps={STEPS}", "train.ema=0.9", "output.checkpoint_every=1", "output.val_every=5",
    "discriminator.name=srgan_discriminator", "discriminator.args={num_features=4,num_blocks=2,dense_features=8}",
    "losses.generator.gan.name=bce_gan", "losses.generator.gan.weight=0.01", "losses.discriminator.gan.name=bce_gan",
]  # fmt: skip


def child_env() -> dict[str, str]:
    # One thread, as in the reference run below, so that every float reduction happens in the same order.
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "COLUMNS": "500"}


def run_command(recipe: Path, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "restorekit.cli", "run", str(recipe), *extra]
    for item in SETTINGS:
        cmd += ["--set", item]
    return cmd


def temporaries(folder: Path) -> list[Path]:
    """Unfinished atomic writes in *folder*: ``.NAME.XXXXXXXX.tmp`` (see restorekit.fileio.atomic_path)."""
    return list(folder.glob(".*.tmp")) if folder.is_dir() else []


def train_steps_logged(run: Path) -> int:
    metrics = run / "metrics.jsonl"
    return sum(r["kind"] == "train" for r in read_metrics(metrics)) if metrics.is_file() else 0


def reference_weights(recipe: Path, out: Path) -> tuple[dict[str, torch.Tensor], dict[str, dict]]:
    """The uninterrupted run, in this process with one thread like the children."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train(load_recipe(recipe, SETTINGS + [f"output.dir={out}", "output.store=false"]), quiet=True)
    finally:
        torch.set_num_threads(threads)
    weights, _ = read_weights(result.weights)
    return weights, ckpt.load_checkpoint(ckpt.checkpoint_path(out / "checkpoints", STEPS))["models"]


class Launch:
    """One ``restore run --resume`` process and the ways to stop it."""

    def __init__(self, recipe: Path, run: Path, log: Path):
        self.run, self.log = run, log
        self.started = time.monotonic()
        self.logged_before = train_steps_logged(run)
        with open(log, "w") as err:
            self.proc = subprocess.Popen(run_command(recipe, "--resume"), stdout=subprocess.DEVNULL, stderr=err,
                                         env=child_env())  # fmt: skip

    def wait_until(self, condition, poll: float) -> bool:
        """Poll *condition* until it holds (True) or the process ended (False)."""
        deadline = self.started + TIMEOUT
        while self.proc.poll() is None and time.monotonic() < deadline:
            if condition():
                return True
            if poll:
                time.sleep(poll)
        assert time.monotonic() < deadline, "the training process did not progress"
        return False

    def progressed(self, steps: int = 1) -> bool:
        return train_steps_logged(self.run) >= self.logged_before + steps

    def step_time(self) -> float:
        """Seconds between the last two logged steps (the first step after a start is slower)."""
        records = [r for r in read_metrics(self.run / "metrics.jsonl") if r["kind"] == "train"]
        return max(records[-1]["time"] - records[-2]["time"], 0.001)

    def stop(self, sig: int) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        return self.proc.wait(timeout=TIMEOUT)

    def stderr(self) -> str:
        return self.log.read_text()


def test_killed_and_interrupted_runs_resume_to_identical_weights(tiny_recipe, tmp_path, _isolated_home):
    recipe = tiny_recipe()
    straight, straight_models = reference_weights(recipe, tmp_path / "straight")
    run = tmp_path / "run"
    ckpt_dir, store = run / "checkpoints", _isolated_home / "models" / "tiny"
    rng = random.Random(20240607)
    plan = ["step", "step", "write", "write", "start", "ctrl_c"]  # each way of stopping, in a seeded order
    rng.shuffle(plan)
    history: list[str] = []

    def final_save_started() -> bool:  # the weights (or preview images) of the finished run
        return any(not p.name.startswith(".recipe.toml.") for p in temporaries(run))

    def store_copy_started() -> bool:  # a stale one is never removed: look for a new one
        return len(temporaries(store)) > stale_in_store

    stale_in_store = 0

    def one_run(mode: str) -> int:
        newest = ckpt.list_checkpoints(ckpt_dir)
        launch = Launch(recipe, run, tmp_path / f"stderr_{len(history)}.txt")
        if mode == "start":  # during start-up: imports, building, resuming
            time.sleep(rng.uniform(0.2, 1.5))
        elif mode == "write":
            launch.wait_until(launch.progressed, poll=0.02)
            launch.wait_until(lambda: any(p.name.startswith(".step_") for p in temporaries(ckpt_dir)), poll=0)
        elif mode in ("step", "ctrl_c"):
            launch.wait_until(lambda: launch.progressed(2), poll=0.01)
            time.sleep(rng.uniform(0.0, 2.5) * launch.step_time())  # within the next few steps
        elif mode == "final":
            launch.wait_until(final_save_started, poll=0)
        elif mode == "store":
            launch.wait_until(store_copy_started, poll=0)
        code = launch.stop(signal.SIGINT if mode == "ctrl_c" else signal.SIGKILL) if mode != "finish" else (
            launch.proc.wait(timeout=TIMEOUT))  # fmt: skip
        after = ckpt.list_checkpoints(ckpt_dir)
        # A temporary file left behind means the kill landed in the middle of that write.
        left = [p.name for p in temporaries(ckpt_dir) + temporaries(run) + temporaries(store)]
        history.append(f"{mode}: exit {code}, newest checkpoint {after[0][0] if after else None}, left {left}")
        if mode == "ctrl_c" and code == 130:  # it stopped after the step in flight and said where
            assert f"stopped at step {after[0][0]} of " in launch.stderr()
            assert f"checkpoint {after[0][1]}; resume with: restore resume " in launch.stderr().replace("\n", "")
        # Whatever the moment: every checkpoint loads, at most the file being written is unfinished.
        for _step, path in after:
            ckpt.load_checkpoint(path)
        assert len(temporaries(ckpt_dir)) <= 1 and len(temporaries(run)) <= 1 and len(temporaries(store)) <= 1, history
        for weights in [run / "tiny.safetensors", *store.glob("*.safetensors")]:
            if weights.exists():
                read_weights(weights)  # complete, or not there at all
        # --resume says which checkpoint it continues from: the newest one there was.
        if newest and "resuming from" in launch.stderr():
            assert f"resuming from {newest[0][1]} (step {newest[0][0]})" in launch.stderr(), history
        return code

    code = None
    for mode in plan:
        newest = ckpt.list_checkpoints(ckpt_dir)
        if newest and newest[0][0] >= STEPS - 6:  # keep the last steps for the final save
            break
        code = one_run(mode)
        if code == 0:  # a sudden burst of speed finished the run: nothing left to stop
            break
        assert code in (-signal.SIGKILL, 1, 130), history  # 1: Ctrl-C; 130: Ctrl-C outside the loop
    for mode in ("final", "store", "finish"):
        if code == 0:
            break
        stale_in_store = len(temporaries(store))
        code = one_run(mode)
    assert code == 0, history

    resumed, _ = read_weights(run / "tiny.safetensors")
    assert resumed.keys() == straight.keys()
    assert all(torch.equal(resumed[k], straight[k]) for k in straight), history
    models = ckpt.load_checkpoint(ckpt.checkpoint_path(ckpt_dir, STEPS))["models"]
    for side, tensors in straight_models.items():  # generator, discriminator and EMA, buffers included
        assert all(torch.equal(models[side][k], v) for k, v in tensors.items()), (side, history)
    # Steps replayed after a kill logged exactly the losses of their first run.
    by_step: dict[int, set[float]] = {}
    for record in read_metrics(run / "metrics.jsonl"):
        if record["kind"] == "train":
            by_step.setdefault(record["step"], set()).add(record["g_total"])
    assert sorted(by_step) == list(range(1, STEPS + 1)) and all(len(v) == 1 for v in by_step.values()), history
    assert temporaries(ckpt_dir) == [] and temporaries(run) == [], history  # stale ones removed on resume


def test_ctrl_c_in_a_terminal_with_data_loader_workers(tiny_recipe, photo_dir, tmp_path):
    """A terminal's Ctrl-C reaches the data-loader workers too; they must live to deliver the step's batch.

    Large images make the run wait on its worker most of the time, where a worker killed by the signal
    would leave it with "DataLoader worker exited unexpectedly" and no checkpoint.
    """
    big = tmp_path / "big"
    big.mkdir()
    noise = torch.Generator().manual_seed(0)
    for i in range(3):
        pixels = (torch.rand(900, 900, 3, generator=noise) * 255).byte().numpy()
        Image.fromarray(pixels).save(big / f"noise{i}.png", compress_level=1)
    cmd = [sys.executable, "-m", "restorekit.cli", "run", str(tiny_recipe())]
    for item in [f"data.train.hr={big}", f"data.val.hr={photo_dir}", "data.workers=1", "data.prefetch_factor=1",
                 "train.steps=100000", "output.checkpoint_every=100000", "output.val_every=100000"]:  # fmt: skip
        cmd += ["--set", item]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=child_env(),
                            start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + TIMEOUT
    while proc.poll() is None and time.monotonic() < deadline and train_steps_logged(tmp_path / "run") < 2:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)  # the whole process group, as a terminal does
    _out, err = proc.communicate(timeout=TIMEOUT)
    kept = ckpt.list_checkpoints(tmp_path / "run" / "checkpoints")
    assert proc.returncode == 130 and kept, err
    assert f"stopped at step {kept[0][0]} of 100000; checkpoint {kept[0][1]}; resume with: restore resume" in err.replace("\n", "")


def test_resume_skips_a_damaged_checkpoint_and_removes_stale_temporaries(tiny_recipe, tmp_path):
    recipe = tiny_recipe()
    train(load_recipe(recipe, ["train.steps=4", "output.checkpoint_every=1", "output.store=false"]), quiet=True)
    run, ckpt_dir = tmp_path / "run", tmp_path / "run" / "checkpoints"
    newest = ckpt.checkpoint_path(ckpt_dir, 4)
    newest.write_bytes(newest.read_bytes()[:2000])  # torn by a crash outside our control (disk, copy)
    # What killed writers leave behind: a checkpoint, the final weights and a preview half written.
    stale = [ckpt_dir / ".step_00000005.ckpt.k3j_a9x2.tmp", run / ".tiny.safetensors.0a1b2c3d.tmp",
             run / "previews" / ".step_00000005.png.zz99yy88.tmp"]  # fmt: skip
    for path in stale:
        path.write_bytes(b"\x80half")
    keep = run / "notes.tmp"  # not ours: a user's file
    keep.write_text("mine")

    cmd = [sys.executable, "-m", "restorekit.cli", "run", str(recipe), "--set", "train.steps=6",
           "--set", "output.checkpoint_every=1", "--set", "output.store=false", "--resume"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, env=child_env(), timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    err = out.stderr
    assert f"{newest}: damaged checkpoint" in err and "skipped" in err
    assert f"resuming from {ckpt.checkpoint_path(ckpt_dir, 3)} (step 3)" in err
    assert not any(p.exists() for p in stale) and keep.read_text() == "mine"
    assert ckpt.load_checkpoint(newest)["step"] == 4  # rewritten by the resumed run
    assert read_weights(run / "tiny.safetensors")[0]
