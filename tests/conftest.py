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
    # Tests never reach the internet: downloads are tested against a local server with this unset.
    monkeypatch.setenv("RESTOREKIT_OFFLINE", "1")
    return home


TINY_SR_RECIPE = """
name = "tiny"
[task]
name = "super_resolution"
args = {{ scale = 2 }}
[generator]
name = "srresnet"
args = {{ num_features = 8, num_blocks = 1, scale = 2 }}
[losses.generator.pixel]
name = "l1"
[data]
train = {{ hr = "{hr}", crop = 16 }}
val = {{ hr = "{hr}", limit = 1 }}
batch_size = 4
workers = 0
[train]
steps = 6
seed = 3
[train.optim.generator]
lr = 1e-3
[output]
dir = "{out}"
checkpoint_every = 2
val_every = 3
log_every = 1
tensorboard = false
"""


@pytest.fixture()
def photo_dir(tmp_path: Path) -> Path:
    """A few small, real-looking RGB images (smooth gradients plus texture) on disk."""
    import torch
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    gen = torch.Generator().manual_seed(0)
    for i in range(3):
        yy, xx = torch.meshgrid(torch.linspace(0, 1, 44), torch.linspace(0, 1, 52), indexing="ij")
        base = torch.stack([xx, yy, (xx + yy) / 2]) * 0.7 + 0.15 * torch.rand(3, 44, 52, generator=gen)
        array = (base.clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy()
        Image.fromarray(array).save(folder / f"photo{i}.png")
    return folder


@pytest.fixture()
def tiny_recipe(tmp_path: Path, photo_dir: Path):
    """Write a tiny SR recipe (plus extra TOML) and return its path."""

    def write(extra: str = "", name: str = "tiny.toml", out: Path | None = None) -> Path:
        path = tmp_path / name
        path.write_text(TINY_SR_RECIPE.format(hr=photo_dir, out=out or tmp_path / "run") + extra)
        return path

    return write
