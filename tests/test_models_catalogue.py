"""The download catalogue end to end: a test plugin's entries served by a real local HTTP server.

Pull = download + verify + convert + store, with provenance in the metadata; ``resolve_weights`` (what
``--model NAME`` and ``generator.init`` use) pulls on first use; the ``restore models`` CLI lists and pulls.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import types

import pytest
import torch
from hub_server import sha256, start_server, tiny_rrdbnet_pth
from typer.testing import CliRunner

from restorekit import hookimpl
from restorekit.hub import DownloadError
from restorekit.plugins import get_plugins, registry, reset_plugins
from restorekit.store import downloads_dir, list_models, models_dir, pull, resolve_weights
from restorekit.weights import WeightInfo, load_network, read_info, save_weights

PTH = tiny_rrdbnet_pth()


def _restorekit_file() -> bytes:
    """A tiny restorekit .safetensors file (what a catalogue may also offer directly)."""
    import tempfile
    from pathlib import Path

    net = registry("generators").build("srresnet", num_features=8, num_blocks=1, scale=2)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "w.safetensors"
        save_weights(net, path, WeightInfo(name="srresnet", args={"num_features": 8, "num_blocks": 1, "scale": 2},
                                           task="super_resolution", scale=2))
        return path.read_bytes()


ST = _restorekit_file()


@pytest.fixture()
def catalogue(monkeypatch):
    """A server with the files, and a plugin registering them as catalogue entries."""
    monkeypatch.delenv("RESTOREKIT_OFFLINE", raising=False)
    server, http = start_server()
    tiny_url = server.add("releases/tiny.pth", PTH, delay=0.3)
    st_url = server.add("releases/tiny-sr.safetensors", ST)
    bad_url = server.add("releases/bad.pth", b"something else entirely")
    missing_url = server.url("releases/gone.pth")

    def register_models(register):
        register("tiny-x4", url=tiny_url, sha256=sha256(PTH), size=len(PTH), licence="MIT", arch="rrdbnet",
                 scale=4, task="super_resolution", source="https://example.org/tiny", description="a tiny RRDBNet")
        register("tiny-sr", url=st_url, sha256=sha256(ST), licence="CC0-1.0", filename="tiny-sr-v1.safetensors")
        register("tiny-bad", url=bad_url, sha256=sha256(PTH), arch="rrdbnet")
        register("tiny-gone", url=missing_url, sha256=sha256(PTH))

    plugin = types.ModuleType("catalogue_test_plugin")
    plugin.register_models = hookimpl(register_models)
    reset_plugins()
    get_plugins().add_plugin(plugin, "catalogue-test")
    assert get_plugins().info["catalogue-test"].state == "loaded", get_plugins().info["catalogue-test"].error
    yield server
    reset_plugins()
    http.shutdown()
    http.server_close()


def test_entries_carry_catalogue_metadata(catalogue):
    entry = get_plugins().models["tiny-x4"]
    assert (entry.size, entry.licence, entry.arch, entry.scale, entry.task, entry.source) == (
        len(PTH), "MIT", "rrdbnet", 4, "super_resolution", "https://example.org/tiny")
    assert entry.download_name == "tiny.pth"
    assert get_plugins().models["tiny-sr"].download_name == "tiny-sr-v1.safetensors"


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"url": "http://x/a.pth", "sha256": "abc"}, "64 hex digits"),
        ({"url": "http://x/a.pth", "sha256": "0" * 64, "size": -1}, "size must be a positive integer"),
        ({"url": "http://x/a.pth", "sha256": "0" * 64, "scale": "4"}, "scale must be a positive integer"),
        ({"url": "http://x/a.pth", "sha256": "0" * 64, "filename": "../a.pth"}, "plain file name"),
        ({"url": "http://x/a.pth", "sha256": "0" * 64, "colour": "red"}, "colour"),
    ],
)
def test_bad_catalogue_metadata_marks_the_plugin_broken(kwargs, problem):
    plugin = types.ModuleType("bad_catalogue")
    plugin.register_models = hookimpl(lambda register: register("x", **kwargs))
    reset_plugins()
    try:
        get_plugins().add_plugin(plugin, "bad-catalogue")
        info = get_plugins().info["bad-catalogue"]
        assert info.state == "broken" and problem in info.error
        assert "x" not in get_plugins().models
    finally:
        reset_plugins()


def test_old_style_registration_still_works():
    plugin = types.ModuleType("old_style")
    plugin.register_models = hookimpl(
        lambda register: register("old", url="http://x/old.pth", sha256="A" * 64, description="d"))
    reset_plugins()
    try:
        get_plugins().add_plugin(plugin, "old-style")
        entry = get_plugins().models["old"]
        assert entry.sha256 == "a" * 64 and entry.size is None and entry.licence == "" and entry.download_name == "old.pth"
    finally:
        reset_plugins()


def test_pull_downloads_verifies_converts_and_records_provenance(catalogue):
    stored = pull("tiny-x4")
    assert stored.parent == models_dir() / "tiny-x4" and "-catalogue-" in stored.name
    assert (downloads_dir() / "tiny.pth").read_bytes() == PTH
    info = read_info(stored)
    assert (info.name, info.scale, info.descriptor.scale) == ("rrdbnet", 4, 4)
    assert info.args["num_features"] == 8 and info.args["num_blocks"] == 1
    for key, value in {
        "source_url": catalogue.url("releases/tiny.pth"),
        "source_sha256": sha256(PTH),
        "licence": "MIT",
        "catalogue_name": "tiny-x4",
        "catalogue_plugin": "catalogue-test",
        "homepage": "https://example.org/tiny",
    }.items():
        assert info.extra[key] == value, key
    # The stored file rebuilds the network with exactly the published tensors.
    network, _ = load_network(stored)
    original = torch.load(io.BytesIO(PTH), weights_only=True)["params_ema"]
    assert set(network.state_dict()) == set(original)
    assert all(torch.equal(network.state_dict()[k], v) for k, v in original.items())
    # Pulled once: listing, resolving and pulling again use the stored file without the network.
    assert resolve_weights("tiny-x4") == stored and pull("tiny-x4") == stored
    assert len(catalogue.gets("releases/tiny.pth")) == 1
    listed = {m.name: m for m in list_models()}
    assert listed["tiny-x4"].source == "catalogue-downloaded" and listed["tiny-x4"].licence == "MIT"
    assert listed["tiny-sr"].source == "catalogue-available" and listed["tiny-sr"].licence == "CC0-1.0"


def test_force_downloads_again(catalogue):
    first = pull("tiny-x4")
    second = pull("tiny-x4", force=True)
    assert second != first and second.is_file() and len(catalogue.gets("releases/tiny.pth")) == 2


def test_resolve_pulls_on_first_use_unless_told_not_to(catalogue):
    with pytest.raises(FileNotFoundError, match="restore models pull tiny-x4"):
        resolve_weights("tiny-x4", download=False)
    assert catalogue.requests == []
    path = resolve_weights("tiny-x4")
    assert read_info(path).extra["catalogue_name"] == "tiny-x4"


def test_restorekit_file_is_stored_as_is(catalogue):
    stored = pull("tiny-sr")
    assert stored.read_bytes() == ST and "-catalogue-" in stored.name
    assert (downloads_dir() / "tiny-sr-v1.safetensors").is_file()
    assert pull("tiny-sr") == stored and len(catalogue.gets("releases/tiny-sr.safetensors")) == 1


def test_hash_mismatch_stores_nothing(catalogue):
    with pytest.raises(DownloadError) as info:
        pull("tiny-bad")
    message = str(info.value)
    assert "\n" not in message and catalogue.url("releases/bad.pth") in message
    assert str(downloads_dir() / "bad.pth") in message
    assert not (models_dir() / "tiny-bad").exists()
    assert [p.name for p in downloads_dir().iterdir() if not p.name.endswith(".lock")] == []


def test_404_names_url_and_manual_path(catalogue):
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        pull("tiny-gone")
    assert catalogue.url("releases/gone.pth") in str(info.value) and str(downloads_dir() / "gone.pth") in str(info.value)


def test_concurrent_pulls_download_and_convert_once(catalogue):
    results: list[object] = []

    def worker() -> None:
        try:
            results.append(pull("tiny-x4"))
        except Exception as exc:  # noqa: BLE001 - shown by the assertion
            results.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and all(not isinstance(r, Exception) for r in results), results
    assert len(catalogue.gets("releases/tiny.pth")) == 1
    assert len(list((models_dir() / "tiny-x4").glob("*.safetensors"))) == 1


def test_offline_then_manually_placed_file(catalogue, monkeypatch):
    monkeypatch.setenv("RESTOREKIT_OFFLINE", "1")
    with pytest.raises(DownloadError) as info:
        pull("tiny-x4")
    manual = downloads_dir() / "tiny.pth"
    assert catalogue.url("releases/tiny.pth") in str(info.value) and str(manual) in str(info.value)
    manual.parent.mkdir(parents=True, exist_ok=True)
    manual.write_bytes(PTH)  # what the message asks the user to do
    stored = pull("tiny-x4")
    assert read_info(stored).extra["source_sha256"] == sha256(PTH) and catalogue.requests == []


def test_unknown_name_suggests_close_ones(catalogue):
    with pytest.raises(FileNotFoundError, match="did you mean tiny-x4"):
        pull("tiny-x5")


def test_recipe_can_start_from_a_catalogue_model(catalogue, tiny_recipe):
    from restorekit.recipe.loader import load_recipe
    from restorekit.train.trainer import Trainer

    path = tiny_recipe()
    text = path.read_text().replace("args = { scale = 2 }", "args = { scale = 4 }").replace(
        'name = "srresnet"\nargs = { num_features = 8, num_blocks = 1, scale = 2 }',
        'name = "rrdbnet"\nargs = { num_features = 8, num_blocks = 1, growth_channels = 4, scale = 4 }\n'
        'init = "tiny-x4"',
    )
    assert 'init = "tiny-x4"' in text
    path.write_text(text)
    recipe = load_recipe(path)  # validation resolves (and so pulls) the init model
    assert recipe.generator.init == "tiny-x4" and len(catalogue.gets("releases/tiny.pth")) == 1
    trainer = Trainer(recipe, quiet=True)
    original = torch.load(io.BytesIO(PTH), weights_only=True)["params_ema"]
    state = trainer.generator.state_dict()
    assert all(torch.equal(state[k].cpu(), v) for k, v in original.items())


# --- the CLI --------------------------------------------------------------------------------------------


@pytest.fixture()
def cli(monkeypatch):
    from restorekit.cli import app
    from restorekit.cli.common import console, err_console

    monkeypatch.setattr(console, "width", 250)
    monkeypatch.setattr(err_console, "width", 250)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


def test_cli_lists_and_pulls(catalogue, cli):
    out = cli("models")
    assert out.exit_code == 0, out.output
    row = next(line for line in out.output.splitlines() if "tiny-x4" in line)
    assert row.split()[:2] == ["tiny-x4", "available"] and "MIT" in row and "rrdbnet x4" in row
    out = cli("models", "pull", "tiny-x4")
    assert out.exit_code == 0, out.output
    assert "stored tiny-x4" in out.output
    row = next(line for line in cli("models").output.splitlines() if "tiny-x4" in line)
    assert row.split()[:2] == ["tiny-x4", "downloaded"]


def test_cli_info_describes_then_reads_a_catalogue_model(catalogue, cli):
    """`restore info NAME`: the catalogue's word before the pull (no request made), the file's after it."""
    out = cli("info", "tiny-x4")
    assert out.exit_code == 0, out.output
    for shown in ("not downloaded", "restore models pull tiny-x4", "rrdbnet x4", f"{len(PTH):,} bytes", "MIT",
                  catalogue.url("releases/tiny.pth"), sha256(PTH), "https://example.org/tiny"):
        assert shown in out.output, shown
    assert catalogue.requests == [] and not (models_dir() / "tiny-x4").exists()
    pull("tiny-x4")
    out = cli("info", "tiny-x4")
    assert out.exit_code == 0, out.output
    assert "pulled from the catalogue" in out.output and "not downloaded" not in out.output
    assert catalogue.url("releases/tiny.pth") in out.output  # provenance kept in the stored file
    out = cli("info", "tiny-x5")
    assert out.exit_code == 1 and "did you mean tiny-x4" in out.output


@pytest.mark.parametrize(("name", "expected"), [("tiny-x5", "did you mean tiny-x4"), ("tiny-gone", "HTTP 404")])
def test_cli_pull_errors_are_one_line(catalogue, cli, name, expected):
    out = cli("models", "pull", name)
    assert out.exit_code == 1
    lines = [line for line in out.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], out.output


def test_cli_apply_pulls_on_first_use(catalogue, cli, photo_dir, tmp_path):
    out = cli("apply", "--model", "tiny-x4", str(photo_dir / "photo0.png"), "-o", str(tmp_path / "out"))
    assert out.exit_code == 0, out.output
    from PIL import Image

    written = list((tmp_path / "out").iterdir())
    assert len(written) == 1 and Image.open(written[0]).size == (52 * 4, 44 * 4)


def test_builtin_catalogue_offline_in_a_real_process(tmp_path):
    """`restore models pull` for a built-in entry, offline: one line naming the URL and the place for the file."""
    if "realesrgan-x4plus" not in get_plugins().models:
        pytest.skip("the built-in Real-ESRGAN catalogue is not installed")
    env = {**os.environ, "RESTOREKIT_HOME": str(tmp_path / "home"), "RESTOREKIT_OFFLINE": "1", "COLUMNS": "250"}
    run = [sys.executable, "-m", "restorekit.cli"]
    out = subprocess.run([*run, "models", "pull", "realesrgan-x4plus"], capture_output=True, text=True, env=env)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth" in lines[0]
    assert str(tmp_path / "home" / "downloads" / "RealESRGAN_x4plus.pth") in lines[0]
    listed = subprocess.run([*run, "models"], capture_output=True, text=True, env=env)
    row = next(line for line in listed.stdout.splitlines() if line.startswith("realesrgan-x4plus "))
    assert "available" in row and "BSD-3-Clause" in row
