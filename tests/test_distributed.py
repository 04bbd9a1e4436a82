"""Multi-process training on the CPU (Gloo): real processes started by torchrun, the CLI, real files.

Two processes split each global batch, so with a network whose output for one image does not depend on
the others in the batch, they must end with the weights of a one-process run (up to float rounding
in the averaged gradients). SRResNet and the SRGAN discriminator use BatchNorm, whose statistics are
per process under DDP (as in BasicSR and most SR code; SRResNet's weights differ by ~5e-2 after 4 steps), and
RaGAN's batch-mean logits are per process too, so the comparisons use the BN-free RRDBNet and a
norm-free PatchGAN with LSGAN, whose losses are plain means over the samples.

The failure tests start the ranks themselves, with the environment torchrun would give them, so that
each rank's exit code and messages can be checked and a survivor must leave on its own (torchrun would
otherwise kill it for us).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from restorekit.data.sampling import ResumableSampler
from restorekit.recipe import load_recipe
from restorekit.train import checkpoint as ckpt
from restorekit.train.distributed import StopRequest, dist_env, sync_step
from restorekit.train.reporting import read_metrics
from restorekit.train.trainer import train
from restorekit.weights import read_weights

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="torch.distributed with Gloo is not available",
)

TIMEOUT = 240  # seconds for one launch on a busy two-core machine; a hang fails instead of blocking
RRDB = ["generator.name=rrdbnet", "generator.args={num_features=8,num_blocks=1,growth_channels=4,scale=2}"]
PATCHGAN = [
    "discriminator.name=patchgan",
    "discriminator.args={num_features=4,num_layers=2,norm='none'}",
    "losses.generator.gan.name=lsgan",
    "losses.generator.gan.weight=0.05",
    "losses.discriminator.gan.name=lsgan",
]
QUICK = ["train.steps=4", "output.previews=false", "output.checkpoint_every=2", "output.val_every=2"]
# Measured on a 2-core x86 CPU: the largest |w_2proc - w_1proc| after 4 Adam steps was 0.7-1.5e-8, pixel
# or PatchGAN + LSGAN, either network (3e-8 after 20 steps): rounding in the averaged gradients.
TOLERANCE = 1e-6


def cli(recipe: Path, settings: list[str], *extra: str) -> list[str]:
    args = ["-m", "restorekit.cli", "run", str(recipe), *extra]
    for item in settings:
        args += ["--set", item]
    return args


def child_env(home: Path) -> dict[str, str]:
    # One thread per process, as torchrun sets it; wide lines so that messages are not wrapped.
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "COLUMNS": "500",
            "RESTOREKIT_HOME": str(home)}  # fmt: skip


def torchrun(args: list[str], home: Path, logs: Path) -> subprocess.Popen:
    """torchrun with two CPU workers, each worker's output in ``logs/**/attempt_0/RANK/``."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "--log-dir", str(logs), "--redirects", "3", *args]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_env(home),
                            start_new_session=True)  # fmt: skip


def rank_stderr(logs: Path, rank: int) -> str:
    (path,) = logs.glob(f"**/attempt_0/{rank}/stderr.log")
    return path.read_text()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_ranks(args: list[str], home: Path, world: int = 2) -> list[tuple[int, str]]:
    """Start *world* ranks as torchrun would (same variables), wait for all; ``(exit code, stderr)`` each."""
    common = {**child_env(home), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
              "WORLD_SIZE": str(world), "LOCAL_WORLD_SIZE": str(world)}  # fmt: skip
    procs = [
        subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         env={**common, "RANK": str(r), "LOCAL_RANK": str(r)})  # fmt: skip
        for r in range(world)
    ]
    deadline = time.monotonic() + TIMEOUT
    results = []
    try:
        for proc in procs:
            _out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results.append((proc.returncode, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point())


# -- equal results ----------------------------------------------------------------------------------


@pytest.mark.parametrize("gan", [False, True], ids=["pixel", "patchgan_lsgan"])
def test_two_processes_train_the_same_weights_as_one(tiny_recipe, tmp_path, gan):
    settings = RRDB + QUICK + (PATCHGAN if gan else [])
    recipe = tiny_recipe()
    # The one-process reference runs in this process (the CLI adds nothing but a process start).
    train(load_recipe(recipe, settings + [f"output.dir={tmp_path / 'one'}", "output.store=false"]), quiet=True)
    two = torchrun(cli(recipe, settings + [f"output.dir={tmp_path / 'two'}"]), tmp_path / "home2", tmp_path / "logs")
    out, _ = two.communicate(timeout=TIMEOUT)
    assert two.returncode == 0, out  # torchrun exits 0 only when every worker did

    a, _ = read_weights(tmp_path / "one" / "tiny.safetensors")
    b, _ = read_weights(tmp_path / "two" / "tiny.safetensors")
    assert max_difference(a, b) < TOLERANCE
    final = "step_00000004.ckpt"
    models_a = ckpt.load_checkpoint(tmp_path / "one" / "checkpoints" / final)["models"]
    models_b = ckpt.load_checkpoint(tmp_path / "two" / "checkpoints" / final)["models"]
    assert models_a.keys() == models_b.keys() == ({"generator", "discriminator"} if gan else {"generator"})
    for side in models_a:
        assert max_difference(models_a[side], models_b[side]) < TOLERANCE, side

    # Rank 0 alone logs, validates and writes: the same records as one process, once each.
    rec_a, rec_b = read_metrics(tmp_path / "one" / "metrics.jsonl"), read_metrics(tmp_path / "two" / "metrics.jsonl")
    assert [(r["kind"], r["step"]) for r in rec_b] == [(r["kind"], r["step"]) for r in rec_a]
    assert [r["kind"] for r in rec_b].count("done") == 1 and rec_b[-1]["kind"] == "done"
    lines = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len(set(lines)) == len(rec_b)
    # The logged losses are averaged over the processes, so they are the global batch's losses too.
    for ra, rb in zip(rec_a, rec_b):
        for key in (k for k in ra if k.startswith(("g_", "d_", "psnr", "ssim"))):
            assert rb[key] == pytest.approx(ra[key], rel=1e-5, abs=1e-6), (ra["kind"], ra["step"], key)
    assert sorted(p.name for p in (tmp_path / "two").glob("*.safetensors")) == ["tiny.safetensors"]
    assert len(list((tmp_path / "home2").rglob("*.safetensors"))) == 1  # one copy in the model store
    assert not [p for p in (tmp_path / "two").rglob("*") if p.name.endswith(".tmp")]
    assert "done" in rank_stderr(tmp_path / "logs", 0) and rank_stderr(tmp_path / "logs", 1) == ""


def test_gradient_accumulation_matches_one_big_batch(tiny_recipe, tmp_path):
    """accumulate=2 x 2 images = one batch of 4: the same samples, the same averaged gradient."""
    settings = RRDB + ["train.steps=3", "output.previews=false", "output.store=false"]
    big = train(load_recipe(tiny_recipe(out=tmp_path / "big"), settings), quiet=True)
    accumulated = train(load_recipe(tiny_recipe(out=tmp_path / "acc"), settings + ["train.accumulate=2"]), quiet=True)
    a, _ = read_weights(big.weights)
    b, _ = read_weights(accumulated.weights)
    # Measured: 9.3e-9 (float rounding of the two half sums); SRResNet's BatchNorm would give 0.43.
    assert max_difference(a, b) < TOLERANCE


# -- failures: no rank is left waiting ----------------------------------------------------------------


def test_nan_stops_every_rank_at_the_same_step(tiny_recipe, tmp_path):
    recipe = tiny_recipe()
    settings = RRDB + ["train.optim.generator.lr=1e30", "train.steps=50", "output.checkpoint_every=1",
                       "output.previews=false"]  # fmt: skip
    results = launch_ranks(cli(recipe, settings), tmp_path / "home")
    messages = [err for _rc, err in results]
    assert [rc for rc, _err in results] == [1, 1], messages
    # Both ranks judge the averaged losses, so both stop at the same step with the same message.
    stops = [m[m.index("error: step") :].split(":")[1] for m in messages]
    assert stops[0] == stops[1], messages
    assert "Traceback" not in messages[0] + messages[1]
    kept = ckpt.list_checkpoints(tmp_path / "run" / "checkpoints")
    payload = ckpt.load_checkpoint(kept[0][1])
    assert all(torch.isfinite(v).all() for v in payload["models"]["generator"].values())
    assert not (tmp_path / "run" / "tiny.safetensors").exists()


def test_an_error_on_one_rank_does_not_leave_the_other_waiting(photo_dir, tiny_recipe, tmp_path):
    # A truncated image (its header reads, its pixels do not) that only rank 1 reads in the first step.
    photos = tmp_path / "with_bad"
    shutil.copytree(photo_dir, photos)
    data = (photo_dir / "photo0.png").read_bytes()
    (photos / "zz_truncated.png").write_bytes(data[: len(data) // 2])
    bad = len(list(photos.iterdir())) - 1  # sorted last

    def first_batch(seed: int, rank: int) -> list[int]:
        keys = iter(ResumableSampler(bad + 1, seed=seed, batch_size=2, rank=rank, world_size=2))
        return [next(keys).index for _ in range(2)]

    seed = next(s for s in range(100) if bad in first_batch(s, 1) and bad not in first_batch(s, 0))
    settings = RRDB + [f"data.train.hr={photos}", f"train.seed={seed}", "output.previews=false"]
    results = launch_ranks(cli(tiny_recipe(), settings), tmp_path / "home")
    (rc0, err0), (rc1, err1) = results
    assert rc1 == 1 and "zz_truncated.png" in err1, err1
    assert rc0 != 0, err0  # rank 0 learns from the closed connection that its peer is gone
    assert not (tmp_path / "run" / "tiny.safetensors").exists()


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="finds torchrun's workers through /proc")
def test_ctrl_c_to_torchrun_writes_one_checkpoint_and_all_exit(tiny_recipe, tmp_path):
    settings = RRDB + ["train.steps=100000", "output.checkpoint_every=100000", "output.val_every=100000",
                       "output.previews=false"]  # fmt: skip
    logs = tmp_path / "logs"
    proc = torchrun(cli(tiny_recipe(), settings), tmp_path / "home", logs)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.is_file() and sum(r["kind"] == "train" for r in read_metrics(metrics)) >= 3:
            break
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()[0]
    workers = _children(proc.pid)
    assert len(workers) == 2
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
    out, _ = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode != 0
    kept = ckpt.list_checkpoints(tmp_path / "run" / "checkpoints")
    assert len(kept) == 1 and kept[0][0] >= 3, out
    step, path = kept[0]
    assert ckpt.load_checkpoint(path)["step"] == step
    for rank in (0, 1):  # both stopped after the same step, and said so
        said = " ".join(rank_stderr(logs, rank).split())
        assert f"stopped at step {step} of 100000; checkpoint {path}; resume with: torchrun --nproc-per-node 2 " in said
        assert f"-m restorekit.cli resume {tmp_path / 'run'}" in said
    assert all(not Path(f"/proc/{pid}").exists() for pid in workers)


def _children(pid: int) -> list[int]:
    """Process ids whose parent is *pid* (torchrun's workers), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


# -- the pieces, in one process -------------------------------------------------------------------


def test_sync_step_in_one_process_passes_values_through():
    values, stop = sync_step(dist_env(), {"g_total": torch.tensor(0.25), "d_total": torch.tensor(float("nan"))},
                             False, torch.device("cpu"))  # fmt: skip
    assert values["g_total"] == 0.25 and values["d_total"] != values["d_total"] and stop is False
    assert sync_step(dist_env(), {}, True, torch.device("cpu")) == ({}, True)


def test_stop_request_asks_first_then_interrupts():
    before = signal.getsignal(signal.SIGINT)
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        _wait_for(lambda: stop.requested)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            _wait_for(lambda: False)
    assert signal.getsignal(signal.SIGINT) is before


def _wait_for(condition, seconds: float = 5.0) -> None:
    # Python runs signal handlers between bytecodes of the main thread; give it a few.
    end = time.monotonic() + seconds
    while not condition() and time.monotonic() < end:
        time.sleep(0.01)

