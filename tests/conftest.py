"""Shared fixtures: the reference data beside the checkout, an isolated model store, tiny images."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RESTOREKIT_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real benchmark images); the test is skipped cleanly when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Keep every test's model store and caches out of the user's home."""
    home = tmp_path_factory.mktemp("restorekit-home")
    monkeypatch.setenv("RESTOREKIT_HOME", str(home))
    return home
