"""The one evaluation loop: ``Trainer.validate`` and ``restore eval`` both score images here.

A task supplies the samples (its benchmark protocol: how inputs are read or made), its baselines and its
per-image metrics; the caller supplies how to restore one image. Everything between — the order of
images, the 8-bit rounding of the output, the error for an image that cannot be measured — lives only
here, so validation numbers and benchmark numbers cannot drift apart.

The metrics are the task's own (``task.metrics``: for the built-in tasks the list a recipe chose in
``task.args.metrics``), or registered metric names given by the caller (``restore eval --metrics``),
which the task binds to its protocol (:meth:`~restorekit.tasks.base.Task.metric_set`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from restorekit.evaluation.result import ImageScore

if TYPE_CHECKING:
    from torch import Tensor

    from restorekit.tasks.base import EvalSample, Task

#: ``restore(image)``: one ``(C, H, W)`` float image in [0, 1] to its restored ``(C, H', W')`` version.
Restore = Callable[["Tensor"], "Tensor"]
Progress = Callable[[int, int], None]
#: ``on_output(sample, output)``: sees every scored output (8-bit-rounded, ``(C, H, W)``), e.g. for reports.
OnOutput = Callable[["EvalSample", "Tensor"], None]


class Samples(Protocol):
    """What :func:`run_benchmark` reads: a sized, indexable run of :class:`EvalSample`."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> EvalSample: ...


def to_8bit(image: Tensor) -> Tensor:
    """Clamp to [0, 1] and round to 1/255 steps, as saving the output as an 8-bit image would.

    The published protocols score the 8-bit output; rounding here (the metrics of the built-in tasks
    round again, which changes nothing) holds a plugin task's metrics to the same protocol.
    """
    from restorekit.metrics import quantize

    return quantize(image.float().clamp(0, 1))


def run_benchmark(
    task: Task,
    samples: Samples | Sequence[EvalSample],
    restore: Restore | None,
    *,
    baseline: str | None = None,
    progress: Progress | None = None,
    metrics: Sequence[str] | None = None,
    on_output: OnOutput | None = None,
) -> list[ImageScore]:
    """Score every sample: restore its input (or apply a baseline), round to 8 bits, measure.

    Args:
        task: The task whose metrics (and baseline) apply.
        samples: The task's benchmark samples (``task.benchmark(...)`` or ``task.val_data(...)``).
        restore: Restores one ``(C, H, W)`` input; None to score *baseline* instead.
        baseline: One of ``task.baselines`` (``bicubic``, ``identity``, ...), when *restore* is None.
        progress: Called as ``progress(done, total)`` after every image.
        metrics: Registered metric names to report instead of the task's own, measured under the
            task's protocol (its border and aliases).
        on_output: Called as ``on_output(sample, output)`` with each 8-bit-rounded output.

    Returns:
        One :class:`ImageScore` per sample, in sample order.

    Raises:
        ValueError: Both or neither of *restore* and *baseline* given, or an unregistered metric name.
        restorekit.data.folders.DataError: An image the metrics cannot measure (too small for the
            border, or an output of the wrong size), named in the message.
        FileNotFoundError: A metric's pretrained weights are missing and cannot be downloaded.

    Example:
        >>> from restorekit.plugins import registry
        >>> task = registry("tasks").build("super_resolution", scale=4)
        >>> samples = task.benchmark("../shared/data/sr-bench/Set5")  # doctest: +SKIP
        >>> scores = run_benchmark(task, samples, None, baseline="bicubic")  # doctest: +SKIP
        >>> [s.name for s in scores]  # doctest: +SKIP
        ['baby', 'bird', 'butterfly', 'head', 'woman']
    """
    from restorekit.data.folders import DataError

    if (restore is None) == (baseline is None):
        raise ValueError("run_benchmark: give either restore or baseline")
    measure = task.metrics if metrics is None else task.metric_set(metrics)
    total = len(samples)
    scores: list[ImageScore] = []
    for index in range(total):
        sample = samples[index]
        output = restore(sample.input) if restore is not None else task.baseline(baseline, sample.input)
        rounded = to_8bit(output)
        try:
            values = measure(rounded, sample.target)
        except ValueError as exc:  # too small to measure, or a model whose output has the wrong size
            raise DataError(f"{sample.name}: {exc}") from None
        scores.append(ImageScore(sample.name, {key: float(value) for key, value in values.items()}))
        if on_output is not None:
            on_output(sample, rounded)
        if progress is not None:
            progress(index + 1, total)
    return scores
