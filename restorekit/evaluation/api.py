"""Benchmark evaluation: a model (or a baseline) scored on a folder under its task's published protocol.

Nothing here knows a particular task. The task is looked up in the registry — the model's own (from its
weight metadata), the one asked for, or the one a baseline belongs to — and supplies the protocol:
which folder layouts it reads and how missing inputs are made (``Task.benchmark``), its baselines and
its metrics. The images are then scored by :func:`restorekit.evaluation.loop.run_benchmark`, the loop
``Trainer.validate`` uses too, so a run's validation numbers equal ``restore eval`` on its weights.

For the built-in tasks that means, as in the published tables:

- super-resolution: HR cropped to a multiple of the scale; LR from the shipped files (EDSR layout
  understood) or MATLAB's bicubic ``imresize(hr, 1/scale)`` in ``uint8`` arithmetic; PSNR/SSIM on the
  BT.601 luma with ``scale`` border pixels shaved, and RGB PSNR; baseline ``bicubic``;
- deblurring (GoPro): RGB PSNR/SSIM against the sharp image, no border; baseline ``identity`` (``none``):
  the blurred input itself.

``metrics`` chooses other registered metrics (``["psnr", "ssim", "lpips", "niqe"]``), measured under the
task's protocol: the same border and 8-bit output, with the task's aliases (super-resolution reads
``psnr`` as ``psnr_y``).

Models run through :class:`~restorekit.inference.model.RestorationModel` (tiled, any size). The mean is
the plain average of the per-image values, as in the papers.

Example:
    >>> from restorekit.evaluation import evaluate
    >>> result = evaluate("bicubic", "../shared/data/sr-bench/Set5/HR", scale=4)  # doctest: +SKIP
    >>> round(result.mean["psnr_y"], 2), round(result.mean["ssim_y"], 3)  # doctest: +SKIP
    (28.43, 0.811)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from restorekit.evaluation.loop import OnOutput, run_benchmark
from restorekit.evaluation.result import EvaluationResult

if TYPE_CHECKING:
    from restorekit.inference.model import RestorationModel
    from restorekit.tasks.base import Task

Progress = Callable[[int, int], None]


class InputFolder(NamedTuple):
    """An input-folder argument of :func:`evaluate` that belongs to one task."""

    task: str
    option: str  # how the CLI spells it
    what: str  # how messages name it
    images: str


#: ``evaluate``'s task-specific input-folder arguments (``inputs`` serves every task).
INPUT_FOLDERS: dict[str, InputFolder] = {
    "lr_dir": InputFolder("super_resolution", "--lr-dir", "an LR folder", "LR images"),
    "blur_dir": InputFolder("deblurring", "--blur-dir", "a blurred-image folder", "blurred images"),
}


def _folder_of(task: str) -> InputFolder | None:
    return next((f for f in INPUT_FOLDERS.values() if f.task == task), None)


class EvaluationError(ValueError):
    """Evaluation settings that do not fit together (task, scale, model, folders); one-line message."""


# --- what the registry offers --------------------------------------------------------------------


def _task_classes() -> dict[str, Any]:
    """Registered task name -> its class (or factory), in registration order."""
    from restorekit.plugins import registry

    return {component.name: component.factory for component in registry("tasks")}


def task_names() -> tuple[str, ...]:
    """Every registered task (a task without a benchmark protocol is refused when evaluated)."""
    from restorekit.plugins import registry

    return tuple(registry("tasks").names())


def baseline_owners() -> dict[str, str]:
    """Baseline name -> the (first registered) task that declares it, e.g. ``{"bicubic": "super_resolution"}``."""
    owners: dict[str, str] = {}
    for name, factory in _task_classes().items():
        for baseline in getattr(factory, "baselines", ()):
            owners.setdefault(baseline, name)
    return owners


def task_metrics() -> dict[str, tuple[str, ...]]:
    """Task name -> its metrics in table order (as the task class declares them)."""
    return {name: tuple(getattr(factory, "metric_names", ())) for name, factory in _task_classes().items()}


def _takes_scale(task: str) -> bool:
    """Whether the registered task changes the image size by a ``scale`` it is built with."""
    from restorekit.plugins import registry

    return "scale" in registry("tasks").get(task).parameters()


def _words(task: str) -> str:
    return task.replace("_", "-")


# --- choosing what to evaluate -------------------------------------------------------------------


def _resolve_model(model: RestorationModel | str, name: str | None) -> tuple[str, RestorationModel | None]:
    """``(name, model)``; the model is None for a baseline name."""
    if isinstance(model, Path):
        model = str(model)
    if isinstance(model, str):
        key = model.strip().lower()
        if key in baseline_owners() and not Path(model).expanduser().is_file():
            return key, None
        from restorekit.inference.model import RestorationModel

        label, net = name or model, RestorationModel.load(model)
    else:
        label, net = name or model.name, model
    if net.info.kind != "generator":
        raise EvaluationError(f"'{label}' holds a {net.info.kind}, not a generator; evaluate the generator's weights")
    return label, net


def _baseline_mismatch(name: str, task: str) -> str:
    owner = baseline_owners()[name]
    own = getattr(_task_classes().get(task), "baselines", ())
    instead = f"use {' or '.join(repr(b) for b in own)}" if own else "it has no baseline"
    return f"'{name}' is the {_words(owner)} baseline; for {_words(task)} {instead}"


def _choose_task(name: str, model: RestorationModel | None, task: str | None) -> str:
    """The registered task to evaluate with: asked for, the model's own, or the baseline's owner."""
    known = task_names()
    if task is not None:
        if task not in known:
            raise EvaluationError(f"unknown task {task!r}; use one of {', '.join(known)}")
        if model is None and name not in getattr(_task_classes()[task], "baselines", ()):
            raise EvaluationError(_baseline_mismatch(name, task))
        return task
    if model is None:
        return baseline_owners()[name]
    if model.task in known:
        return model.task
    scaling = [t for t in known if _takes_scale(t)]
    if model.scale > 1 and len(scaling) == 1:  # weights without task metadata that upscale
        return scaling[0]
    raise EvaluationError(
        f"model '{name}' does not say its task (weights without task metadata); give the task "
        f"({' or '.join(known)})"
    )


def _check_folders(task: str, folders: dict[str, Any]) -> str | Path | None:
    """The input folder given for *task*; one that belongs to another task is an error."""
    given = {key: value for key, value in folders.items() if value is not None}
    for key in given:
        folder, fitting = INPUT_FOLDERS[key], _folder_of(task)
        if folder.task != task:
            hint = f"; use {fitting.option} for {fitting.images}" if fitting else ""
            raise EvaluationError(f"{folder.what} ({folder.option}) is for {_words(folder.task)}{hint}")
    return next(iter(given.values()), None)


def _check_scale(task: str, name: str, model: RestorationModel | None, scale: int | None) -> int:
    """The scale to build *task* with (1 for a task that keeps the size)."""
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, int) or scale < 1):
        raise EvaluationError(f"scale must be a positive integer, got {scale!r}")
    if not _takes_scale(task):
        if scale not in (None, 1):
            raise EvaluationError(f"{_words(task)} keeps the image size; scale {scale} does not apply")
        if model is not None and model.scale != 1:
            scaling = [t for t in task_names() if _takes_scale(t)]
            hint = f" (evaluate it with --task {scaling[0]})" if scaling else ""
            raise EvaluationError(
                f"model '{name}' upscales x{model.scale}; {_words(task)} evaluation needs a model that keeps "
                f"the size{hint}"
            )
        return 1
    if model is None:
        if scale is None:
            raise EvaluationError(f"the {name} baseline needs a scale (--scale 2, 3, 4, ...)")
        if scale < 2:
            raise EvaluationError(f"the {name} baseline needs a scale of 2 or more, got {scale}")
        return scale
    if model.scale < 2:
        keeping = [t for t in task_names() if not _takes_scale(t)]
        hint = f": evaluate it as {keeping[0]} (--task {keeping[0]})" if keeping else ""
        raise EvaluationError(f"model '{name}' keeps the image size (scale 1){hint}")
    if scale is not None and scale != model.scale:
        raise EvaluationError(f"scale {scale} was asked, but model '{name}' upscales x{model.scale}")
    return model.scale


def _build_task(task: str, scale: int) -> Task:
    from restorekit.plugins import registry

    built = registry("tasks").build(task, **({"scale": scale} if _takes_scale(task) else {}))
    return built


# --- evaluating ----------------------------------------------------------------------------------


def evaluate(
    model: RestorationModel | str,
    data: str | Path,
    *,
    task: str | None = None,
    lr_dir: str | Path | None = None,
    blur_dir: str | Path | None = None,
    scale: int | None = None,
    max_pixels: int | None = None,
    progress: Progress | None = None,
    name: str | None = None,
    inputs: str | Path | None = None,
    metrics: Sequence[str] | None = None,
    on_output: OnOutput | None = None,
) -> EvaluationResult:
    """Evaluate a model or a baseline on a benchmark folder, with its task's published protocol.

    Args:
        model: A loaded :class:`~restorekit.inference.model.RestorationModel`, a model-store name or weight
            file (loaded with default settings), or the name of a task's baseline (``"bicubic"`` for
            super-resolution, ``"identity"`` / ``"none"`` for deblurring, or a plugin task's).
        data: The reference folder, or a benchmark root the task understands (an EDSR root with ``HR/``,
            a GoPro root with ``blur/`` and ``sharp/``).
        task: A registered task name; default: the model's task (the baseline's).
        lr_dir: Folder of LR inputs matched by name (``NAMExS`` and an ``XS`` sub-folder understood); None
            makes them with MATLAB bicubic. Super-resolution only.
        blur_dir: Folder of blurred inputs matched by name. Deblurring only.
        scale: Needed for a baseline of a task that upscales; for a model, if given, it must be the
            model's scale.
        max_pixels: Raise the decompression-bomb limit for large images.
        progress: Called as ``progress(done_images, total_images)`` after every image.
        name: What to call the model in the result and in messages; default: the name it was given by, or
            its network's name.
        inputs: Folder of model inputs matched by name, for any task (what *lr_dir* / *blur_dir* are for
            the built-in ones).
        metrics: Registered metric names to report (``restore list``-able with ``restore eval
            --list-metrics``); default: the task's own, as its tables print them.
        on_output: Called as ``on_output(sample, output)`` with every 8-bit output (reports use it).

    Returns:
        The per-image metrics and their mean.

    Raises:
        EvaluationError: Settings that contradict each other (task, scale, folders, baseline), a task
            without a benchmark protocol, or an unknown metric (with the closest names).
        restorekit.data.folders.DataError: Missing folders, unmatched names, or images that do not fit.
        restorekit.data.images.ImageReadError: An image cannot be read.
        FileNotFoundError: No model of that name or file.

    Example:
        >>> result = evaluate("identity", "../shared/data/deblur/gopro-avg8")  # doctest: +SKIP
        >>> sorted(result.mean)  # doctest: +SKIP
        ['psnr', 'ssim']
    """
    name, net = _resolve_model(model, name)
    chosen = _choose_task(name, net, task)
    folder = _check_folders(chosen, {"lr_dir": lr_dir, "blur_dir": blur_dir})
    if inputs is not None:
        if folder is not None:
            raise EvaluationError("give the input folder once (inputs, or lr_dir / blur_dir)")
        folder = inputs
    s = _check_scale(chosen, name, net, scale)
    runner = _build_task(chosen, s)
    chosen_metrics = None
    if metrics is not None:
        try:
            chosen_metrics = runner.choose_metrics(metrics)
        except ValueError as exc:
            raise EvaluationError(str(exc)) from None
        if not chosen_metrics:
            raise EvaluationError("no metric named; give e.g. psnr,ssim,lpips,niqe")
    samples = _benchmark(runner, chosen, Path(data).expanduser(), folder, max_pixels)
    common = {"progress": progress, "metrics": chosen_metrics, "on_output": on_output}
    if net is None:
        images = run_benchmark(runner, samples, None, baseline=name, **common)
    else:
        images = run_benchmark(runner, samples, net.restore_tensor, **common)
    settings: dict[str, Any] = dict(samples.settings)
    if net is not None:
        settings.update(_model_settings(net))
    metric_order = chosen_metrics or tuple(runner.metric_names) or (tuple(images[0].metrics) if images else ())
    result = EvaluationResult(chosen, name, s, str(samples.root), images, settings, metric_order)
    result.metric_info = metric_facts(metric_order, runner.metric_border())
    return result


def metric_facts(names: Sequence[str], border: int) -> list[dict[str, Any]]:
    """Direction, reference, colour and protocol of each registered metric in *names* (others are skipped)."""
    from restorekit.metrics.registry import metric_registry

    registry = metric_registry()
    return [registry.get(name).to_dict(border) for name in names if name in registry]


def _benchmark(runner: Task, task: str, data: Path, folder: str | Path | None, max_pixels: int | None) -> Any:
    from restorekit.data.folders import DataError

    inputs = None if folder is None else Path(folder).expanduser()
    try:
        return runner.benchmark(data, inputs=inputs, max_pixels=max_pixels)
    except NotImplementedError:  # Task.benchmark of the base class: a task written before the protocol
        raise EvaluationError(
            f"task '{task}' does not define a benchmark protocol (Task.benchmark); it cannot be evaluated"
        ) from None
    except DataError as exc:
        fitting = _folder_of(task)
        if inputs is None and fitting is not None:  # the layout that needs no input folder was not found
            raise DataError(f"{exc}; or give the {fitting.images} with {fitting.option}") from None
        raise


def _model_settings(model: RestorationModel) -> dict[str, Any]:
    return {
        "tile": model.tile,
        "overlap": model.overlap,
        "batch_size": model.batch_size,
        "device": str(model.device),
        "dtype": str(model.dtype).removeprefix("torch."),
    }


def evaluate_super_resolution(
    model: RestorationModel | str,
    hr_dir: str | Path,
    *,
    lr_dir: str | Path | None = None,
    scale: int | None = None,
    max_pixels: int | None = None,
    progress: Progress | None = None,
    name: str | None = None,
) -> EvaluationResult:
    """PSNR-Y, SSIM-Y (``scale`` border pixels shaved) and PSNR-RGB of super-resolved HR images.

    :func:`evaluate` with ``task="super_resolution"``.

    Example:
        >>> r = evaluate_super_resolution("bicubic", "Set5/HR", lr_dir="Set5/LR_bicubic", scale=4)  # doctest: +SKIP
        >>> len(r.images), round(r.mean["psnr_y"], 2)  # doctest: +SKIP
        (5, 28.43)
    """
    return evaluate(
        model, hr_dir, task="super_resolution", lr_dir=lr_dir, scale=scale, max_pixels=max_pixels,
        progress=progress, name=name,
    )  # fmt: skip


def evaluate_deblurring(
    model: RestorationModel | str,
    data: str | Path,
    *,
    blur_dir: str | Path | None = None,
    max_pixels: int | None = None,
    progress: Progress | None = None,
    name: str | None = None,
) -> EvaluationResult:
    """RGB PSNR and SSIM of deblurred images against the sharp ones (8-bit output, no border).

    :func:`evaluate` with ``task="deblurring"``.

    Example:
        >>> r = evaluate_deblurring("identity", "gopro-avg8/sharp", blur_dir="gopro-avg8/blur")  # doctest: +SKIP
        >>> sorted(r.mean)  # doctest: +SKIP
        ['psnr', 'ssim']
    """
    return evaluate(
        model, data, task="deblurring", blur_dir=blur_dir, max_pixels=max_pixels, progress=progress, name=name
    )


__all__ = [
    "INPUT_FOLDERS",
    "InputFolder",
    "EvaluationError",
    "baseline_owners",
    "evaluate",
    "evaluate_deblurring",
    "evaluate_super_resolution",
    "task_metrics",
    "task_names",
]
