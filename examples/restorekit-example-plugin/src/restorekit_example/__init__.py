"""restorekit-example-plugin: a third-party restorekit plugin adding the ESPCN generator and its recipe.

restorekit finds this module through the ``restorekit`` entry-point group (see ``pyproject.toml``)
and calls the hooks below. Importing it does no work: the generator is registered as a lazy
``"module:attr"`` string, so ``restore list`` shows it without importing torch, and the recipe is
only located (not read) when restorekit asks for it.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from restorekit import hookimpl

__version__ = "0.1.0"


@hookimpl
def register_generators(register: Any) -> None:
    """Add ``espcn`` to restorekit's generator registry."""
    register(
        "espcn",
        "restorekit_example.espcn:ESPCN",
        "ESPCN: tanh convs at low resolution + one sub-pixel layer, any integer scale (Shi et al. 2016)",
        task="super_resolution",
        tiny_args={"features": 8, "scale": 3},  # what restorekit's contract tests build
    )


@hookimpl
def register_recipes(register: Any) -> None:
    """Add the ``espcn`` recipe, shipped as package data, so ``restore run espcn`` finds it by name."""
    path = Path(str(resources.files("restorekit_example") / "recipes" / "espcn.toml"))
    register(
        "espcn", path, "x3 ESPCN on scikit-image's sample photographs, MSE loss; a few minutes on a CPU"
    )
