"""What the inference benchmarks share: argument parsers and the machine's description.

Imported as ``from common import ...``: a script's own folder is on ``sys.path`` when it runs.
"""

from __future__ import annotations

import argparse
import ast
import platform
from pathlib import Path
from typing import Any


def parse_size(text: str) -> tuple[int, int]:
    """``"640x480"`` (or ``640×480``) → ``(640, 480)``: width, height."""
    try:
        width, height = (int(v) for v in text.lower().replace("×", "x").split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"a size must look like 640x480, got {text!r}") from exc
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"a size must be positive, got {text!r}")
    return width, height


def parse_arg(text: str) -> tuple[str, Any]:
    """``"num_conv=16"`` → ``("num_conv", 16)``; values are Python literals, else strings."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--arg must look like key=value, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo``, else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
