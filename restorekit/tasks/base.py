"""The contract between a task and the trainer, and how a task is judged.

A task says how it is trained (:meth:`Task.train_data`, :meth:`Task.make_batch`) and how it is
evaluated: which benchmark folders it reads and how missing inputs are made (:meth:`Task.benchmark`),
its metrics in table order (:attr:`Task.metric_names`, :meth:`Task.metrics`) and the trivial answers a
model must beat (:attr:`Task.baselines`, :meth:`Task.baseline`). ``Trainer.validate`` and
``restore eval`` both go through these, so validation numbers equal benchmark numbers on the same data.

Metrics are names from the metric registry (:mod:`restorekit.metrics.registry`); the task supplies
the protocol's border (:meth:`Task.metric_border`) and may map generic names to its own
(:attr:`Task.metric_aliases`: super-resolution reads ``psnr`` as ``psnr_y``). The built-in tasks take
the list as a constructor argument (``task.args.metrics`` in a recipe).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, overload

import torch
from torch import Tensor
from torch.utils.data import Dataset

if TYPE_CHECKING:
    from restorekit.metrics.selection import MetricSet

__all__ = ["EvalSample", "EvalSet", "PreviewPanel", "Task"]


@dataclass(frozen=True)
class PreviewPanel:
    """One labelled picture of a training preview.

    Attributes:
        label: What the panel shows, in the field's words (``LR``, ``bicubic``, ``output``, ``HR``).
        image: A ``(3, H, W)`` float CPU image in [0, 1], the size of the target.
        scored: Whether the panel's PSNR against the target is printed under its label (baselines and
            the output are; the input and the target itself are not).
    """

    label: str
    image: Tensor
    scored: bool = True


@dataclass(frozen=True)
class EvalSample:
    """One benchmark image: the model input and the reference, both ``(C, H, W)`` float in [0, 1].

    Attributes:
        name: path below the data folder without suffix (``baby``, ``GOPR0384_11_00/000001``).
        input: exactly what the model gets (8-bit levels / 255 for benchmark files).
        target: the reference image, already cropped as the protocol says (SR: to a multiple of scale).

    For code written against the validation datasets of earlier versions, a sample also reads like the
    dict they returned: ``sample["input"]``, ``sample["target"]``, ``sample["name"]``, ``sample.items()``.
    """

    name: str
    input: Tensor
    target: Tensor

    # -- the dict view of earlier versions (``{"input", "target", "name"}``) ---------------------------

    def keys(self) -> tuple[str, ...]:
        return ("input", "target", "name")

    def items(self) -> list[tuple[str, Any]]:
        return [(key, getattr(self, key)) for key in self.keys()]

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return key in self.keys()


class EvalSet(Sequence[EvalSample]):
    """The evaluation images of one benchmark folder, loaded one at a time on ``__getitem__``.

    Args:
        root: the reference folder (its string form is what ``EvaluationResult.data`` shows).
        names: the name of each sample (path below the folder, without suffix).
        paths: the reference file of each sample (for messages and for listing).
        load: ``load(i) -> (input, target)`` for sample *i*; raises ``DataError``/``ImageReadError``
            naming the file.
        settings: how the inputs and metrics are made (``protocol``, ``border``, ``lr_source``, ...).

    Example:
        >>> samples = EvalSet(Path("x"), ["a"], [Path("x/a.png")], lambda i: (torch.zeros(3, 2, 2),) * 2, {})
        >>> len(samples), samples[0].name
        (1, 'a')
    """

    def __init__(
        self,
        root: Path,
        names: Sequence[str],
        paths: Sequence[Path],
        load: Callable[[int], tuple[Tensor, Tensor]],
        settings: dict[str, Any] | None = None,
    ):
        if len(names) != len(paths):
            raise ValueError("names and paths differ in length")
        self.root = Path(root)
        self.names = list(names)
        self.paths = list(paths)
        self.settings: dict[str, Any] = dict(settings or {})
        self._load = load

    def __len__(self) -> int:
        return len(self.names)

    @overload
    def __getitem__(self, index: int) -> EvalSample: ...

    @overload
    def __getitem__(self, index: slice) -> list[EvalSample]: ...

    def __getitem__(self, index: int | slice) -> EvalSample | list[EvalSample]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = int(index)  # a SampleKey from a key-driven sampler reads as its index elsewhere
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} of {len(self)}")
        model_input, target = self._load(index)
        return EvalSample(self.names[index], model_input, target)

    def __iter__(self) -> Iterator[EvalSample]:
        for index in range(len(self)):
            yield self[index]

    def __repr__(self) -> str:
        return f"EvalSet({str(self.root)!r}, {len(self)} images, {self.settings.get('protocol', '')!r})"


class Task:
    """Base class for tasks; subclasses take explicit keyword arguments (the recipe's ``task.args``).

    Every member added for evaluation has a default here, so a task written against earlier versions
    still imports and trains; it just cannot be benchmarked until it implements :meth:`benchmark`.

    Attributes:
        name: registry name.
        scale: output size / input size (1 for deblurring).
        primary_metric: the validation metric used to rank models (``psnr_y``, ``psnr``).
        metric_names: the metrics :meth:`metrics` returns, in table order (on the class: the default;
            a built-in task's instance holds the chosen list).
        metric_aliases: generic metric names this task reads as its own (``{"psnr": "psnr_y"}``).
        baselines: names that stand for a trivial model in ``restore eval`` (``bicubic``, ``identity``).
    """

    name = "task"
    scale: int | None = 1
    primary_metric = "psnr"
    metric_names: tuple[str, ...] = ()
    metric_aliases: Mapping[str, str] = MappingProxyType({})
    baselines: tuple[str, ...] = ()

    def train_data(self, **settings: Any) -> Dataset:
        """Training dataset from the recipe's ``data.train`` table.

        Items are dicts of CPU float tensors in [0, 1], CHW, all of one size so that they batch.
        """
        raise NotImplementedError

    def val_data(self, **settings: Any) -> Sequence[Any]:
        """Validation images from the recipe's ``data.val`` table; whole images, batch size 1.

        The built-in tasks return the :class:`EvalSet` of :meth:`benchmark`, so validation inputs are
        made exactly as ``restore eval`` makes them.
        """
        raise NotImplementedError

    def benchmark(
        self,
        data: str | Path,
        *,
        inputs: str | Path | None = None,
        include: Sequence[str] | None = None,
        limit: int | None = None,
        max_pixels: int | None = None,
    ) -> EvalSet:
        """The evaluation images of a benchmark folder, in this task's layouts and protocol.

        Args:
            data: the folder of reference images (or a benchmark root the task understands).
            inputs: the folder of model inputs matched by name; None makes them as the protocol says.
            include: only these file names (or stems).
            limit: only the first N images.
            max_pixels: raise Pillow's decompression-bomb limit.

        Raises:
            NotImplementedError: the task does not define a benchmark protocol.
        """
        raise NotImplementedError(
            f"task '{self.name}' does not define a benchmark protocol (Task.benchmark); it cannot be evaluated"
        )

    def baseline(self, name: str, model_input: Tensor) -> Tensor:
        """The output of the baseline *name* (one of :attr:`baselines`) for one ``(C, H, W)`` input.

        Raises:
            ValueError: *name* is not a baseline of this task.
        """
        raise ValueError(f"task '{self.name}' has no baseline {name!r}")

    def make_batch(
        self, batch: dict[str, Tensor], device: torch.device, *, training: bool = True
    ) -> tuple[Tensor, Tensor]:
        """Move a loaded batch to *device* and return ``(model_input, target)``.

        Degradations that can run batched on the device (bicubic downscale, blur, noise) run here;
        random ones only when *training* (validation inputs are deterministic).
        """
        raise NotImplementedError

    def metrics(self, output: Tensor, target: Tensor) -> dict[str, float]:
        """Metrics of one output against its target (``(C, H, W)`` or ``(1, C, H, W)``).

        The base class scores :attr:`metric_names` through the metric registry with
        :meth:`metric_border`; a task that declares registered names needs nothing more.
        """
        if not self.metric_names:
            raise NotImplementedError
        return self.metric_set()(output, target)

    # -- metrics from the registry --------------------------------------------------------------------

    def metric_border(self) -> int:
        """Pixels every metric of this task's protocol shaves from each side (super-resolution: the scale)."""
        return 0

    def choose_metrics(self, names: Iterable[str], *, keep_primary: bool = False) -> tuple[str, ...]:
        """Registered metric names for *names*, with this task's aliases, duplicates dropped, order kept.

        Args:
            names: metric names, e.g. ``["psnr", "ssim", "lpips", "niqe"]``.
            keep_primary: put :attr:`primary_metric` first when *names* leaves it out (the trainer ranks
                validations by it).

        Raises:
            ValueError: a name no plugin registered (the message lists the closest ones), or not a list
                of names.
        """
        from restorekit.metrics.selection import resolve_metric_names
        from restorekit.registry import RegistryError

        try:
            chosen = resolve_metric_names(names, aliases=self.metric_aliases)
        except RegistryError as exc:
            raise ValueError(f"metrics: {exc}") from None
        if keep_primary and self.primary_metric not in chosen:
            chosen = (self.primary_metric, *chosen)
        return chosen

    def metric_set(self, names: Iterable[str] | None = None) -> MetricSet:
        """:attr:`metric_names` (or *names*) bound to this task's border; each list is built once per task.

        Raises:
            ValueError: an unregistered name.
        """
        from restorekit.metrics.selection import MetricSet

        chosen = self.choose_metrics(self.metric_names if names is None else names)
        border = self.metric_border()
        # Built metrics hold networks (LPIPS): keep them for the task's lifetime, not per image.
        cache: dict[tuple[tuple[str, ...], int], MetricSet] = self.__dict__.setdefault("_metric_sets", {})
        if (chosen, border) not in cache:
            cache[(chosen, border)] = MetricSet(chosen, border=border)
        return cache[(chosen, border)]

    def baseline_metrics(self, model_input: Tensor, target: Tensor) -> dict[str, float]:
        """Metrics of the trivial answer (bicubic upscale, the blurred input): what a model must beat."""
        if not self.baselines:
            raise NotImplementedError
        batched = model_input.dim() == 4
        images = model_input if batched else model_input[None]
        outputs = torch.stack([self.baseline(self.baselines[0], image) for image in images])
        return self.metrics(outputs if batched else outputs[0], target)

    def preview(self, model_input: Tensor, output: Tensor, target: Tensor) -> Tensor:
        """One ``(3, H, W)`` image showing input | output | target side by side."""
        raise NotImplementedError

    def preview_panels(self, model_input: Tensor, output: Tensor, target: Tensor) -> list[PreviewPanel]:
        """The labelled panels of a training preview, left to right (input, baselines, output, target).

        The trainer draws each panel's label (and, for scored panels, its PSNR against the target) above
        it. The default wraps :meth:`preview` as one unlabelled panel, so tasks written before panels
        existed keep their previews.
        """
        return [PreviewPanel("input | output | target", self.preview(model_input, output, target), scored=False)]

