"""Checks of a schema-valid recipe against the installed components.

Everything is collected and reported together: unknown registry names (with the closest ones),
constructor arguments a component does not accept, data settings the task does not take, values a
constructor rejects, networks too large to build (:mod:`restorekit.limits`), a training step that
cannot fit in memory, a batch that does not split, and combinations that cannot train (an adversarial
term without a discriminator).

:func:`check_data` goes on to what the first training step meets: the data folders and their images.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from restorekit.descriptor import DescriptorError
from restorekit.fileio import printable
from restorekit.plugins import describe_exception, get_plugins, interrupted_by_user
from restorekit.recipe.components import ScaleMismatch, build_task, generator_descriptor, task_arguments
from restorekit.recipe.loader import Problem, signature_keys
from restorekit.recipe.schema import Recipe
from restorekit.registry import Component, RegistryError, UnknownComponentError


def _lookup(kind: str, name: str, key: str, file: str, problems: list[Problem]) -> Component | None:
    plugins = get_plugins()
    try:
        comp = plugins.registry(kind).get(name)
        comp.factory  # import now, so a broken plugin is reported here  # noqa: B018
        return comp
    except UnknownComponentError as exc:
        problems.append(Problem(file, key, f"{exc}{plugins.broken_note()}"))
    except RegistryError as exc:
        problems.append(Problem(file, key, str(exc)))
    except BaseException as exc:  # noqa: BLE001 - a lazily imported module that calls sys.exit()
        if isinstance(exc, KeyboardInterrupt) and interrupted_by_user():
            raise
        problems.append(Problem(file, key, f"'{name}' cannot be imported ({describe_exception(exc)})"))
    return None


def _check_args(comp: Component, args: dict[str, Any], key: str, file: str, problems: list[Problem]) -> bool:
    found = comp.check_args(args)
    for arg, message in found:
        problems.append(Problem(file, f"{key}.{arg}", message))
    return not found


def _build_on_meta(comp: Component, args: dict[str, Any], key: str, file: str, problems: list[Problem]) -> Any:
    """Build a network without memory or weights, to let its constructor reject bad values.

    The construction is stopped beyond :mod:`restorekit.limits`' budget (``num_blocks = 10**9``);
    ``sys.exit()`` and other exits from the plugin's code are reported against the key.
    """
    from restorekit import limits
    from restorekit.plugins import PluginError, call_plugin

    try:
        return call_plugin(
            comp.plugin, f"building '{comp.name}'", limits.build_on_meta, comp, args, passthrough=(Exception,)
        )
    except limits.SizeLimitError as exc:
        problems.append(Problem(file, key, str(exc)))
    except PluginError as exc:
        problems.append(Problem(file, key, str(exc)))
    except (ValueError, TypeError, OverflowError) as exc:
        problems.append(Problem(file, key, printable(exc)))
    except NotImplementedError:  # some layers cannot live on meta; the trainer builds for real
        pass
    except RuntimeError as exc:
        if "meta" not in str(exc).lower():  # e.g. "negative dimension": a value torch itself rejects
            problems.append(Problem(file, key, describe_exception(exc).split(": ", 1)[-1]))
    except Exception as exc:  # noqa: BLE001 - the constructor's own failure (a bug, or a value it chokes on)
        problems.append(
            Problem(file, key, f"plugin '{comp.plugin}' failed in building '{comp.name}' ({describe_exception(exc)})")
        )
    return None


def _check_settings(func: Any, settings: dict[str, Any] | None, key: str, file: str, problems: list[Problem]):
    """Check a data table against the keyword parameters of a task method."""
    import difflib

    if settings is None:
        return
    accepted = signature_keys(func)
    params = inspect.signature(func).parameters
    for name in settings:
        if name not in accepted:
            close = difflib.get_close_matches(name, accepted, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}?" if close else f"accepted: {', '.join(accepted)}"
            problems.append(Problem(file, f"{key}.{name}", f"unknown; {hint}"))
    for name, param in params.items():
        if name != "self" and param.default is inspect.Parameter.empty and name not in settings:
            if param.kind in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD):
                problems.append(Problem(file, f"{key}.{name}", "missing; this setting is required"))


def _without(args: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in args.items() if k != key}


def _check_metric_names(comp: Component, names: Any, file: str, problems: list[Problem]) -> bool:
    """``task.args.metrics``: a list of registered metric names (the task's aliases allowed); False if not."""
    from restorekit.metrics.registry import metric_registry

    if names is None or "metrics" not in comp.parameters():
        return True  # absent, or a task that does not take it (then the argument check says so)
    key = "task.args.metrics"
    if isinstance(names, str) or not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        problems.append(Problem(file, key, f"must be a list of metric names, e.g. [\"psnr_y\", \"lpips\"]; got {names!r}"))
        return False
    if not names:
        problems.append(Problem(file, key, "is empty; leave it out for the task's default metrics"))
        return False
    aliases = getattr(comp.factory, "metric_aliases", {}) or {}
    registry = metric_registry()
    fine = True
    for index, name in enumerate(names):
        if aliases.get(name, name) not in registry:
            known = [*registry.names(), *aliases]
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(sorted(known))}"
            problems.append(Problem(file, f"{key}[{index}]", f"unknown metric '{name}'; {hint}"))
            fine = False
    return fine


def check_components(recipe: Recipe, file: str) -> list[Problem]:
    """All problems of *recipe* against the registries; empty when it can run."""
    from restorekit.losses.base import is_adversarial

    problems: list[Problem] = []

    # The generator first: the task takes its scale from the generator's descriptor.
    descriptor = None
    generator_net = discriminator_net = None
    comp = _lookup("generators", recipe.generator.name, "generator.name", file, problems)
    if comp and _check_args(comp, recipe.generator.args, "generator.args", file, problems):
        generator_net = _build_on_meta(comp, recipe.generator.args, "generator.args", file, problems)
        if generator_net is not None:
            try:
                descriptor = generator_descriptor(recipe, generator_net)
            except DescriptorError as exc:
                problems.append(Problem(file, "generator", str(exc)))

    task = None
    comp = _lookup("tasks", recipe.task.name, "task.name", file, problems)
    if comp:
        if not _check_metric_names(comp, recipe.task.args.get("metrics"), file, problems):
            # Reported once, here (with did-you-mean); the other task checks still run without them.
            recipe = recipe.model_copy(
                update={"task": recipe.task.model_copy(update={"args": _without(recipe.task.args, "metrics")})}
            )
        args = task_arguments(recipe, descriptor) if descriptor is not None else dict(recipe.task.args)
        if _check_args(comp, args, "task.args", file, problems):
            try:
                task = build_task(recipe, descriptor) if descriptor is not None else comp.build(**args)
            except ScaleMismatch as exc:
                problems.append(Problem(file, "generator.args", str(exc)))
            except (ValueError, TypeError) as exc:
                problems.append(Problem(file, "task.args", str(exc)))
    if task is not None:
        _check_settings(task.train_data, recipe.data.train, "data.train", file, problems)
        _check_settings(task.val_data, recipe.data.val, "data.val", file, problems)

    if recipe.discriminator is not None:
        comp = _lookup("discriminators", recipe.discriminator.name, "discriminator.name", file, problems)
        if comp and _check_args(comp, recipe.discriminator.args, "discriminator.args", file, problems):
            discriminator_net = _build_on_meta(comp, recipe.discriminator.args, "discriminator.args", file, problems)
    if task is not None and generator_net is not None and descriptor is not None:
        _check_training_size(recipe, task, descriptor, generator_net, discriminator_net, file, problems)

    adversarial_g = False
    for side in ("generator", "discriminator"):
        for label, term in getattr(recipe.losses, side).items():
            key = f"losses.{side}.{label}"
            comp = _lookup("losses", term.name, f"{key}.name", file, problems)
            if comp is None:
                continue
            _check_args(comp, term.args, f"{key}.args", file, problems)
            adversarial = is_adversarial(comp.factory)
            if side == "discriminator" and not adversarial:
                problems.append(
                    Problem(file, f"{key}.name", f"'{term.name}' is not an adversarial loss; the discriminator "
                            "side takes adversarial losses only (bce_gan, wgan_gp, lsgan, ragan, hinge_gan)")
                )
            if side == "generator" and adversarial:
                adversarial_g = True
                if recipe.discriminator is None:
                    problems.append(
                        Problem(file, f"{key}.name", f"adversarial loss '{term.name}' needs a [discriminator] table")
                    )
    if not recipe.losses.generator:
        problems.append(Problem(file, "losses.generator", "no term with a non-zero weight"))
    if recipe.discriminator is not None:
        if not recipe.losses.discriminator:
            problems.append(
                Problem(file, "losses.discriminator", "a discriminator is set but has no loss terms to train it")
            )
        elif not adversarial_g:
            problems.append(
                Problem(file, "losses.generator", "a discriminator is set but no generator term is adversarial")
            )
    elif recipe.losses.discriminator:
        problems.append(Problem(file, "losses.discriminator", "terms given but there is no [discriminator] table"))

    if recipe.generator.init is not None:
        from restorekit.convert import ConvertError
        from restorekit.store import resolve_weights
        from restorekit.weights import WeightsError, read_info

        try:
            path = resolve_weights(recipe.generator.init)
            if path.suffix.lower() != ".safetensors":
                from restorekit.convert import convert_checkpoint

                # A foreign checkpoint (the schema allows .pth): what it converts to is what init loads.
                held = convert_checkpoint(path)[1]
            else:
                held = read_info(path)
            wanted = (recipe.generator.name, recipe.generator.args)
            gen = get_plugins().registry("generators")
            same = held.name == wanted[0] and wanted[0] in gen and (
                gen.get(wanted[0]).full_args(held.args) == gen.get(wanted[0]).full_args(wanted[1])
            )
            if not same and recipe.generator.init_strict:
                problems.append(
                    Problem(file, "generator.init", f"{printable(path)} holds {held.name} {held.args}, "
                            f"the recipe builds {wanted[0]} {wanted[1]}")
                )
        except (FileNotFoundError, WeightsError, ConvertError) as exc:
            problems.append(Problem(file, "generator.init", str(exc)))
    return problems


# --- sizes -----------------------------------------------------------------------------------------------


def _world_size() -> int:
    import os

    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def _crop(recipe: Recipe, task: Any) -> int | None:
    """The training crop side: the recipe's ``data.train.crop`` or the task's default for it."""
    crop = recipe.data.train.get("crop")
    if crop is None:
        param = inspect.signature(task.train_data).parameters.get("crop")
        crop = None if param is None or param.default is inspect.Parameter.empty else param.default
    return crop if isinstance(crop, int) and not isinstance(crop, bool) and crop > 0 else None


def _check_training_size(
    recipe: Recipe, task: Any, descriptor: Any, generator: Any, discriminator: Any, file: str, problems: list[Problem]
) -> None:
    """What one training step needs against what the machine has (:mod:`restorekit.limits`)."""
    import os

    import torch

    from restorekit import limits

    data, train = recipe.data, recipe.train
    world = _world_size()
    micro = data.batch_size / (world * train.accumulate)
    if micro != int(micro) or micro < 1:
        problems.append(
            Problem(file, "data.batch_size", f"{data.batch_size} does not split into {world} process(es) x "
                    f"train.accumulate {train.accumulate} micro-batches of equal size")
        )
        return
    cpus = os.cpu_count() or 1
    if data.workers > max(64, 8 * cpus):
        problems.append(
            Problem(file, "data.workers", f"{data.workers} worker processes is far more than this machine's {cpus} "
                    f"CPU cores can use; give at most {max(64, 8 * cpus)} (2-8 is usual)")
        )
    crop = _crop(recipe, task)
    if crop is None:
        return
    device = torch.device("cuda" if train.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if train.device == "auto" else train.device))
    try:
        limit, source = limits.memory_limit(device)
    except (limits.SizeLimitError, RuntimeError, AssertionError) as exc:
        problems.append(Problem(file, "train.device", printable(exc)))
        return
    if limit is None:
        return
    small = max(1, crop // descriptor.scale)
    element = 2 if device.type == "cuda" and train.amp != "none" else 4
    micro = int(micro)
    networks = [(generator, (micro, descriptor.in_channels, small, small), max(crop, small), 1)]
    if discriminator is not None:
        networks.append((discriminator, (micro, descriptor.out_channels, crop, crop), crop, 2))
    estimate = limits.training_memory(networks, element_size=element, limit=limit)
    if estimate.total <= limit:
        return
    need = limits.format_bytes(estimate.total)
    have = f"{limits.format_bytes(limit)} ({source}; {limits.MAX_MEMORY_ENV} changes the limit)"
    if estimate.activations >= estimate.weights:
        key = "data.batch_size" if micro > 1 else "data.train.crop"
        what = f"{micro} crops of {crop}x{crop} per micro-batch"
        advice = "lower data.batch_size or data.train.crop (train.accumulate keeps the effective batch)"
    else:
        key = "generator.args"
        what = "the networks' weights, gradients and optimizer state"
        advice = "make the networks smaller"
    message = f"{what} need an estimated {need} per training step, more than {have}; {advice}"
    problems.append(Problem(file, key, message))


# --- the data --------------------------------------------------------------------------------------------


def check_data(recipe: Recipe, file: str) -> list[Problem]:
    """What the first training step would meet in the data, found before any work starts.

    The task's own :meth:`train_data` and :meth:`val_data` are called (missing folders, unreadable or
    unmatched images, a crop the scale does not divide), one training sample is made into a batch, and
    the smallest validation image is measured with the task's metrics (an image smaller than SSIM's
    window fails here rather than after the first validation). Training images smaller than the crop
    are padded by the trainer: that is a warning, not a problem.

    Args:
        recipe: a recipe that passed :func:`check_components`.
        file: its file, for messages.

    Returns:
        The problems, empty when the data is fine.

    Example:
        >>> from restorekit.recipe import load_recipe
        >>> check_data(load_recipe("recipes/quickstart.toml"), "quickstart.toml")  # doctest: +SKIP
        []
    """
    import torch

    from restorekit.data.folders import DataError
    from restorekit.data.images import ImageReadError

    expected = (DataError, ImageReadError, ValueError, TypeError, OSError, FileNotFoundError)
    problems: list[Problem] = []
    try:
        task = build_task(recipe, generator_descriptor(recipe))
    except (RegistryError, DescriptorError, ValueError, TypeError) as exc:  # check_components reported it
        return [Problem(file, "task", printable(exc))]
    try:
        dataset = task.train_data(**recipe.data.train)
        if len(dataset) == 0:
            problems.append(Problem(file, "data.train", "no training images"))
        else:
            _warn_small_training_images(dataset, file)
            batch = torch.utils.data.default_collate([dataset[0]])
            task.make_batch(batch, torch.device("cpu"), training=True)
    except expected as exc:
        problems.append(_data_problem(file, "data.train", exc))
    if recipe.data.val is not None:
        try:
            samples = task.val_data(**recipe.data.val)
            _check_smallest_sample(task, samples, file, problems)
        except expected as exc:
            problems.append(_data_problem(file, "data.val", exc))
    return problems


def _data_problem(file: str, key: str, exc: BaseException) -> Problem:
    message = printable(exc)
    # The tasks' own messages often start with the key already ("data.train.crop: 15 is not ...").
    return Problem(file, "", message) if message.startswith(key) else Problem(file, key, message)


def _image_size(path: Any) -> tuple[int, int] | None:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.size
    except Exception:  # noqa: BLE001 - unreadable files are the loaders' to report
        return None


def _warn_small_training_images(dataset: Any, file: str) -> None:
    import warnings

    crop = getattr(dataset, "crop", None)
    paths = getattr(dataset, "paths", None)
    if not isinstance(crop, int) or not paths:
        return
    sizes = [(p, _image_size(p)) for p in paths]
    small = [(p, s) for p, s in sizes if s is not None and min(s) < crop]
    if small:
        path, (w, h) = min(small, key=lambda item: min(item[1]))
        warnings.warn(
            f"{file}: data.train: {len(small)} of {len(paths)} training images are smaller than the {crop}x{crop} "
            f"crop (smallest {printable(path)}, {w}x{h}); they are padded by reflection",
            stacklevel=2,
        )


def _check_smallest_sample(task: Any, samples: Any, file: str, problems: list[Problem]) -> None:
    """Measure the smallest validation image: what the metrics cannot take fails here, naming the file."""
    paths = list(getattr(samples, "paths", []) or [])
    if len(samples) == 0:
        problems.append(Problem(file, "data.val", "no validation images"))
        return
    index = 0
    if paths:
        sizes = [(_image_size(p) or (10**9, 10**9)) for p in paths]
        index = min(range(len(sizes)), key=lambda i: min(sizes[i]))
    sample = samples[index]
    name = printable(paths[index]) if paths else sample.name
    try:
        task.metrics(sample.target[None].float(), sample.target[None].float())
    except ValueError as exc:
        problems.append(Problem(file, "data.val", f"{name}: {printable(exc)}"))
