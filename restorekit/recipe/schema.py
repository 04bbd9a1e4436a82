"""The shape of a recipe, as pydantic models (unknown keys are errors everywhere).

A recipe names a task, a generator, optionally a discriminator, weighted loss terms for each side,
data, training and output settings::

    name = "srresnet"
    [task]
    name = "super_resolution"
    args = { scale = 4 }
    [generator]
    name = "srresnet"
    args = { num_blocks = 16 }
    [losses.generator.pixel]
    name = "mse"
    [data]
    train = { hr = "../shared/data/train/T91", crop = 96 }
    batch_size = 16
    [train]
    steps = 1_000_000
    [train.optim.generator]
    lr = 1e-4
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ComponentSpec(Strict):
    """A registry entry and the keyword arguments of its constructor."""

    name: str
    args: dict[str, Any] = Field(default_factory=dict)


class GeneratorSpec(ComponentSpec):
    init: str | None = Field(
        default=None, description="weights to start from: a .safetensors/.pth file or a stored model name"
    )
    init_strict: bool = Field(default=True, description="require every tensor of the network in the init file")


class LossTerm(Strict):
    """One weighted loss term; a term with weight 0 is dropped (handy in derived recipes)."""

    name: str
    weight: float = 1.0
    args: dict[str, Any] = Field(default_factory=dict)


class Losses(Strict):
    """Loss terms by label, for each side: ``[losses.generator.content]``, ``[losses.discriminator.gan]``."""

    generator: dict[str, LossTerm] = Field(min_length=1)
    discriminator: dict[str, LossTerm] = Field(default_factory=dict)


class DataSpec(Strict):
    train: dict[str, Any] = Field(description="settings for the task's train_data()")
    val: dict[str, Any] | None = Field(default=None, description="settings for the task's val_data()")
    batch_size: int = Field(default=16, ge=1, description="global batch size (split across processes)")
    workers: int = Field(default=2, ge=0, description="data-loader worker processes (per process)")
    pin_memory: bool = True
    prefetch_factor: int = Field(default=4, ge=1)


class OptimizerSpec(Strict):
    name: Literal["adam", "adamw"] = "adam"
    lr: float = Field(default=1e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(default=1e-8, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    fused: bool | None = Field(default=None, description="fused CUDA kernels; None = when available")


class ScheduleSpec(Strict):
    """Learning-rate schedule in generator steps, with an optional linear warm-up."""

    name: Literal["constant", "multistep", "cosine", "linear"] = "constant"
    milestones: list[int] = Field(default_factory=list, description="multistep: steps where lr *= gamma")
    gamma: float = Field(default=0.5, gt=0)
    warmup_steps: int = Field(default=0, ge=0)
    decay_start: int = Field(default=0, ge=0, description="linear/cosine: step where the decay begins")
    min_lr_ratio: float = Field(default=0.0, ge=0, le=1, description="linear/cosine: final lr / initial lr")


class TrainSpec(Strict):
    steps: int = Field(ge=1, description="generator steps")
    seed: int = 0
    d_steps: int = Field(default=1, ge=1, description="discriminator steps per generator step")
    accumulate: int = Field(default=1, ge=1, description="gradient accumulation (micro-batches per step)")
    grad_clip: float | None = Field(default=None, gt=0, description="max gradient norm for both networks")
    ema: float | None = Field(default=None, gt=0, lt=1, description="EMA decay of the generator, e.g. 0.999")
    amp: Literal["none", "bf16", "fp16"] = Field(default="bf16", description="autocast on CUDA; CPU runs fp32")
    channels_last: bool = Field(default=True, description="channels_last memory format (CPU and CUDA)")
    compile: bool = False
    device: str = "auto"
    deterministic: bool = False
    optim: dict[Literal["generator", "discriminator"], OptimizerSpec] = Field(default_factory=dict)
    schedule: dict[Literal["generator", "discriminator"], ScheduleSpec] = Field(default_factory=dict)


class OutputSpec(Strict):
    dir: str = Field(default="runs/{name}", description="run folder; {name} is the recipe name")
    checkpoint_every: int = Field(default=1000, ge=1)
    keep_checkpoints: int = Field(default=3, ge=1)
    val_every: int = Field(default=1000, ge=1)
    log_every: int = Field(default=50, ge=1)
    previews: bool = True
    preview_size: int = Field(default=128, ge=16, description="side of the preview crop, in input pixels")
    tensorboard: bool = True
    store: bool = Field(default=True, description="add the final weights to the model store under the name")


class Recipe(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    description: str = ""
    task: ComponentSpec
    generator: GeneratorSpec
    discriminator: ComponentSpec | None = None
    losses: Losses
    data: DataSpec
    train: TrainSpec
    output: OutputSpec = Field(default_factory=OutputSpec)

    @model_validator(mode="after")
    def _drop_zero_weights(self) -> Recipe:
        for side in (self.losses.generator, self.losses.discriminator):
            for label in [k for k, term in side.items() if term.weight == 0]:
                del side[label]
        return self
