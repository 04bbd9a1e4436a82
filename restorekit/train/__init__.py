"""The one trainer every recipe uses (see :mod:`restorekit.train.trainer`)."""

from __future__ import annotations

from typing import Any


def train(recipe: Any, **options: Any) -> Any:
    """Train *recipe*; see :func:`restorekit.train.trainer.train`."""
    from restorekit.train.trainer import train as _train

    return _train(recipe, **options)
