"""Reading, merging, overriding and validating recipes.

Validation happens before any work starts and reports every problem at once, each with the file, the
key path and a suggestion where one exists::

    recipes/x.toml: generator.args.num_blocs: unknown; did you mean num_blocks?
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import inspect
import json
import sys
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from restorekit.fileio import printable
from restorekit.recipe.schema import Recipe

PER_FILE_KEYS = ("name", "description")
"""Keys that a recipe does not inherit through ``extends``."""


def _data_checks_wanted() -> bool:
    """Inside a ``restore`` command (``check``, ``run``) a recipe is loaded to be run: check its data too.

    The command line owns that choice (:data:`restorekit.cli.common.RECIPE_DATA_CHECKS`); it is looked
    up, not imported, so that the Python API never loads the CLI.
    """
    cli = sys.modules.get("restorekit.cli.common")
    flag = getattr(cli, "RECIPE_DATA_CHECKS", None)
    return bool(flag is not None and flag.get())


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a recipe."""

    file: str
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: " if self.file else ""
        return f"{where}{self.key}: {self.message}" if self.key else f"{where}{self.message}"


class RecipeError(Exception):
    """A recipe is invalid; ``problems`` lists everything found, one line each."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def builtin_recipe_dir() -> Path:
    """The folder of the recipes that ship with restorekit (``recipes/`` in the source tree)."""
    from importlib import resources

    return Path(str(resources.files("restorekit_recipes")))


def find_recipe(ref: str | Path, *, relative_to: Path | None = None) -> Path:
    """Resolve a recipe reference: a path (``.toml`` optional) or the name of a registered recipe.

    Raises:
        RecipeError: nothing matches; the message lists the closest recipe names.
    """
    text = str(ref)
    candidates = [Path(text), Path(text + ".toml")] if not text.endswith(".toml") else [Path(text)]
    if relative_to is not None:
        candidates = [relative_to / c for c in candidates if not c.is_absolute()] + candidates
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    from restorekit.plugins import get_plugins

    recipes = get_plugins().recipes
    if text in recipes:
        return recipes[text].path
    close = difflib.get_close_matches(text, list(recipes), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise RecipeError([Problem(text, "", f"no such recipe file or registered recipe{hint}")])


MAX_RECIPE_BYTES = 4 * 1024 * 1024
"""A recipe is a page of TOML; a file larger than this is not one (and is not read into memory)."""


def _read_toml(path: Path) -> dict[str, Any]:
    file = printable(path)
    try:
        size = path.stat().st_size
        if size > MAX_RECIPE_BYTES:
            too_large = f"{size:,} bytes is too large for a recipe (at most {MAX_RECIPE_BYTES:,})"
            raise RecipeError([Problem(file, "", too_large)])
        raw = path.read_bytes()
        text = raw.decode("utf-8")
        if "\x00" in text:
            raise RecipeError([Problem(file, "", "not a text file (it holds NUL bytes); a recipe is TOML text")])
        return tomllib.loads(text)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        reason = f"not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); save the recipe as UTF-8"
        raise RecipeError([Problem(file, "", reason)]) from None
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError([Problem(file, "", f"invalid TOML: {printable(exc)}")]) from None
    except RecursionError:
        raise RecipeError([Problem(file, "", "invalid TOML: nested too deeply")]) from None
    except OSError as exc:
        raise RecipeError([Problem(file, "", f"cannot read: {exc.strerror or exc}")]) from None


def deep_merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """*child* over *base*: tables merge key by key, everything else (lists too) is replaced."""
    out = copy.deepcopy(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_recipe_tree(path: Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a recipe file and everything it ``extends``, merged (the file's own name kept)."""
    path = path.resolve()
    if path in _chain:
        cycle = " -> ".join(p.name for p in (*_chain, path))
        raise RecipeError([Problem(str(path), "extends", f"circular extends: {cycle}")])
    data = _read_toml(path)
    parent_ref = data.pop("extends", None)
    own = {key: data[key] for key in PER_FILE_KEYS if key in data}
    if parent_ref is not None:
        if not isinstance(parent_ref, str):
            raise RecipeError([Problem(str(path), "extends", "must be a recipe path or name (a string)")])
        parent_path = find_recipe(parent_ref, relative_to=path.parent)
        parent = read_recipe_tree(parent_path, (*_chain, path))
        for key in PER_FILE_KEYS:
            parent.pop(key, None)
        data = deep_merge(parent, data)
    data.update(own)
    data.setdefault("name", path.stem)
    return data


_UNSET = object()


def _parse_value(text: str) -> Any:
    """A ``--set`` value as TOML (``3``, ``1e-4``, ``true``, ``[1, 2]``, ``"x"``), else a plain string.

    ``null`` removes the key, so the field falls back to its default.
    """
    if text.strip() == "null":
        return _UNSET
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> list[Problem]:
    """Apply ``key.path=value`` overrides in place (``key=null`` removes a key); returns problems."""
    problems = []
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            problems.append(Problem("--set", item, "expected KEY.PATH=VALUE"))
            continue
        node: Any = data
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    problems.append(Problem("--set", key, f"'{part}' is not an index of {'.'.join(parts[:i])}"))
                    break
                node = node[int(part)]
                continue
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            elif not isinstance(nxt, (dict, list)):
                problems.append(Problem("--set", key, f"{'.'.join(parts[: i + 1])} is a value, not a table"))
                break
            node = nxt
        else:
            last = parts[-1]
            if isinstance(node, list):
                if last.isdigit() and int(last) < len(node) and _parse_value(value) is not _UNSET:
                    node[int(last)] = _parse_value(value)
                else:
                    problems.append(Problem("--set", key, f"'{last}' is not an index of the list"))
            else:
                parsed = _parse_value(value)
                if parsed is _UNSET:
                    node.pop(last, None)
                else:
                    node[last] = parsed
    return problems


def _unwrap(annotation: Any) -> Any:
    """Strip Optional/Union-with-None from an annotation."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _unwrap(args[0])
    return annotation


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """Field names of the schema table at *loc* (for did-you-mean suggestions)."""
    node: Any = Recipe
    for part in loc:
        node = _unwrap(node)
        if isinstance(node, type) and issubclass(node, BaseModel):
            field = node.model_fields.get(str(part))
            if field is None:
                return []
            node = field.annotation
        elif typing.get_origin(node) is dict:
            node = typing.get_args(node)[1]
        else:
            return []
    node = _unwrap(node)
    if isinstance(node, type) and issubclass(node, BaseModel):
        return list(node.model_fields)
    if typing.get_origin(node) is dict:
        key_type = typing.get_args(node)[0]
        if typing.get_origin(key_type) is typing.Literal:
            return list(typing.get_args(key_type))
    return []


def _pydantic_problems(file: str, error: ValidationError) -> list[Problem]:
    problems = []
    for err in error.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-after")))
        key = ".".join(str(p) for p in loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            known = _known_keys(loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}?" if close else f"known keys: {', '.join(known)}" if known else ""
            message = f"unknown key; {hint}" if hint else "unknown key"
        elif kind == "missing":
            message = "missing; this field is required"
        elif kind == "literal_error" and len(loc) >= 1 and err.get("input") is not None and "ctx" in err:
            message = f"{err['input']!r} is not allowed; expected {err['ctx'].get('expected', '')}"
        else:
            got = err.get("input")
            shown = f" (got {got!r})" if got is not None and not isinstance(got, dict) else ""
            message = err["msg"][0].lower() + err["msg"][1:] + shown
        problems.append(Problem(file, key, message))
    return problems


def load_recipe(
    ref: str | Path,
    overrides: list[str] | None = None,
    *,
    check_components: bool = True,
    check_data: bool | None = None,
) -> Recipe:
    """Read, merge, override and validate a recipe.

    Args:
        ref: a recipe file or the name of a registered recipe.
        overrides: ``key.path=value`` strings (the CLI's ``--set``).
        check_components: also check registry names, constructor arguments and data settings
            against the installed plugins (imports the components, builds networks on the meta
            device — no memory, no weights — within :mod:`restorekit.limits`, and estimates the memory
            a training step needs).
        check_data: also check the data as the first training step would meet it: the folders exist
            and hold readable images, training images against the crop, validation images against
            what the task's metrics need (:func:`restorekit.recipe.validate.check_data`). Reads the
            image headers and decodes one training and the smallest validation image. None (the
            default): on under ``restore check`` / ``restore run``, else off.

    Raises:
        RecipeError: everything wrong, in one exception.

    Example:
        >>> recipe = load_recipe("recipes/srresnet.toml", ["train.steps=10"], check_data=True)  # doctest: +SKIP
    """
    path = find_recipe(ref)
    file = printable(path)
    data = read_recipe_tree(path)
    problems = apply_overrides(data, list(overrides or []))
    non_finite = non_finite_values(data, file)
    problems += non_finite
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        said = {p.key for p in non_finite}  # "inf is not usable" says it; "must be > 0 (got nan)" repeats it
        problems += [p for p in _pydantic_problems(file, exc) if p.key not in said]
        raise RecipeError(problems) from None
    if problems:
        raise RecipeError(problems)
    if check_components:
        from restorekit.recipe.validate import check_components as _check

        problems = _check(recipe, file)
        if problems:
            raise RecipeError(problems)
    if check_data is None:
        check_data = check_components and _data_checks_wanted()
    if check_data:
        from restorekit.recipe.validate import check_data as _check_data

        problems = _check_data(recipe, file)
        if problems:
            raise RecipeError(problems)
    recipe._source = path  # type: ignore[attr-defined]  # where it came from, for messages
    return recipe


def non_finite_values(data: Any, file: str, key: str = "") -> list[Problem]:
    """``inf`` and ``nan`` anywhere in a recipe (TOML allows both): no setting takes them.

    A learning rate of ``inf`` passes "greater than 0" and ends the run at its first step with NaN
    losses; a loss weight or a constructor argument of ``nan`` is as bad. Reported with the key.
    """
    import math

    if isinstance(data, float) and not math.isfinite(data):
        what = "nan is not a number" if math.isnan(data) else f"{data} is not a usable value"
        return [Problem(file, key, f"{what}; give a finite number (or leave the key out for its default)")]
    if isinstance(data, dict):
        return [p for k, v in data.items() for p in non_finite_values(v, file, f"{key}.{k}" if key else str(k))]
    if isinstance(data, list):
        return [p for i, v in enumerate(data) for p in non_finite_values(v, file, f"{key}.{i}")]
    return []


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    return recipe.model_dump(mode="json", exclude_none=True)


def recipe_to_toml(recipe: Recipe) -> str:
    """The resolved recipe as TOML (it can be saved and run as is)."""
    import tomli_w

    return tomli_w.dumps(recipe_to_dict(recipe))


def recipe_digest(recipe: Recipe) -> str:
    """SHA-256 of the resolved recipe's canonical JSON; stored in every weight file."""
    text = json.dumps(recipe_to_dict(recipe), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def signature_keys(func: Any) -> list[str]:
    """Keyword parameters of *func* (for checking data settings against a task's methods)."""
    params = inspect.signature(func).parameters
    return [n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and n != "self"]
