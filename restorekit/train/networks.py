"""The networks a run trains, each with everything that travels with it.

A generator (and, for GAN recipes, a discriminator) each own an optimizer, a learning-rate schedule, a
gradient scaler and loss terms. Holding them in one :class:`TrainedNetwork` lets the trainer step,
checkpoint and resume every network in one loop instead of keeping ``x_g``/``x_d`` twins.

The checkpoint layout is unchanged from the twin-attribute trainer: one section per kind of state
(``models``, ``optimizers``, ``schedulers``, ``scalers``), each keyed by the network's role, so
checkpoints written before this module existed still resume.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from restorekit.losses.base import is_adversarial
from restorekit.plugins import registry
from restorekit.recipe.schema import OptimizerSpec, Recipe, ScheduleSpec
from restorekit.train.errors import TrainingError
from restorekit.train.optim import Schedule, build_optimizer

GENERATOR = "generator"
DISCRIMINATOR = "discriminator"

#: Checkpoint section -> the TrainedNetwork attribute whose state it holds (the pre-refactor layout).
CHECKPOINT_SECTIONS: dict[str, str] = {
    "models": "module",
    "optimizers": "optimizer",
    "schedulers": "schedule",
    "scalers": "scaler",
}


@dataclass
class LossTerm:
    """One weighted loss of a network; adversarial terms also see the other network."""

    label: str
    weight: float
    module: nn.Module
    adversarial: bool


@dataclass
class TrainedNetwork:
    """A network and what trains it.

    Attributes:
        role: ``"generator"`` or ``"discriminator"``: its key in checkpoints and its log prefix.
        module: The plain network (what is saved and averaged).
        trains: The module the step calls: ``module`` itself, or its DDP / compiled wrapper.
        optimizer: Its optimizer.
        schedule: Its learning-rate schedule.
        scaler: Its gradient scaler (a no-op unless fp16 autocast is on).
        terms: Its loss terms, in recipe order.
    """

    role: str
    module: nn.Module
    trains: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    scaler: torch.amp.GradScaler
    terms: list[LossTerm]

    @property
    def prefix(self) -> str:
        """Log-key prefix of its losses: ``g_`` or ``d_``."""
        return f"{self.role[0]}_"

    def set_requires_grad(self, flag: bool) -> None:
        for p in self.module.parameters():
            p.requires_grad_(flag)

    def optimizer_step(self, grad_clip: float | None) -> None:
        """Unscale and clip (when asked), then step the optimizer through the scaler."""
        if grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()


def build_losses(recipe: Recipe, device: torch.device) -> dict[str, list[LossTerm]]:
    """Loss terms per role; the same (name, args) on both sides shares one module instance."""
    shared: dict[str, nn.Module] = {}
    sides: dict[str, list[LossTerm]] = {}
    for role, terms in ((GENERATOR, recipe.losses.generator), (DISCRIMINATOR, recipe.losses.discriminator)):
        built = []
        for label, term in terms.items():
            key = json.dumps([term.name, term.args], sort_keys=True)
            if key not in shared:
                shared[key] = registry("losses").build(term.name, **term.args).to(device)
            built.append(LossTerm(label, term.weight, shared[key], is_adversarial(shared[key])))
        sides[role] = built
    return sides


def attach_training(
    modules: dict[str, nn.Module],
    recipe: Recipe,
    device: torch.device,
    *,
    amp: str,
    distributed: bool,
) -> list[TrainedNetwork]:
    """Give each built network its optimizer, schedule, scaler, loss terms and training wrapper.

    Args:
        modules: Role -> plain network on *device*, generator first.
        recipe: The run's recipe (optimizer and schedule tables per role; the discriminator falls back
            to the generator's table when it has none).
        device: Where the run trains.
        amp: ``"none"``, ``"bf16"`` or ``"fp16"`` (only fp16 turns the scalers on).
        distributed: Wrap each network in DDP.
    """
    t = recipe.train
    losses = build_losses(recipe, device)
    ids = [device.index] if device.type == "cuda" else None
    networks = []
    for role, module in modules.items():
        optim_spec = t.optim.get(role, t.optim.get(GENERATOR, OptimizerSpec()))
        schedule_spec = t.schedule.get(role, t.schedule.get(GENERATOR, ScheduleSpec()))
        optimizer = build_optimizer(optim_spec, module.parameters(), device)
        trains: nn.Module = DDP(module, device_ids=ids) if distributed else module
        if t.compile and role == GENERATOR:  # train.compile has always meant the generator only
            trains = torch.compile(trains)
        networks.append(
            TrainedNetwork(
                role=role,
                module=module,
                trains=trains,
                optimizer=optimizer,
                schedule=Schedule(optimizer, schedule_spec, t.steps),
                scaler=torch.amp.GradScaler(device.type, enabled=amp == "fp16"),
                terms=losses.get(role, []),
            )
        )
    return networks


def network_state(networks: list[TrainedNetwork]) -> dict[str, dict[str, Any]]:
    """The ``models``/``optimizers``/``schedulers``/``scalers`` sections of a checkpoint."""
    return {
        section: {net.role: getattr(net, attr).state_dict() for net in networks}
        for section, attr in CHECKPOINT_SECTIONS.items()
    }


def load_network_state(networks: list[TrainedNetwork], payload: dict[str, Any], source: str) -> None:
    """Restore every network from a checkpoint's sections (any checkpoint this trainer ever wrote)."""
    for section, attr in CHECKPOINT_SECTIONS.items():
        states = payload.get(section, {})
        for net in networks:
            if net.role not in states:
                raise TrainingError(f"{source}: the checkpoint has no {section} state for the {net.role}")
            try:
                getattr(net, attr).load_state_dict(states[net.role])
            except (RuntimeError, ValueError, KeyError, TypeError) as exc:
                # Tensors that do not fit the networks (or optimizer groups of another recipe).
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise TrainingError(f"{source}: the {net.role}'s {section} state does not fit: {first[:300]}") from None
