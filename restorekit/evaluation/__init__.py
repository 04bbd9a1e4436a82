"""Benchmark evaluation: a model (or a baseline) scored on a folder under its task's published protocol.

The public API lives in :mod:`restorekit.evaluation.api`; the one scoring loop that ``restore eval`` and
``Trainer.validate`` share is :func:`restorekit.evaluation.loop.run_benchmark`.
"""

from __future__ import annotations

from restorekit.evaluation.api import (
    BASELINES,
    METRICS,
    TASKS,
    EvaluationError,
    evaluate,
    evaluate_deblurring,
    evaluate_super_resolution,
)
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
]
