"""``restore models`` and ``restore info NAME`` as users run them: real processes on a real store.

Listing reads weight-file headers only (no torch), never cuts a path at 80 columns, says how to get a
first model; ``info`` takes the names ``apply``/``eval`` take and describes a catalogue model without
downloading it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from restorekit.plugins import get_plugins, registry
from restorekit.store import add_to_store, list_models, models_dir, resolve_weights
from restorekit.weights import WeightInfo, save_weights

ARGS = {"num_features": 8, "num_blocks": 1, "scale": 2}
CATALOGUE = "realesrgan-x4plus"  # built-in (plugin realesrgan), never downloaded here: tests run offline

# Run the real `restore` app in a fresh interpreter, then report which heavy modules it imported.
_PROBE = """
import sys
from restorekit.cli import app
try:
    app(sys.argv[1:], prog_name="restore")
except SystemExit as exc:
    code = exc.code or 0
else:
    code = 0
heavy = sorted(m for m in ("torch", "torchvision", "numpy") if m in sys.modules)
print("IMPORTED:" + ",".join(heavy), file=sys.stderr)
sys.exit(code)
"""


def restore(*args: str, home: Path, columns: int = 80, probe: bool = False, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "RESTOREKIT_HOME": str(home), "COLUMNS": str(columns), **env}
    command = [sys.executable, "-c", _PROBE] if probe else [sys.executable, "-m", "restorekit.cli"]
    return subprocess.run([*command, *args], capture_output=True, text=True, env=environ, timeout=120)


def imported(out: subprocess.CompletedProcess) -> list[str]:
    line = next(line for line in out.stderr.splitlines() if line.startswith("IMPORTED:"))
    return [name for name in line.removeprefix("IMPORTED:").split(",") if name]


def needs_catalogue() -> None:
    if CATALOGUE not in get_plugins().models:
        pytest.skip("the built-in Real-ESRGAN catalogue is not installed")


@pytest.fixture()
def weights(tmp_path: Path) -> Path:
    net = registry("generators").build("srresnet", **ARGS)
    path = tmp_path / "tiny.safetensors"
    save_weights(net, path, WeightInfo("srresnet", ARGS, plugin="srgan", task="super_resolution", scale=2,
                                       recipe_name="tiny", metrics={"psnr_y": 31.25}))
    return path


@pytest.fixture()
def store(tmp_path: Path, weights: Path, monkeypatch) -> Path:
    """A store under a deep folder (paths longer than 80 columns) with three models."""
    home = tmp_path.joinpath("a-deliberately", "deep", "folder", "so-that-every-stored-path", "is-longer-than-80")
    monkeypatch.setenv("RESTOREKIT_HOME", str(home))
    add_to_store("mine", weights)
    add_to_store("trained", weights, source="run")
    add_to_store("a-model-name-far-too-long-for-the-name-column-of-an-80-column-list", weights)
    return home


# --- listing -------------------------------------------------------------------------------------------


def test_listing_imports_no_torch(store):
    out = restore("models", home=store, probe=True)
    assert out.returncode == 0, out.stderr
    assert "torch" not in imported(out) and "numpy" not in imported(out)
    assert "mine" in out.stdout and "trained" in out.stdout
    # (test_info_takes_store_names_like_apply shows the probe does see torch where a network is loaded)


def test_paths_are_never_cut_at_80_columns(store):
    listed = {m.name: m for m in list_models()}
    out = restore("models", home=store)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    locations = [str(m.path) if m.path else m.url for m in listed.values() if m.path or m.url]
    assert any(len(location) > 80 for location in locations)
    for location in locations:
        assert f"  {location}" in lines, f"{location} is not printed whole on a line of its own"
    # Everything else fits the 80 columns, the over-long name included (it gets a line of its own).
    others = [line for line in lines if line.strip() not in locations and not line.startswith("models in ")]
    assert others and all(len(line) <= 80 for line in others), [line for line in others if len(line) > 80]
    assert "a-model-name-far-too-long-for-the-name-column-of-an-80-column-list" in lines
    row = next(line for line in lines if line.startswith("trained "))
    assert row.split()[1:4] == ["run", "srresnet", "x2"]
    assert any("psnr_y 31.25" in line for line in lines)  # the validation result of a trained model
    # The same in a pipe that says it is 40 columns wide: the path is still whole.
    narrow = restore("models", home=store, columns=40)
    assert f"  {listed['mine'].path}" in narrow.stdout.splitlines()


def test_wide_puts_every_field_on_one_line(store):
    out = restore("models", "--wide", home=store)
    assert out.returncode == 0, out.stderr
    for model in list_models():
        row = next(line for line in out.stdout.splitlines() if line.startswith(model.name + " "))
        location = str(model.path) if model.path else model.url or ""
        assert row.endswith(location), row
    mine = next(line for line in out.stdout.splitlines() if line.startswith("mine "))
    assert "user" in mine and "srresnet x2" in mine and "psnr_y 31.25" in mine


def test_empty_store_says_how_to_get_a_model(tmp_path):
    from test_cli_help import parse

    needs_catalogue()
    out = restore("models", home=tmp_path / "fresh")
    assert out.returncode == 0, out.stderr
    assert "No model is stored yet" in out.stdout
    suggested = [line.split("   ")[0].strip() for line in out.stdout.splitlines() if line.startswith("  restore ")]
    assert suggested[:3] == ["restore run quickstart", f"restore models pull {CATALOGUE}",
                             "restore models add NAME FILE"], out.stdout
    for command in suggested[:2]:  # real commands that work as printed
        parse(command.split()[1:])
    assert "quickstart" in get_plugins().recipes and 'pip install "restorekit[samples]"' in out.stdout
    assert any(line.startswith(f"{CATALOGUE} ") and "available" in line for line in out.stdout.splitlines())
    # No plugin offers a download: the hint still says what to do, and nothing is listed.
    out = restore("models", home=tmp_path / "fresh", RESTOREKIT_ONLY_PLUGINS="srgan")
    assert out.returncode == 0 and "restore models pull NAME" in out.stdout and "name " not in out.stdout
    # In --wide (for scripts) the hint goes to stderr and stdout keeps only the table.
    out = restore("models", "--wide", home=tmp_path / "fresh")
    assert "No model is stored yet" in out.stderr and "No model" not in out.stdout


def test_a_damaged_newest_file_never_shadows_a_good_one(store, weights):
    good = resolve_weights("mine")
    folder = models_dir() / "mine"
    newer = [folder / "29990101T000000000000Z-user-deadbeef.safetensors",
             folder / "29990102T000000000000Z-user-deadbeef.safetensors"]  # fmt: skip
    newer[0].write_bytes(weights.read_bytes()[:-7])  # truncated copy
    newer[1].write_bytes(b"\x00" * 64)  # not safetensors at all
    assert resolve_weights("mine") == good
    assert {m.name: m for m in list_models()}["mine"].path == good
    out = restore("models", home=store)
    assert f"  {good}" in out.stdout.splitlines() and "29990101" not in out.stdout


# --- restore info NAME ---------------------------------------------------------------------------------


def test_info_takes_store_names_like_apply(store):
    out = restore("info", "trained", home=store, columns=400, probe=True)
    assert out.returncode == 0, out.stderr
    assert "torch" in imported(out)  # rebuilding a network needs torch (and shows the probe works)
    assert "as 'trained', trained by 'restore run'" in out.stdout
    assert str(resolve_weights("trained")) in out.stdout and "srresnet" in out.stdout and "x2" in out.stdout
    params = sum(p.numel() for p in registry("generators").build("srresnet", **ARGS).parameters())
    assert f"{params:,}" in out.stdout  # it did rebuild the network


def test_info_describes_a_catalogue_model_without_downloading_it(tmp_path):
    needs_catalogue()
    home = tmp_path / "home"
    out = restore("info", CATALOGUE, home=home, columns=250, probe=True)
    assert out.returncode == 0, out.stderr
    entry = get_plugins().models[CATALOGUE]
    for shown in ("not downloaded", f"restore models pull {CATALOGUE}", f"{entry.arch} x{entry.scale}",
                  f"{entry.size:,} bytes", entry.licence, entry.url, entry.sha256):
        assert shown in out.stdout, shown
    assert not (home / "models").exists() and not any((home / "downloads").glob("*.pth"))
    assert "torch" not in imported(out)


def test_info_unknown_name_is_one_line_with_suggestions(tmp_path):
    needs_catalogue()
    out = restore("info", "realesrgan-x4", home=tmp_path / "home", columns=250)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert "no model named 'realesrgan-x4'" in lines[0] and f"did you mean {CATALOGUE}" in lines[0]
    out = restore("info", "missing.safetensors", home=tmp_path / "home", columns=250)
    assert out.returncode == 1 and out.stderr.strip() == "error: missing.safetensors: no such file"
