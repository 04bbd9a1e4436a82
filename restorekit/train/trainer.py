"""The one trainer for every recipe: pretraining and adversarial training alike.

A step reads the same on CPU and GPU: ``autocast`` and ``GradScaler`` are no-ops where not needed.
Each generator step runs the generator on ``accumulate`` micro-batches with its loss terms (the
adversarial ones through the frozen discriminator), then ``d_steps`` discriminator updates on the same
real/fake pairs. GAN flavours differ only in their loss objects; the loop never special-cases one.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from restorekit.losses.base import is_adversarial
from restorekit.plugins import registry
from restorekit.recipe import recipe_digest, recipe_to_toml
from restorekit.recipe.schema import OptimizerSpec, Recipe, ScheduleSpec
from restorekit.train import checkpoint as ckpt
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
from restorekit.train.errors import TrainingError
from restorekit.train.optim import Schedule, build_optimizer
from restorekit.train.reporting import MetricsLog, TrainProgress, save_preview, write_gif


@dataclass
class LossTerm:
    label: str
    weight: float
    module: nn.Module
    adversarial: bool


@dataclass
class TrainResult:
    """What a finished run produced."""

    run_dir: Path
    weights: Path | None
    step: int
    metrics: dict[str, float] = field(default_factory=dict)
    stored: Path | None = None


def _build_losses(recipe: Recipe, device: torch.device) -> tuple[list[LossTerm], list[LossTerm]]:
    """Loss modules for both sides; the same (name, args) on both sides shares one instance."""
    shared: dict[str, nn.Module] = {}
    sides = []
    for terms in (recipe.losses.generator, recipe.losses.discriminator):
        built = []
        for label, term in terms.items():
            key = json.dumps([term.name, term.args], sort_keys=True)
            if key not in shared:
                shared[key] = registry("losses").build(term.name, **term.args).to(device)
            module = shared[key]
            built.append(LossTerm(label, term.weight, module, is_adversarial(module)))
        sides.append(built)
    return sides[0], sides[1]


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
        self.task = registry("tasks").build(recipe.task.name, **recipe.task.args)
        self.generator = self._build_network("generators", recipe.generator.name, recipe.generator.args)
        self.discriminator = (
            self._build_network("discriminators", recipe.discriminator.name, recipe.discriminator.args)
            if recipe.discriminator is not None
            else None
        )
        if recipe.generator.init:
            self._init_generator(recipe.generator.init, strict=recipe.generator.init_strict)
        self.g_terms, self.d_terms = _build_losses(recipe, self.device)

        self.ema = None
        if t.ema:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(self.generator, multi_avg_fn=get_ema_multi_avg_fn(t.ema), use_buffers=True)

        self.opt_g = build_optimizer(t.optim.get("generator", OptimizerSpec()), self.generator.parameters(), self.device)
        self.sched_g = Schedule(self.opt_g, t.schedule.get("generator", ScheduleSpec()), t.steps)
        self.opt_d = self.sched_d = None
        if self.discriminator is not None:
            self.opt_d = build_optimizer(
                t.optim.get("discriminator", t.optim.get("generator", OptimizerSpec())),
                self.discriminator.parameters(),
                self.device,
            )
            self.sched_d = Schedule(
                self.opt_d, t.schedule.get("discriminator", t.schedule.get("generator", ScheduleSpec())), t.steps
            )
        fp16 = self.amp == "fp16"
        self.scaler_g = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.scaler_d = torch.amp.GradScaler(self.device.type, enabled=fp16)

        # DDP wraps the networks that train; `self.generator` stays the plain module for saving.
        self.g_train: nn.Module = self.generator
        self.d_train: nn.Module | None = self.discriminator
        if self.env.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.g_train = DDP(self.generator, device_ids=ids)
            if self.discriminator is not None:
                self.d_train = DDP(self.discriminator, device_ids=ids)
        if t.compile:
            self.g_train = torch.compile(self.g_train)
        self.step = 0
        self.best: dict[str, float] = {}
        self.last_val: dict[str, float] = {}
        self.previews: list[Path] = []

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
        self._say(f"initialised the generator from {path}")

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
        return DataLoader(
            dataset,
            batch_size=self.micro_batch,
            sampler=sampler,
            num_workers=workers,
            pin_memory=settings.pin_memory and self.device.type == "cuda",
            persistent_workers=workers > 0,
            prefetch_factor=settings.prefetch_factor if workers > 0 else None,
            worker_init_fn=ignore_interrupt,
        )

    def _say(self, message: str) -> None:
        if not self.quiet:
            from rich.console import Console

            Console(stderr=True, highlight=False).print(message)

    # -- checkpoints --------------------------------------------------------------------------------

    def architecture(self) -> str:
        """The networks' registry names and arguments: a checkpoint must match them to be resumed."""
        r = self.recipe
        return json.dumps(
            {
                "generator": [r.generator.name, r.generator.args],
                "discriminator": [r.discriminator.name, r.discriminator.args] if r.discriminator else None,
            },
            sort_keys=True,
        )

    def state(self) -> dict[str, Any]:
        models = {"generator": self.generator.state_dict()}
        optimizers = {"generator": self.opt_g.state_dict()}
        schedulers = {"generator": self.sched_g.state_dict()}
        scalers = {"generator": self.scaler_g.state_dict()}
        if self.discriminator is not None:
            models["discriminator"] = self.discriminator.state_dict()
            optimizers["discriminator"] = self.opt_d.state_dict()
            schedulers["discriminator"] = self.sched_d.state_dict()
            scalers["discriminator"] = self.scaler_d.state_dict()
        if self.ema is not None:
            models["ema"] = self.ema.state_dict()
        return {
            "step": self.step,
            "recipe_digest": self.digest,
            "recipe": recipe_to_toml(self.recipe),
            "architecture": self.architecture(),
            "models": models,
            "optimizers": optimizers,
            "schedulers": schedulers,
            "scalers": scalers,
            "rng": ckpt.capture_rng(),
            "best": dict(self.best),
            "last_val": dict(self.last_val),
            "previews": [str(p) for p in self.previews],
        }

    def load_state(self, payload: dict[str, Any], source: Path) -> None:
        if payload.get("architecture") != self.architecture():
            raise TrainingError(
                f"{source}: the checkpoint was trained with another architecture ({payload.get('architecture')}); "
                "resume with the recipe it was made with, or start a new run folder"
            )
        if payload.get("recipe_digest") != self.digest:
            self._say(f"[yellow]note:[/] the recipe changed since {source.name}; continuing with the new settings")
        models = payload["models"]
        self.generator.load_state_dict(models["generator"])
        self.opt_g.load_state_dict(payload["optimizers"]["generator"])
        self.sched_g.load_state_dict(payload["schedulers"]["generator"])
        self.scaler_g.load_state_dict(payload["scalers"]["generator"])
        if self.discriminator is not None:
            self.discriminator.load_state_dict(models["discriminator"])
            self.opt_d.load_state_dict(payload["optimizers"]["discriminator"])
            self.sched_d.load_state_dict(payload["schedulers"]["discriminator"])
            self.scaler_d.load_state_dict(payload["scalers"]["discriminator"])
        if self.ema is not None:
            if "ema" not in models:
                raise TrainingError(f"{source}: the checkpoint has no EMA weights but train.ema is set")
            self.ema.load_state_dict(models["ema"])
        self.step = int(payload["step"])
        self.best = dict(payload.get("best", {}))
        self.last_val = dict(payload.get("last_val", {}))
        self.previews = [Path(p) for p in payload.get("previews", []) if Path(p).is_file()]
        ckpt.restore_rng(payload["rng"])

    def save_checkpoint(self) -> Path | None:
        if not self.main:
            return None
        path = ckpt.save_checkpoint(ckpt.checkpoint_path(self.ckpt_dir, self.step), self.state())
        ckpt.prune(self.ckpt_dir, self.recipe.output.keep_checkpoints)
        return path

    # -- one step -----------------------------------------------------------------------------------

    def _set_requires_grad(self, net: nn.Module | None, flag: bool) -> None:
        if net is not None:
            for p in net.parameters():
                p.requires_grad_(flag)

    def _clip_and_step(self, net: nn.Module, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
        if self.recipe.train.grad_clip:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(net.parameters(), self.recipe.train.grad_clip)
        scaler.step(opt)
        scaler.update()

    def train_step(self, micro_batches: list[tuple[Tensor, Tensor]]) -> dict[str, Tensor]:
        """One generator step (and its discriminator steps) over ``accumulate`` micro-batches."""
        t = self.recipe.train
        n = len(micro_batches)
        logs: dict[str, Tensor] = {}
        fakes: list[Tensor] = []

        self._set_requires_grad(self.discriminator, False)
        self.opt_g.zero_grad(set_to_none=True)
        for lr, hr in micro_batches:
            with _autocast(self.device, self.amp):
                out = self.g_train(lr)
                total = out.new_zeros((), dtype=torch.float32)
                for term in self.g_terms:
                    if term.adversarial:
                        value = term.module.generator_loss(self.discriminator, hr, out)
                    else:
                        value = term.module(out, hr)
                    total = total + term.weight * value.float()
                    logs[f"g_{term.label}"] = logs.get(f"g_{term.label}", 0) + value.detach().float() / n
            self.scaler_g.scale(total / n).backward()
            logs["g_total"] = logs.get("g_total", 0) + total.detach() / n
            fakes.append(out.detach())
        self._clip_and_step(self.generator, self.opt_g, self.scaler_g)

        if self.discriminator is not None and self.d_terms:
            self._set_requires_grad(self.discriminator, True)
            for _ in range(t.d_steps):
                self.opt_d.zero_grad(set_to_none=True)
                d_logs: dict[str, Tensor] = {}
                for (_lr, hr), fake in zip(micro_batches, fakes):
                    with _autocast(self.device, self.amp):
                        total = fake.new_zeros((), dtype=torch.float32)
                        for term in self.d_terms:
                            value = term.module.discriminator_loss(self.d_train, hr, fake)
                            total = total + term.weight * value.float()
                            d_logs[f"d_{term.label}"] = d_logs.get(f"d_{term.label}", 0) + value.detach().float() / n
                    self.scaler_d.scale(total / n).backward()
                    d_logs["d_total"] = d_logs.get("d_total", 0) + total.detach() / n
                self._clip_and_step(self.discriminator, self.opt_d, self.scaler_d)
            logs.update(d_logs)  # the last discriminator step's values
            for term in self.d_terms:
                penalty = getattr(term.module, "last_gradient_penalty", None)
                if penalty is not None:
                    logs["d_gradient_penalty"] = torch.as_tensor(penalty).detach()
            self.sched_d.step()
        self.sched_g.step()
        if self.ema is not None:
            self.ema.update_parameters(self.generator)
        return logs

    # -- validation ---------------------------------------------------------------------------------

    def eval_network(self) -> nn.Module:
        """The network to validate and save: the EMA copy when there is one."""
        return self.ema.module if self.ema is not None else self.generator

    @torch.no_grad()
    def validate(self, log: MetricsLog | None) -> dict[str, float]:
        if self.recipe.data.val is None or not self.main:
            return {}
        net = self.eval_network()
        was_training = net.training
        net.eval()
        dataset = self.task.val_data(**self.recipe.data.val)
        totals: dict[str, float] = {}
        baseline: dict[str, float] = {}
        preview = None
        for index in range(len(dataset)):
            item = dataset[index]
            batch = {k: v[None] for k, v in item.items() if isinstance(v, Tensor)}
            inp, target = self.task.make_batch(batch, self.device, training=False)
            out = net(inp.contiguous(memory_format=self.memory_format)).float().clamp(0, 1)
            for key, value in self.task.metrics(out, target).items():
                totals[key] = totals.get(key, 0.0) + value / len(dataset)
            if not self.best:
                for key, value in self.task.baseline_metrics(inp, target).items():
                    baseline[key] = baseline.get(key, 0.0) + value / len(dataset)
            if index == 0 and self.recipe.output.previews:
                preview = self._preview_crop(net, inp, target)
        net.train(was_training)
        if baseline and log is not None:
            log.write("baseline", self.step, baseline)
            self._say("baseline (no model): " + ", ".join(f"{k} {v:.4f}" for k, v in baseline.items()))
        if log is not None:
            log.write("val", self.step, totals)
        key = self.task.primary_metric
        if key in totals and totals[key] >= self.best.get(key, -math.inf):
            self.best = {**totals, "step": self.step}
        self.last_val = totals
        if preview is not None:
            path = self.run_dir / "previews" / f"step_{self.step:08d}.png"
            save_preview(preview, path)
            self.previews.append(path)
        return totals

    def _preview_crop(self, net: nn.Module, inp: Tensor, target: Tensor) -> Tensor:
        size = self.recipe.output.preview_size
        h, w = inp.shape[-2:]
        top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
        crop = inp[..., top : top + size, left : left + size]
        s = self.task.scale
        tgt = target[..., top * s : (top + crop.shape[-2]) * s, left * s : (left + crop.shape[-1]) * s]
        out = net(crop.contiguous(memory_format=self.memory_format)).float().clamp(0, 1)
        return self.task.preview(crop, out, tgt)

    # -- the loop -----------------------------------------------------------------------------------

    def prepare_run_dir(self, *, resume: bool, resume_from: Path | None) -> None:
        """Create the run folder; refuse to overwrite a run's checkpoints unless resuming."""
        if resume_from is not None:
            payload = ckpt.load_checkpoint(resume_from) if resume_from.is_file() else None
            if payload is None:
                raise TrainingError(f"{resume_from}: no such checkpoint")
            self.load_state(payload, resume_from)
            self._say(f"resuming from {resume_from} (step {self.step})")
        elif resume:
            found = ckpt.newest_valid(self.ckpt_dir)
            if found is None:
                self._say(f"no checkpoint in {self.ckpt_dir}; starting a new run")
            else:
                path, payload = found
                self.load_state(payload, path)
                self._say(f"resuming from {path} (step {self.step})")
        elif ckpt.list_checkpoints(self.ckpt_dir):
            raise TrainingError(
                f"{self.run_dir}: holds checkpoints of an earlier run; add --resume to continue it, "
                f"or choose another folder with --set output.dir=..."
            )
        if self.main:
            (self.run_dir / "previews").mkdir(parents=True, exist_ok=True)
            for folder in (self.ckpt_dir, self.run_dir, self.run_dir / "previews"):
                ckpt.remove_temporaries(folder)  # left by a killed run; only rank 0 writes here
            from restorekit.fileio import atomic_write_text

            atomic_write_text(self.run_dir / "recipe.toml", recipe_to_toml(self.recipe))
        barrier(self.env)

    def fit(self) -> TrainResult:
        r, t = self.recipe, self.recipe.train
        log = MetricsLog(self.run_dir, tensorboard=r.output.tensorboard) if self.main else None
        loader = self._loader(start_batch=self.step * t.accumulate)
        batches = iter(loader)
        stop = False
        self.generator.train()
        if self.discriminator is not None:
            self.discriminator.train()
        if self.step == 0 and log is not None:
            self.validate(log)
        timer, timer_step, pixels = time.perf_counter(), self.step, 0
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
                        "lr_g": self.opt_g.param_groups[0]["lr"],
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
                        bar.log(f"step {self.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in val.items()))
                if self.step % r.output.checkpoint_every == 0:
                    self.save_checkpoint()
        if self.step < t.steps:  # stopped on request
            self.save_checkpoint()
            barrier(self.env)  # every process reports the checkpoint once it exists
            if log is not None:
                log.close()
            raise TrainingError(
                f"interrupted at step {self.step}; checkpoint written to "
                f"{ckpt.checkpoint_path(self.ckpt_dir, self.step)}; continue with --resume"
            )
        return self._finish(log)

    def _finish(self, log: MetricsLog | None) -> TrainResult:
        r = self.recipe
        val = self.validate(log) if self.recipe.data.val is not None else {}
        if self.step % r.output.checkpoint_every != 0:
            self.save_checkpoint()
        weights = stored = None
        if self.main:
            from restorekit.weights import WeightInfo, save_weights

            gen_comp = registry("generators").get(r.generator.name)
            info = WeightInfo(
                name=r.generator.name,
                args=r.generator.args,
                plugin=gen_comp.plugin,
                task=r.task.name,
                scale=int(getattr(self.generator, "scale", self.task.scale)),
                recipe_name=r.name,
                recipe_digest=self.digest,
                metrics=val,
                extra={"steps": str(self.step)},
            )
            weights = save_weights(self.eval_network(), self.run_dir / f"{r.name}.safetensors", info)
            if self.previews:
                write_gif(self.previews, self.run_dir / "previews.gif")
            self._before_after()
            if r.output.store:
                from restorekit.store import add_to_store

                stored = add_to_store(r.name, weights, source="run")
            if log is not None:
                log.write("done", self.step, {"weights": str(weights), **val})
                log.close()
            self._say(f"[green]done[/] {self.step} steps; weights: {weights}" + (f" (stored as '{r.name}')" if stored else ""))
        barrier(self.env)
        return TrainResult(self.run_dir, weights, self.step, val, stored)

    @torch.no_grad()
    def _before_after(self) -> None:
        """Baseline (bicubic or the blurred input) | restored, on the first validation image."""
        if self.recipe.data.val is None:
            return
        dataset = self.task.val_data(**self.recipe.data.val)
        if len(dataset) == 0:
            return
        item = dataset[0]
        batch = {k: v[None] for k, v in item.items() if isinstance(v, Tensor)}
        inp, target = self.task.make_batch(batch, self.device, training=False)
        net = self.eval_network().eval()
        out = net(inp).float().clamp(0, 1)
        if self.task.scale > 1:
            from restorekit.data.resize import imresize

            base = imresize(inp.float(), float(self.task.scale)).clamp(0, 1)
        else:
            base = inp.float()
        save_preview(torch.cat([base[0], out[0]], dim=-1).cpu(), self.run_dir / "before_after.png")


def train(
    recipe: Recipe, *, resume: bool = False, resume_from: Path | None = None, quiet: bool = False
) -> TrainResult:
    """Train *recipe* to its last step and write its weights.

    Args:
        recipe: a validated recipe (:func:`restorekit.recipe.load_recipe`).
        resume: continue from the newest valid checkpoint in the run folder (damaged ones are skipped).
        resume_from: continue from this checkpoint file.
        quiet: no progress bar or messages.

    Raises:
        TrainingError: the run cannot start (existing run folder, bad batch split) or stopped
            (NaN/inf loss, interruption — on Ctrl-C or SIGTERM the step in flight completes and a
            checkpoint is written first).
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
        trainer.prepare_run_dir(resume=resume, resume_from=resume_from)
        return trainer.fit()
    finally:
        shutdown_distributed()
