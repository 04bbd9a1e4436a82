"""Checks of a schema-valid recipe against the installed components.

Everything is collected and reported together: unknown registry names (with the closest ones),
constructor arguments a component does not accept, data settings the task does not take, values a
constructor rejects, and combinations that cannot train (an adversarial term without a discriminator).
"""

from __future__ import annotations

import inspect
from typing import Any

from restorekit.descriptor import DescriptorError
from restorekit.plugins import get_plugins
from restorekit.recipe.components import ScaleMismatch, build_task, generator_descriptor, task_arguments
from restorekit.recipe.loader import Problem, signature_keys
from restorekit.recipe.schema import Recipe
from restorekit.registry import Component, RegistryError


def _lookup(kind: str, name: str, key: str, file: str, problems: list[Problem]) -> Component | None:
    try:
        comp = get_plugins().registry(kind).get(name)
        comp.factory  # import now, so a broken plugin is reported here  # noqa: B018
        return comp
    except RegistryError as exc:
        problems.append(Problem(file, key, str(exc)))
        return None


def _check_args(comp: Component, args: dict[str, Any], key: str, file: str, problems: list[Problem]) -> bool:
    found = comp.check_args(args)
    for arg, message in found:
        problems.append(Problem(file, f"{key}.{arg}", message))
    return not found


def _build_on_meta(comp: Component, args: dict[str, Any], key: str, file: str, problems: list[Problem]) -> Any:
    """Build a network without memory or weights, to let its constructor reject bad values."""
    import torch

    try:
        with torch.device("meta"):
            return comp.build(**args)
    except (ValueError, TypeError) as exc:
        problems.append(Problem(file, key, str(exc)))
    except Exception:  # noqa: BLE001 - some layers cannot live on meta; the trainer builds for real
        pass
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


def check_components(recipe: Recipe, file: str) -> list[Problem]:
    """All problems of *recipe* against the registries; empty when it can run."""
    from restorekit.losses.base import is_adversarial

    problems: list[Problem] = []

    # The generator first: the task takes its scale from the generator's descriptor.
    descriptor = None
    comp = _lookup("generators", recipe.generator.name, "generator.name", file, problems)
    if comp and _check_args(comp, recipe.generator.args, "generator.args", file, problems):
        net = _build_on_meta(comp, recipe.generator.args, "generator.args", file, problems)
        if net is not None:
            try:
                descriptor = generator_descriptor(recipe, net)
            except DescriptorError as exc:
                problems.append(Problem(file, "generator", str(exc)))

    task = None
    comp = _lookup("tasks", recipe.task.name, "task.name", file, problems)
    if comp:
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
            _build_on_meta(comp, recipe.discriminator.args, "discriminator.args", file, problems)

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
            if path.suffix == ".safetensors":
                held = read_info(path)
                wanted = (recipe.generator.name, recipe.generator.args)
                gen = get_plugins().registry("generators")
                same = held.name == wanted[0] and wanted[0] in gen and (
                    gen.get(wanted[0]).full_args(held.args) == gen.get(wanted[0]).full_args(wanted[1])
                )
                if not same and recipe.generator.init_strict:
                    problems.append(
                        Problem(file, "generator.init", f"{path} holds {held.name} {held.args}, "
                                f"the recipe builds {wanted[0]} {wanted[1]}")
                    )
        except (FileNotFoundError, WeightsError, ConvertError) as exc:
            problems.append(Problem(file, "generator.init", str(exc)))
    return problems
