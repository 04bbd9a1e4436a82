"""Benchmark evaluation: a model (or a baseline) scored on a folder under its task's published protocol.

The public API lives in :mod:`restorekit.evaluation.api`; the one scoring loop that ``restore eval`` and
``Trainer.validate`` share is :func:`restorekit.evaluation.loop.run_benchmark`.

``TASKS``, ``BASELINES`` and ``METRICS`` are read from the task registry when asked for (so a plugin's
task appears in them): the registered task names, baseline name -> owning task, and task -> metrics in
table order.
"""

from __future__ import annotations

from typing import Any

from restorekit.evaluation.api import (
    EvaluationError,
    evaluate,
    evaluate_deblurring,
    evaluate_super_resolution,
)
from restorekit.evaluation.loop import run_benchmark
from restorekit.evaluation.result import EvaluationResult, ImageScore

__all__ = [
    "BASELINES",
    "METRICS",
    "TASKS",
    "EvaluationError",
    "EvaluationResult",
    "ImageScore",
    "evaluate",
    "evaluate_deblurring",
    "evaluate_super_resolution",
    "run_benchmark",
]


def __getattr__(name: str) -> Any:
    # Computed on each access, not at import: importing restorekit.evaluation loads no plugins.
    from restorekit.evaluation import api

    if name == "TASKS":
        return api.task_names()
    if name == "BASELINES":
        return api.baseline_owners()
    if name == "METRICS":
        return api.task_metrics()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
