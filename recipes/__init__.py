"""Built-in recipes (TOML files in this folder), installed as the ``restorekit_recipes`` package."""
