"""Staged runs: the recipes a recipe starts from, and training them in order.

A recipe names the run it starts from with ``generator.init``: ``srgan`` starts from ``srresnet``,
``esrgan`` from ``esrgan_psnr``, ``realesrgan_x4plus`` from ``realesrnet_x4plus``. When that name is a
recipe — a file next to the recipe (as ``extends`` finds one) or a registered recipe — and not a weight
file, a stored model or a catalogue model, the recipe it names is a *stage* that must be trained first;
its weights are stored under its name when it finishes, which is exactly what ``generator.init`` loads.

:func:`plan_stages` follows the chain back to the first stage whose weights are stored (or that starts
from nothing), :func:`missing_message` says what is missing and how to get it, and
:func:`train_prerequisites` trains the missing stages, first one first, skipping the stored ones.

Example:
    >>> stages = plan_stages("recipes/srgan.toml")  # doctest: +SKIP
    >>> [(s.name, s.stored) for s in stages]  # doctest: +SKIP
    [('srresnet', False)]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from restorekit.fileio import printable
from restorekit.recipe.loader import Problem, RecipeError, apply_overrides, find_recipe, read_recipe_tree
from restorekit.train.errors import TrainingError

__all__ = ["MissingStagesError", "Stage", "missing_message", "plan_stages", "stage_overrides", "train_prerequisites"]

# Overrides that belong to the recipe asked for, not to the stages it starts from: its name, and the
# weights it starts from (which decide the chain in the first place).
_OWN_KEYS = ("name", "description", "generator.init", "generator.init_strict")


class MissingStagesError(TrainingError):
    """A recipe starts from stages whose weights are not stored; the message says how to train them."""


@dataclass(frozen=True)
class Stage:
    """A recipe another one starts from.

    Attributes:
        name: the recipe's name, under which its weights are stored (what ``generator.init`` names).
        path: the recipe file.
        ref: how to name it on the command line (its registered name, or the file).
        stored: its weights are in the model store already.
        needed_by: the recipe (file or name, as given) whose ``generator.init`` names this stage.
    """

    name: str
    path: Path
    ref: str
    stored: bool
    needed_by: str


def stage_overrides(overrides: Sequence[str], stage: Mapping[str, Any] | None = None) -> list[str]:
    """The ``--set`` overrides that carry over to a stage: all but the requested recipe's own keys.

    Data paths, network sizes and step counts apply to every stage, so a chain stays consistent (a
    stage's weights must fit the next stage's network); ``name`` and ``generator.init`` do not. With the
    stage's recipe tree, settings of parts the stage does not have are left out too: the
    discriminator and its optimizer and schedule (a GAN recipe starting from a pixel-loss one), and
    the arguments or weight of a loss term the stage lacks.

    Args:
        overrides: ``key.path=value`` strings, as given to the command.
        stage: the stage's merged recipe tree (:func:`restorekit.recipe.read_recipe_tree`).

    Example:
        >>> stage_overrides(["data.train.hr=DF2K", "name=x", "discriminator.args.num_features=8"], {"generator": {}})
        ['data.train.hr=DF2K']
    """
    carried = []
    for item in overrides:
        key = item.partition("=")[0].strip()
        if key in _OWN_KEYS or (stage is not None and not _applies(key.split("."), stage)):
            continue
        carried.append(item)
    return carried


def _applies(path: list[str], stage: Mapping[str, Any]) -> bool:
    has_discriminator = isinstance(stage.get("discriminator"), Mapping)
    if path[0] == "discriminator" or path[:3] in (["train", "optim", "discriminator"], ["train", "schedule", "discriminator"]):
        return has_discriminator
    if path[:2] == ["losses", "discriminator"] and not has_discriminator:
        return False
    if path[0] == "losses" and len(path) >= 4:  # inside a term: the term must be there
        losses = stage.get("losses")
        side = losses.get(path[1]) if isinstance(losses, Mapping) else None
        return isinstance(side, Mapping) and path[2] in side
    return True


def _init_of(path: Path, overrides: Sequence[str]) -> tuple[str | None, dict[str, Any]]:
    tree = read_recipe_tree(path)
    problems = apply_overrides(tree, list(overrides))
    if problems:
        raise RecipeError(problems)
    generator = tree.get("generator")
    init = generator.get("init") if isinstance(generator, dict) else None
    return (init if isinstance(init, str) else None), tree


def _looks_like_a_file(ref: str) -> bool:
    return any(sep in ref for sep in ("/", "\\")) or Path(ref).suffix.lower() in (".safetensors", ".pth", ".pt", ".ckpt")


def _is_stored(name: str) -> bool | None:
    """True: stored (or a file a plugin ships); None: a catalogue model (downloaded on use); False: neither."""
    from restorekit.plugins import get_plugins
    from restorekit.store import NotDownloadedError, resolve_weights

    try:
        resolve_weights(name, download=False)
        return True
    except NotDownloadedError:
        return None
    except FileNotFoundError:
        return None if name in get_plugins().models else False


def _stage_of(init: str, needed_by: Path) -> Path | None:
    """The recipe file *init* names, or None when it names weights (a file, a stored or catalogue model)."""
    if Path(init).expanduser().is_file() or _looks_like_a_file(init):
        return None
    try:
        return find_recipe(init, relative_to=needed_by.parent)
    except RecipeError:
        return None  # not a recipe: weights or a typo, which the recipe check reports


def _ref_for(path: Path, name: str) -> str:
    """How to name a stage on the command line: its registered name if that is where it comes from."""
    from restorekit.plugins import get_plugins

    registered = get_plugins().recipes.get(name)
    if registered is not None and Path(registered.path).resolve() == path.resolve():
        return name
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def plan_stages(ref: str | Path, overrides: Sequence[str] = ()) -> list[Stage]:
    """The chain of stages *ref* starts from, the first to train first (*ref* itself not included).

    The chain is followed back from *ref* while ``generator.init`` names a recipe whose weights are not
    stored; the last stage listed is the one *ref* starts from. Stored stages end the chain (what they
    started from no longer matters).

    Args:
        ref: a recipe file or registered recipe name.
        overrides: the ``--set`` overrides of the command (see :func:`stage_overrides`).

    Returns:
        The stages, in training order; empty when *ref* starts from nothing or from weights.

    Raises:
        RecipeError: a recipe of the chain cannot be read, or the chain goes round in a circle.
        MissingStagesError: a stage whose recipe name differs from the name ``generator.init`` asks for
            (its weights would never be found), or one that does not store its weights.
    """
    path = find_recipe(ref)
    chain: list[Stage] = []
    seen = {path.resolve()}
    current, current_ref, current_overrides = path, str(ref), list(overrides)
    while True:
        init, _ = _init_of(current, current_overrides)
        stage_path = None if init is None else _stage_of(init, current)
        if init is None or stage_path is None:
            break
        current_overrides = stage_overrides(overrides, read_recipe_tree(stage_path))
        _, tree = _init_of(stage_path, current_overrides)
        name = str(tree.get("name", stage_path.stem))
        if name != init:
            raise MissingStagesError(
                f"{printable(current_ref)}: generator.init '{printable(init)}' names {printable(stage_path)}, "
                f"whose weights are stored as '{printable(name)}'; name the stage by its recipe name"
            )
        stored = _is_stored(name)
        if stored is None:
            break  # a catalogue model of that name: downloaded on use, not trained here
        output = tree.get("output") if isinstance(tree.get("output"), dict) else {}
        if not stored and output.get("store", True) is False:
            raise MissingStagesError(
                f"{printable(stage_path)}: output.store is false, so its weights are never stored and "
                f"{printable(current_ref)} cannot start from them"
            )
        if not stored and stage_path.resolve() in seen:
            cycle = " -> ".join([printable(ref), *(s.name for s in chain), name])
            raise RecipeError([Problem(printable(path), "generator.init", f"the stages go round in a circle: {cycle}")])
        chain.append(Stage(name, stage_path, _ref_for(stage_path, name), stored, current_ref))
        if stored:
            break
        seen.add(stage_path.resolve())
        current, current_ref = stage_path, chain[-1].ref
    return list(reversed(chain))


def missing_message(ref: str | Path, stages: Sequence[Stage]) -> str:
    """What *ref* starts from that is not stored, and the commands that make it.

    Example:
        >>> missing_message("recipes/srgan.toml", [Stage("srresnet", Path("srresnet.toml"), "srresnet", False, "recipes/srgan.toml")])
        "recipes/srgan.toml starts from 'srresnet', which is not stored: run `restore run srresnet` first, or add --with-prerequisites"
    """
    missing = [stage for stage in stages if not stage.stored]
    if not missing:
        return ""
    text = f"{printable(ref)} starts from '{printable(missing[-1].name)}', which is not stored"
    # Further back in the chain, each missing stage is what the next one starts from.
    deeper = [f"'{printable(later.name)}' starts from '{printable(earlier.name)}'" for earlier, later in zip(missing, missing[1:])]
    if deeper:
        text += f" ({'; '.join(reversed(deeper))}: not stored either)"
    runs = " then ".join(f"`restore run {printable(stage.ref)}`" for stage in missing)
    return f"{text}: run {runs} first, or add --with-prerequisites"


def train_prerequisites(
    ref: str | Path,
    overrides: Sequence[str] = (),
    *,
    run: bool,
    say: Callable[[str], None] | None = None,
    train_stage: Callable[[Any], Any] | None = None,
) -> list[Stage]:
    """Make sure every stage *ref* starts from is stored: train the missing ones when *run* is set.

    Every recipe of the chain is validated (data included under ``restore run``) before the first one
    trains, so a mistake in the last stage does not surface after days of training the first. Each
    missing stage is trained with *train_stage* (default :func:`restorekit.train.train` with
    ``resume=True``): a stage that was stopped continues where it was, and one that finished is stored
    and then skipped on the next call.

    Args:
        ref: the recipe asked for.
        overrides: the command's ``--set`` overrides; :func:`stage_overrides` of them apply to the stages.
        run: train the missing stages; False: raise if any is missing.
        say: prints progress lines (default: stderr).
        train_stage: trains one validated stage recipe, continuing its run folder's newest checkpoint
            when there is one (the command line passes its own, which reports a Ctrl-C as it does).

    Returns:
        The chain, as :func:`plan_stages` found it.

    Raises:
        MissingStagesError: stages are missing and *run* is False (the message is :func:`missing_message`).
        RecipeError: a recipe of the chain is invalid (all problems, naming the file).
        TrainingError: a stage's training stopped.
    """
    stages = plan_stages(ref, overrides)
    missing = [stage for stage in stages if not stage.stored]
    if missing and not run:
        raise MissingStagesError(missing_message(ref, stages))
    if not run:
        return stages
    if say is None:
        from rich.console import Console

        console = Console(stderr=True, highlight=False)

        def say(message: str) -> None:
            console.print(message, markup=False, soft_wrap=True)

    for stage in stages:
        if stage.stored:
            say(f"stage {stage.name}: its weights are stored; not trained again")
    if not missing:
        return stages

    from restorekit.recipe.loader import load_recipe
    from restorekit.store import resolve_weights

    if train_stage is None:
        from restorekit.train import train

        def train_stage(recipe: Any) -> Any:
            return train(recipe, resume=True)

    carried = {stage.name: stage_overrides(overrides, read_recipe_tree(stage.path)) for stage in missing}
    # generator.init of a stage that is not trained yet cannot be checked now: it is once it exists.
    unstored = {stage.name for stage in missing}
    problems: list[Problem] = []
    for path, stage_sets in [*((s.path, carried[s.name]) for s in missing), (find_recipe(ref), list(overrides))]:
        init, _ = _init_of(path, stage_sets)
        extra = ["generator.init=null"] if init in unstored else []
        try:
            load_recipe(path, [*stage_sets, *extra])
        except RecipeError as exc:
            problems.extend(exc.problems)
    if problems:
        raise RecipeError(problems)

    for number, stage in enumerate(missing, 1):
        say(f"stage {number}/{len(missing)}: {stage.name} ({printable(stage.path)}), which {printable(stage.needed_by)} starts from")
        train_stage(load_recipe(stage.path, carried[stage.name]))
        try:
            resolve_weights(stage.name, download=False)
        except FileNotFoundError:
            raise MissingStagesError(
                f"{printable(stage.path)}: its weights were not stored; {printable(ref)} cannot start from them"
            ) from None
    return stages
