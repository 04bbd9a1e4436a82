"""The one trainer for every recipe: pretraining and adversarial training alike.

A step reads the same on CPU and GPU: ``autocast`` and ``GradScaler`` are no-ops where not needed.
Each generator step runs the generator on ``accumulate`` micro-batches with its loss terms (the
adversarial ones through the frozen discriminator), then ``d_steps`` discriminator updates on the same
real/fake pairs. GAN flavours differ only in their loss objects; the loop never special-cases one.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from restorekit.plugins import registry
from restorekit.recipe import recipe_digest
from restorekit.recipe.components import ScaleMismatch, build_task, generator_descriptor
from restorekit.recipe.schema import Recipe
from restorekit.train import checkpoint as ckpt
from restorekit.train import state as run_state_module
from restorekit.train.distributed import (
    DistEnv,
    StopRequest,
    barrier,
    dist_env,
    ignore_interrupt,
    init_distributed,
    pick_device,
    shutdown_distributed,
    sync_step,
)
from restorekit.train.errors import TrainingError, TrainingStopped
from restorekit.train.finish import TrainResult, finish_run  # noqa: F401 - TrainResult re-exported
from restorekit.train.networks import (
    DISCRIMINATOR,
    GENERATOR,
    LossTerm,  # noqa: F401 - re-exported: its home was this module
    TrainedNetwork,
    attach_training,
)
from restorekit.train.reporting import (
    DurationEstimate,
    MetricsLog,
    TrainProgress,
    format_duration,
    labelled_strip,
    save_picture,
)
from restorekit.train.validation import validate_network


def _autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    if device.type != "cuda" or amp == "none":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def _memory_format(channels_last: bool) -> torch.memory_format:
    # channels_last pays on CUDA (tensor cores) and on CPU too (oneDNN convolutions: ~1.8x per step
    # for SRResNet here), so it is on by default everywhere.
    return torch.channels_last if channels_last else torch.contiguous_format


class Trainer:
    """Holds everything of one run; :meth:`fit` trains it to ``train.steps``."""

    def __init__(self, recipe: Recipe, *, quiet: bool = False):
        self.recipe = recipe
        self.env: DistEnv = dist_env()
        self.device = pick_device(recipe.train.device, self.env)
        init_distributed(self.env, self.device)
        self.main = self.env.is_main
        self.quiet = quiet or not self.main
        self.run_dir = Path(recipe.output.dir.format(name=recipe.name))
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.digest = recipe_digest(recipe)
        t = recipe.train
        micro = recipe.data.batch_size / (self.env.world_size * t.accumulate)
        if micro != int(micro) or micro < 1:
            raise TrainingError(
                f"data.batch_size {recipe.data.batch_size} is not divisible by processes ({self.env.world_size}) "
                f"x train.accumulate ({t.accumulate})"
            )
        self.micro_batch = int(micro)
        self.amp = t.amp if self.device.type == "cuda" else "none"
        self.memory_format = _memory_format(t.channels_last)
        if t.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = not t.deterministic
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

        torch.manual_seed(t.seed)  # the same initial weights on every rank
        modules = {GENERATOR: self._build_network("generators", recipe.generator.name, recipe.generator.args)}
        #: What the generator is (scale, task, channels, ...): the task takes its scale from here, and
        #: the weights carry it verbatim.
        self.descriptor = generator_descriptor(recipe, modules[GENERATOR])
        try:
            self.task = build_task(recipe, self.descriptor)
        except ScaleMismatch as exc:
            raise TrainingError(str(exc)) from None
        if recipe.discriminator is not None:
            modules[DISCRIMINATOR] = self._build_network(
                "discriminators", recipe.discriminator.name, recipe.discriminator.args
            )
        #: Generator first, then the networks that judge it (the discriminator of GAN recipes).
        self.networks: list[TrainedNetwork] = attach_training(
            modules, recipe, self.device, amp=self.amp, distributed=self.env.enabled
        )
        if recipe.generator.init:
            self._init_generator(recipe.generator.init, strict=recipe.generator.init_strict)

        self.ema = None
        if t.ema:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(self.generator, multi_avg_fn=get_ema_multi_avg_fn(t.ema), use_buffers=True)
        self.step = 0
        self.best: dict[str, float] = {}
        self.last_val: dict[str, float] = {}
        #: The task's first baseline (bicubic, the blurred input) on the validation data: what the
        #: model must beat; measured once per run and kept in checkpoints.
        self.baseline: dict[str, float] = {}
        self.previews: list[Path] = []
        #: How this run was started and how to resume it (``restore resume RUN_DIR``); set by the CLI.
        self.resume_command = f"restore resume {self.run_dir}"
        #: The --set changes given on resume (None: this run was not resumed).
        self.resumed_with: list[str] | None = None

    # -- the networks -------------------------------------------------------------------------------

    @property
    def generator_slot(self) -> TrainedNetwork:
        """The generator with its optimizer, schedule, scaler and loss terms."""
        return self.networks[0]

    @property
    def critics(self) -> list[TrainedNetwork]:
        """The networks that judge the generator (none, or the discriminator)."""
        return self.networks[1:]

    @property
    def generator(self) -> nn.Module:
        """The plain generator (not its DDP or compiled wrapper)."""
        return self.networks[0].module

    @property
    def discriminator(self) -> nn.Module | None:
        """The plain discriminator, or None for recipes without one."""
        return self.critics[0].module if self.critics else None

    @property
    def opt_g(self) -> torch.optim.Optimizer:
        """The generator's optimizer (its learning rate is logged)."""
        return self.generator_slot.optimizer

    # -- set-up -------------------------------------------------------------------------------------

    def _build_network(self, kind: str, name: str, args: dict[str, Any]) -> nn.Module:
        net = registry(kind).build(name, **args)
        return net.to(self.device, memory_format=self.memory_format)

    def _init_generator(self, ref: str, *, strict: bool) -> None:
        from restorekit.store import resolve_weights
        from restorekit.weights import WeightInfo, load_state, read_weights

        path = resolve_weights(ref)
        tensors, meta = read_weights(path)
        info = WeightInfo.from_metadata(meta, path)
        if info.name != self.recipe.generator.name:
            raise TrainingError(
                f"generator.init: {path} holds a '{info.name}' network, the recipe trains '{self.recipe.generator.name}'"
            )
        load_state(self.generator, tensors, path, strict=strict)
        self.say(f"initialised the generator from {path}")

    def _loader(self, start_batch: int) -> DataLoader:
        from restorekit.data.sampling import ResumableSampler

        settings = self.recipe.data
        dataset = self.task.train_data(**settings.train)
        sampler = ResumableSampler(
            len(dataset),
            seed=self.recipe.train.seed,
            batch_size=self.micro_batch,
            start_batch=start_batch,
            rank=self.env.rank,
            world_size=self.env.world_size,
        )
        workers = settings.workers
        # The loader's own seed comes from this generator, not the global RNG: creating the iterator on
        # a resumed run then leaves the restored global RNG state exactly as an uninterrupted run has it.
        seeds = torch.Generator().manual_seed(self.recipe.train.seed * 1_000_003 + start_batch)
        return DataLoader(
            dataset,
            batch_size=self.micro_batch,
            sampler=sampler,
            generator=seeds,
            num_workers=workers,
            pin_memory=settings.pin_memory and self.device.type == "cuda",
            persistent_workers=workers > 0,
            prefetch_factor=settings.prefetch_factor if workers > 0 else None,
            worker_init_fn=ignore_interrupt,
        )

    def say(self, message: str) -> None:
        """Print *message* on stderr unless quiet (and only on rank 0)."""
        if not self.quiet:
            from rich.console import Console

            Console(stderr=True, highlight=False).print(message, soft_wrap=True)

    # -- checkpoints --------------------------------------------------------------------------------

    def architecture(self) -> str:
        """The networks' registry names and arguments: a checkpoint must match them to be resumed."""
        return run_state_module.architecture(self.recipe)

    def state(self) -> dict[str, Any]:
        """Everything a resumed run needs (see :mod:`restorekit.train.state`)."""
        return run_state_module.run_state(self)

    def load_state(self, payload: dict[str, Any], source: Path) -> None:
        """Continue from a checkpoint's *payload*, of this version or an earlier one."""
        run_state_module.load_run_state(self, payload, source)

    def save_checkpoint(self) -> Path | None:
        if not self.main:
            return None
        path = ckpt.save_checkpoint(ckpt.checkpoint_path(self.ckpt_dir, self.step), self.state())
        ckpt.prune(self.ckpt_dir, self.recipe.output.keep_checkpoints)
        return path

    # -- one step -----------------------------------------------------------------------------------

    def _weighted_loss(
        self, net: TrainedNetwork, loss_of: Callable[[LossTerm], Tensor], logs: dict[str, Any], n: int
    ) -> Tensor:
        """The weighted sum of *net*'s loss terms; each term (and the total) averaged into *logs*."""
        total = torch.zeros((), dtype=torch.float32, device=self.device)
        for term in net.terms:
            value = loss_of(term)
            total = total + term.weight * value.float()
            key = f"{net.prefix}{term.label}"
            logs[key] = logs.get(key, 0) + value.detach().float() / n
        logs[f"{net.prefix}total"] = logs.get(f"{net.prefix}total", 0) + total.detach() / n
        return total

    def train_step(self, micro_batches: list[tuple[Tensor, Tensor]]) -> dict[str, Tensor]:
        """One generator step (and its discriminator steps) over ``accumulate`` micro-batches."""
        t = self.recipe.train
        n = len(micro_batches)
        logs: dict[str, Tensor] = {}
        fakes: list[Tensor] = []
        gen = self.generator_slot

        for critic in self.critics:
            critic.set_requires_grad(False)
        gen.optimizer.zero_grad(set_to_none=True)
        for lr, hr in micro_batches:
            with _autocast(self.device, self.amp):
                out = gen.trains(lr)
                total = self._weighted_loss(
                    gen,
                    lambda term: (
                        term.module.generator_loss(self.discriminator, hr, out) if term.adversarial else term.module(out, hr)
                    ),
                    logs,
                    n,
                )
            gen.scaler.scale(total / n).backward()
            fakes.append(out.detach())
        gen.optimizer_step(t.grad_clip)

        for critic in (c for c in self.critics if c.terms):
            critic.set_requires_grad(True)
            for _ in range(t.d_steps):
                critic.optimizer.zero_grad(set_to_none=True)
                step_logs: dict[str, Tensor] = {}
                for (_lr, hr), fake in zip(micro_batches, fakes):
                    with _autocast(self.device, self.amp):
                        total = self._weighted_loss(
                            critic, lambda term: term.module.discriminator_loss(critic.trains, hr, fake), step_logs, n
                        )
                    critic.scaler.scale(total / n).backward()
                critic.optimizer_step(t.grad_clip)
            logs.update(step_logs)  # the last discriminator step's values
            for term in critic.terms:
                penalty = getattr(term.module, "last_gradient_penalty", None)
                if penalty is not None:
                    logs[f"{critic.prefix}gradient_penalty"] = torch.as_tensor(penalty).detach()
            critic.schedule.step()
        gen.schedule.step()
        if self.ema is not None:
            self.ema.update_parameters(self.generator)
        return logs

    # -- validation ---------------------------------------------------------------------------------

    def eval_network(self) -> nn.Module:
        """The network to validate and save: the EMA copy when there is one."""
        return self.ema.module if self.ema is not None else self.generator

    def validate(self, log: MetricsLog | None) -> dict[str, float]:
        """Score the eval network on ``data.val``, log it, track the best; {} without validation data."""
        if self.recipe.data.val is None or not self.main:
            return {}
        r = self.recipe
        result = validate_network(
            self.task,
            self.task.val_data(**r.data.val),
            self.eval_network(),
            device=self.device,
            memory_format=self.memory_format,
            baseline=not self.baseline,  # the baseline does not change: measured once per run
            preview_size=r.output.preview_size if r.output.previews else None,
        )
        totals = result.metrics
        if result.baseline:
            self.baseline = dict(result.baseline)
            if log is not None:
                log.write("baseline", self.step, result.baseline)
            self.say(f"baseline ({self.baseline_name}): " + ", ".join(f"{k} {v:.4f}" for k, v in result.baseline.items()))
        if log is not None:
            log.write("val", self.step, totals)
        key = self.task.primary_metric
        if key in totals and totals[key] >= self.best.get(key, -math.inf):
            self.best = {**totals, "step": self.step}
        self.last_val = totals
        if result.preview is not None:
            path = self.run_dir / "previews" / f"step_{self.step:08d}.png"
            untrained = " (untrained)" if self.step == 0 and not r.generator.init else ""
            caption = f"step {self.step}{untrained} · {self.compare_to_baseline(totals, short=True)}"
            save_picture(labelled_strip(result.preview, caption=caption, target=result.preview_target), path)
            self.previews.append(path)
        return totals

    @property
    def baseline_name(self) -> str:
        """The task's first baseline (``bicubic``, ``identity``), or "baseline"."""
        return self.task.baselines[0] if self.task.baselines else "baseline"

    def compare_to_baseline(self, values: dict[str, float], *, short: bool = False) -> str:
        """``psnr_y 32.05 (bicubic 31.47, +0.58 better)``: the primary metric against the baseline."""
        from restorekit.train.finish import metric_verdict

        key = self.task.primary_metric if self.task.primary_metric in values else next(iter(values), None)
        if key is None:
            return "no metrics"
        if key not in self.baseline:
            return f"{key} {values[key]:.2f}"
        verdict = metric_verdict(key, values[key], self.baseline[key])
        if short:
            return f"{key} {values[key]:.2f} ({self.baseline_name} {self.baseline[key]:.2f}, {verdict})"
        return f"{key} {values[key]:.4f} against {self.baseline_name} {self.baseline[key]:.4f}: {verdict}"

    def duration_message(self, seconds_per_step: float) -> list[str]:
        """How long the run as given will take on this device, and what helps when it is days."""
        r = self.recipe
        remaining = (r.train.steps - self.step) * seconds_per_step
        device = self.device.type if self.device.type != "cuda" else torch.cuda.get_device_name(self.device)
        rate = f"{1 / seconds_per_step:.3g} it/s" if seconds_per_step < 1 else f"{seconds_per_step:.3g} s/step"
        lines = [
            f"expected duration: {r.train.steps - self.step} more steps at {rate} on {device} ≈ "
            f"{format_duration(remaining)} (validation and checkpoints not counted)"
        ]
        if remaining < 86400:
            return lines
        size_args = [k for k in ("num_blocks", "num_features", "num_conv", "num_grow_ch") if k in r.generator.args]
        smaller = " ".join(f"--set generator.args.{k}=..." for k in size_args[:2])
        hints = []
        if self.device.type != "cuda":
            hints.append("train on a GPU (--set train.device=cuda)")
        hints.append(f"a smaller network or crop ({smaller + ' ' if smaller else ''}--set data.train.crop=...)")
        hints.append(f"fewer steps (--set train.steps={max(1, int(86400 / seconds_per_step)):d} fits a day here)")
        hints.append("or fine-tune a catalogue model (--set generator.init=NAME; see 'restore models')")
        lines.append(f"[yellow]note:[/] that is {format_duration(remaining)} on this device; to go faster: " + ", ".join(hints))
        return lines

    # -- the loop -----------------------------------------------------------------------------------

    def prepare_run_dir(self, *, resume: bool, resume_from: Path | None) -> None:
        """Create the run folder; resume, or refuse to overwrite a run's checkpoints."""
        run_state_module.prepare_run_dir(self, resume=resume, resume_from=resume_from)

    def fit(self) -> TrainResult:
        log = MetricsLog(self.run_dir, tensorboard=self.recipe.output.tensorboard) if self.main else None
        try:
            return self._fit(log)
        finally:
            if log is not None:
                log.close()  # closing twice is harmless: finish_run closes it on success

    def _fit(self, log: MetricsLog | None) -> TrainResult:
        r, t = self.recipe, self.recipe.train
        loader = self._loader(start_batch=self.step * t.accumulate)
        batches = iter(loader)
        stop = False
        for net in self.networks:
            net.module.train()
        if self.resumed_with is not None and log is not None:
            log.write("resume", self.step, {"overrides": self.resumed_with})
            if self.resumed_with:
                self.say("changed on resume (recorded in metrics.jsonl): " + ", ".join(self.resumed_with))
        if self.step == 0 and log is not None:
            self.validate(log)
        timer, timer_step, pixels = time.perf_counter(), self.step, 0
        estimate = DurationEstimate(self.step, t.steps)
        # Ctrl-C and SIGTERM only ask to stop: the step in flight completes, so the checkpoint written
        # on the way out is consistent, and sync_step makes every process stop at the same step.
        with StopRequest() as signals, TrainProgress(t.steps, self.step, enabled=not self.quiet) as bar:
            while self.step < t.steps and not stop:
                micro = []
                for _ in range(t.accumulate):
                    lr, hr = self.task.make_batch(next(batches), self.device, training=True)
                    micro.append(
                        (lr.contiguous(memory_format=self.memory_format),
                         hr.contiguous(memory_format=self.memory_format))
                    )  # fmt: skip
                    pixels += hr.shape[0] * hr.shape[-1] * hr.shape[-2]
                logs = self.train_step(micro)
                self.step += 1
                per_step = estimate.observe(self.step)
                if per_step is not None:
                    for line in self.duration_message(per_step):
                        bar.log(line)
                values, stop = sync_step(self.env, logs, signals.requested, self.device)
                bad = [k for k, v in values.items() if not math.isfinite(v)]
                if bad:
                    last = ckpt.list_checkpoints(self.ckpt_dir)
                    kept = f"the last good checkpoint is {last[0][1]}" if last else "no checkpoint was written"
                    raise TrainingError(
                        f"step {self.step}: {', '.join(bad)} became {values[bad[0]]}; training stopped ({kept})"
                    )
                if self.step % r.output.log_every == 0 or self.step == t.steps:
                    elapsed = time.perf_counter() - timer
                    rate = (self.step - timer_step) / max(elapsed, 1e-9)
                    throughput = {
                        "it_s": rate,
                        "hr_mpix_s": pixels * self.env.world_size / max(elapsed, 1e-9) / 1e6,
                        "lr_g": self.generator_slot.optimizer.param_groups[0]["lr"],
                    }
                    if log is not None:
                        log.write("train", self.step, {**values, **throughput})
                    bar.update(self.step, losses={k: v for k, v in values.items() if k.endswith("total")}, rate=rate)
                    timer, timer_step, pixels = time.perf_counter(), self.step, 0
                else:
                    bar.update(self.step)
                if self.step % r.output.val_every == 0 and self.step != t.steps:
                    val = self.validate(log)
                    if val:
                        others = ", ".join(f"{k} {v:.4f}" for k, v in val.items() if k != self.task.primary_metric)
                        bar.log(f"step {self.step}: {self.compare_to_baseline(val)}" + (f"; {others}" if others else ""))
                if self.step % r.output.checkpoint_every == 0:
                    self.save_checkpoint()
        if self.step < t.steps:  # stopped on request
            self.save_checkpoint()
            barrier(self.env)  # every process reports the checkpoint once it exists
            if log is not None:
                log.close()
            command = self.resume_command
            if self.env.enabled and command.startswith("restore "):
                # The same launch as this run's: every process resumes from the one checkpoint.
                local = int(os.environ.get("LOCAL_WORLD_SIZE", self.env.world_size))
                command = f"torchrun --nproc-per-node {local} -m restorekit.cli {command[len('restore '):]}"
                if local != self.env.world_size:
                    command += " (with this run's --nnodes/--rdzv options)"
            raise TrainingStopped(
                f"stopped at step {self.step} of {t.steps}; checkpoint "
                f"{ckpt.checkpoint_path(self.ckpt_dir, self.step)}; resume with: {command}",
                step=self.step,
            )
        return finish_run(self, log)


def train(
    recipe: Recipe,
    *,
    resume: bool = False,
    resume_from: Path | None = None,
    quiet: bool = False,
    resume_overrides: list[str] | None = None,
    resume_command: str | None = None,
) -> TrainResult:
    """Train *recipe* to its last step and write its weights.

    Args:
        recipe: a validated recipe (:func:`restorekit.recipe.load_recipe`).
        resume: continue from the newest valid checkpoint in the run folder (damaged ones are skipped).
        resume_from: continue from this checkpoint file.
        quiet: no progress bar or messages.
        resume_overrides: the ``--set`` changes given on resuming, recorded in metrics.jsonl (a
            ``resume`` record) when a checkpoint is resumed.
        resume_command: the command a stopped run prints to be resumed (default
            ``restore resume RUN_DIR``).

    Raises:
        TrainingError: the run cannot start (existing run folder, bad batch split) or failed
            (NaN/inf loss).
        TrainingStopped: the run was asked to stop (Ctrl-C, SIGTERM): the step in flight completed
            and a checkpoint was written; the message names it and the command that resumes.
        KeyboardInterrupt: a second Ctrl-C, which stops at once (the last checkpoint is kept).

    Example:
        >>> from restorekit.recipe import load_recipe
        >>> result = train(load_recipe("recipes/quickstart.toml", ["train.steps=20"]))  # doctest: +SKIP
        >>> result.weights  # doctest: +SKIP
        PosixPath('runs/quickstart/quickstart.safetensors')
    """
    trainer = None
    try:
        trainer = Trainer(recipe, quiet=quiet)
        if resume_command:
            trainer.resume_command = resume_command
        trainer.prepare_run_dir(resume=resume, resume_from=resume_from)
        if trainer.step > 0:
            trainer.resumed_with = list(resume_overrides or [])
        return trainer.fit()
    finally:
        shutdown_distributed()
