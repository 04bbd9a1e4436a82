"""From a recipe to its components: the generator's descriptor, and the task built to match it.

A recipe states the scale once, on the generator (``generator.args.scale``, or the network's default).
The task's scale is derived from the generator's descriptor, not written twice and reconciled: a task
whose constructor takes ``scale`` gets the generator's when the recipe leaves it out, and a recipe that
states both is told when they disagree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from restorekit.plugins import registry

if TYPE_CHECKING:
    from torch import nn

    from restorekit.descriptor import ModelDescriptor
    from restorekit.recipe.schema import Recipe
    from restorekit.tasks.base import Task


class ScaleMismatch(ValueError):
    """The task and the generator of a recipe disagree on the scale; the message says where."""


def generator_descriptor(recipe: Recipe, network: nn.Module | None = None) -> ModelDescriptor:
    """The descriptor of the recipe's generator (built on the ``meta`` device when *network* is None).

    The recipe's task name is recorded as the network's task.
    """
    from restorekit.descriptor import describe

    component = registry("generators").get(recipe.generator.name)
    return describe(component, recipe.generator.args, network, task=recipe.task.name)


def task_arguments(recipe: Recipe, descriptor: ModelDescriptor) -> dict[str, Any]:
    """The task's constructor arguments: the recipe's, with ``scale`` taken from the generator when the
    task takes one and the recipe leaves it out (a scale given anyway is checked by :func:`build_task`)."""
    args = dict(recipe.task.args)
    if "scale" in registry("tasks").get(recipe.task.name).parameters():
        args.setdefault("scale", descriptor.scale)
    return args


def build_task(recipe: Recipe, descriptor: ModelDescriptor) -> Task:
    """Build the recipe's task for the generator *descriptor* describes.

    Raises:
        ScaleMismatch: the task works at another scale than the generator (also for tasks with a fixed
            scale, such as deblurring with an upscaling generator).
        ValueError, TypeError: the task's constructor rejects an argument.
    """
    task = registry("tasks").build(recipe.task.name, **task_arguments(recipe, descriptor))
    scale = getattr(task, "scale", None)  # Task.scale is part of the task contract (base class: 1)
    if isinstance(scale, int) and scale != descriptor.scale:
        raise ScaleMismatch(
            f"the generator upscales x{descriptor.scale} but the task expects x{scale}; state the scale once, "
            "on the generator (the task takes it from there)"
        )
    return task

