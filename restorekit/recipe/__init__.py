"""TOML recipes: loading (with ``extends`` and ``--set`` overrides), validation and digests.

Example:
    >>> from restorekit.recipe import load_recipe
    >>> recipe = load_recipe("recipes/srresnet.toml", overrides=["train.steps=10"])  # doctest: +SKIP
    >>> recipe.train.steps  # doctest: +SKIP
    10
"""

from __future__ import annotations

from pathlib import Path

from restorekit.recipe.loader import (
    Problem,
    RecipeError,
    apply_overrides,
    builtin_recipe_dir,
    find_recipe,
    load_recipe,
    read_recipe_tree,
    recipe_digest,
    recipe_to_toml,
)

__all__ = [
    "Path",
    "Problem",
    "RecipeError",
    "apply_overrides",
    "builtin_recipe_dir",
    "find_recipe",
    "load_recipe",
    "read_recipe_tree",
    "recipe_digest",
    "recipe_to_toml",
]
