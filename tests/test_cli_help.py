"""Every command's ``--help`` has examples, and the examples are real command lines.

The commands are found by walking the typer app, so a command added later (by a plugin of this code base
or another module) is covered with no change here. Help texts come from real ``restore ... --help``
processes; each example line is parsed with the click command objects typer builds (the real option
tables: names, arity, types, required arguments), without running anything.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from restorekit.cli import app

REPO = Path(__file__).resolve().parents[1]
ROOT = typer.main.get_command(app)
BASELINES = {"bicubic", "identity", "none"}  # what `restore eval --model` takes besides models


def _walk(command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path] if path else []
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        if not sub.hidden:
            found += _walk(sub, (*path, name))
    return found


COMMANDS = _walk(ROOT)


@functools.cache
def help_text(path: tuple[str, ...]) -> str:
    """``restore PATH --help`` as a user sees it (wide, so that example lines are not wrapped)."""
    env = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1"}
    out = subprocess.run([sys.executable, "-m", "restorekit.cli", *path, "--help"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    return out.stdout


def examples(text: str) -> list[str]:
    """The lines of the help's "Examples:" section (up to the option boxes), stripped, blank lines dropped."""
    lines = [line.strip().strip("│").strip() for line in text.splitlines()]
    try:
        start = next(i for i, line in enumerate(lines) if line == "Examples:")
    except StopIteration:
        return []
    section = []
    for line in lines[start + 1:]:
        if line.startswith(("╭", "Usage:")):
            break
        if line:
            section.append(line)
    return section


def command_lines(line: str) -> list[list[str]]:
    """The ``restore ...`` invocations in one shell line (``&&``/``|``/``;`` chains, ``VAR=value`` prefixes)."""
    if line.startswith("$ "):
        line = line[2:]
    tokens = shlex.split(line, comments=True)
    found, segment = [], []
    for token in [*tokens, ";"]:
        if token in ("&&", "||", "|", ";"):
            while segment and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", segment[0]):
                segment.pop(0)
            if segment and segment[0] == "restore":
                found.append(segment[1:])
            segment = []
        else:
            segment.append(token)
    return found


def parse(args: list[str]):
    """Parse ``restore ARGS`` like the real command would, down to the leaf command; nothing is run.

    Returns:
        The leaf command's context (its ``params`` are the parsed values).

    Raises:
        Exception: the command or an option does not exist, a value has the wrong type, an argument is
            missing or extra (click's usage errors).
    """
    command, name, rest, parent = ROOT, "restore", list(args), None
    while True:
        ctx = command.make_context(name, rest, parent=parent)
        remaining = [*(getattr(ctx, "_protected_args", None) or []), *ctx.args]
        if not hasattr(command, "commands") or not remaining:
            if remaining:
                raise AssertionError(f"unexpected extra arguments {remaining}")
            return ctx
        name, command, rest = command.resolve_command(ctx, remaining)
        parent = ctx


def _check(line: str) -> list[list[str]]:
    invocations = command_lines(line)
    for args in invocations:
        try:
            parse(args)
        except Exception as exc:  # noqa: BLE001 - any parsing problem is the finding
            pytest.fail(f"example {line!r} does not parse: {type(exc).__name__}: {getattr(exc, 'message', exc)}")
    return invocations


# --- every command has examples ------------------------------------------------------------------------


def test_the_app_has_the_documented_commands():
    """The walk finds commands and sub-commands (so the parametrized tests below cover them)."""
    for path in [("list",), ("plugins",), ("check",), ("run",), ("info",), ("models",), ("models", "add"),
                 ("models", "pull"), ("apply",), ("eval",), ("convert",)]:
        assert path in COMMANDS, path


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) for p in COMMANDS])
def test_every_command_help_has_examples_that_parse(path):
    shown = examples(help_text(path))
    assert shown, f"'restore {' '.join(path)} --help' has no 'Examples:' section"
    invocations = [args for line in shown if "restore" in line for args in _check(line)]
    own = [args for args in invocations if tuple(args[: len(path)]) == path]
    assert own, f"no example in 'restore {' '.join(path)} --help' runs 'restore {' '.join(path)} ...': {shown}"


# --- the top-level help works on a fresh install --------------------------------------------------------


def test_top_level_examples_parse_and_need_nothing_unnamed():
    """Each model an example uses is downloadable, a baseline, or trained by an earlier example."""
    from restorekit.plugins import get_plugins

    shown = examples(help_text(()))
    invocations = [args for line in shown for args in _check(line)]
    assert len(invocations) >= 4, shown
    catalogue = {name for name, entry in get_plugins().models.items() if entry.url is not None}
    recipes = set(get_plugins().recipes)
    trained: set[str] = set()
    for args in invocations:
        ctx = parse(args)
        if args[0] == "run":
            recipe = ctx.params["recipe"]
            assert recipe in recipes or (REPO / recipe).is_file(), f"'restore run {recipe}': no such recipe"
            trained.add(Path(recipe).stem)
        given = ctx.params.get("model_ref", ctx.params.get("model_refs"))  # apply: one; eval: several
        for model in [given] if isinstance(given, str) else list(given or []):
            assert model in catalogue | BASELINES | trained, (
                f"'restore {' '.join(args)}' needs a model '{model}' that a fresh install has not got"
            )
    assert trained, "the top-level help shows how to train a first model"


def test_parse_refuses_what_the_cli_refuses():
    """The checker is not a rubber stamp: unknown commands, options and missing arguments fail."""
    for args in (["applyy", "x.jpg"], ["apply", "--modle", "x", "a.jpg"], ["apply", "a.jpg"],
                 ["models", "pull"], ["info"], ["eval", "--model", "bicubic", "--data", "d", "--scale", "four"]):
        with pytest.raises(Exception):  # noqa: B017 - click's usage errors, whichever
            parse(args)
    assert parse(["models", "pull", "realesrgan-x4plus", "--force"]).params == {
        "name": "realesrgan-x4plus", "force": True}
    assert command_lines("A=1 restore models --wide | grep x && restore info y  # comment") == [
        ["models", "--wide"], ["info", "y"]]


# --- the README's examples -----------------------------------------------------------------------------


def readme_examples() -> list[str]:
    """``restore ...`` lines of the README's shell blocks (and ``$ restore`` transcripts in plain blocks)."""
    lines, block = [], None
    for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            block = line[3:].strip() if block is None else None
            continue
        text = line.strip()
        if block in ("bash", "sh", "console") and "restore " in text or block == "" and text.startswith("$ restore"):
            lines.append(text)
    return lines


def test_readme_examples_parse():
    found = readme_examples()
    assert len(found) >= 8, found
    for line in found:
        _check(line)
