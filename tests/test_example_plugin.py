"""The third-party plugin path, end to end through the real ``restore`` command line.

``examples/restorekit-example-plugin`` is made discoverable the way pip would make it, minus pip:
a ``*.dist-info`` folder with ``METADATA`` and ``entry_points.txt`` on ``PYTHONPATH``, next to the
plugin's ``src`` folder. Every assertion then runs ``python -m restorekit.cli`` in a fresh process, so
discovery, registration, recipe lookup, training and weight files go through exactly the code a
user's installed plugin does. Broken and clashing plugins are fake distributions made the same way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_SRC = REPO / "examples" / "restorekit-example-plugin" / "src"

# Wide enough that rich never wraps a table cell, so rows can be read back line by line.
COLUMNS = "400"
# The caller's plugin selection must not leak into these runs.
PLUGIN_FILTERS = ("RESTOREKIT_DISABLE_PLUGINS", "RESTOREKIT_ONLY_PLUGINS")


def _fake_distribution(root: Path, name: str, version: str, entry_points: dict[str, str]) -> None:
    """What ``pip install`` leaves behind that restorekit's discovery reads: a dist-info folder."""
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8")
    lines = "".join(f"{ep} = {module}\n" for ep, module in entry_points.items())
    (info / "entry_points.txt").write_text(f"[restorekit]\n{lines}", encoding="utf-8")


class PluginEnv:
    """A set of fake installed distributions and the environment to run ``restore`` against them."""

    def __init__(self, root: Path):
        self.root = root
        self.site = root / "site"  # the folder standing in for site-packages
        self.site.mkdir(parents=True)
        # The working directory is on sys.path under `python -m`: keep it apart from the dist-infos.
        self.cwd = root / "cwd"
        self.cwd.mkdir()
        self.home = root / "home"
        _fake_distribution(self.site, "restorekit-example-plugin", "0.1.0", {"example": "restorekit_example"})

    def add_module(self, module: str, source: str) -> None:
        (self.site / f"{module}.py").write_text(source, encoding="utf-8")

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in PLUGIN_FILTERS}
        paths = [str(self.site), str(EXAMPLE_SRC)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        env.update(PYTHONPATH=os.pathsep.join(paths), RESTOREKIT_HOME=str(self.home), COLUMNS=COLUMNS)
        # The workloads are tiny; one thread keeps torch from oversubscribing shared CPUs.
        env["OMP_NUM_THREADS"] = "1"
        return env

    def restore(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``restore ARGS`` in a new process; fails the test with its output on a non-zero exit."""
        proc = subprocess.run(
            [sys.executable, "-m", "restorekit.cli", *args],
            cwd=self.cwd,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, f"restore {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc


def table_rows(output: str, *, key: int = 1) -> dict[str | tuple[str, ...], list[str]]:
    """Rows of a rich table printed by ``restore``, keyed by their first cell (first *key* cells)."""
    rows: dict[str | tuple[str, ...], list[str]] = {}
    for line in output.splitlines():
        if line.startswith("│"):
            cells = [c.strip() for c in line.strip().strip("│").split("│")]
            rows[cells[0] if key == 1 else tuple(cells[:key])] = cells
    return rows


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> PluginEnv:
    """Only the example plugin added to what restorekit ships."""
    return PluginEnv(tmp_path_factory.mktemp("example-plugin"))


BROKEN_PLUGIN = '''
raise ImportError("restorekit-broken-plugin needs libfrobnicate, which is not installed")
'''

# Registers a fresh name first, then one the srgan plugin owns: neither may reach the registry.
TWIN_PLUGIN = '''
from restorekit.hookspecs import hookimpl


@hookimpl
def register_generators(register):
    register("twin_net", "restorekit_twin_plugin:TwinNet", "a network that must not be registered")
    register("srresnet", "restorekit_twin_plugin:SRResNet", "a second srresnet")
'''


@pytest.fixture(scope="module")
def troubled(tmp_path_factory) -> PluginEnv:
    """The example plugin next to one that fails at import and one that reuses a built-in name."""
    env = PluginEnv(tmp_path_factory.mktemp("troubled-plugins"))
    _fake_distribution(env.site, "restorekit-broken-plugin", "2.0", {"broken": "restorekit_broken_plugin"})
    env.add_module("restorekit_broken_plugin", BROKEN_PLUGIN)
    # "twin" loads after "srgan" (see test_builtin_name_survives_a_plugin_loading_first for the other order).
    _fake_distribution(env.site, "restorekit-twin-plugin", "1.0", {"twin": "restorekit_twin_plugin"})
    env.add_module("restorekit_twin_plugin", TWIN_PLUGIN)
    return env


# --- the example plugin, as a user sees it ----------------------------------------------------------


def test_list_shows_the_plugin_generator_and_recipe(example):
    rows = table_rows(example.restore("list").stdout, key=2)  # a name may be both a generator and a recipe
    assert rows["espcn", "generator"][2] == "example"
    assert "Shi et al. 2016" in rows["espcn", "generator"][3]
    assert rows["espcn", "recipe"][2] == "example"
    assert rows["srresnet", "generator"][2] == "srgan"  # the built-ins are all still there


def test_plugins_shows_the_distribution_loaded(example):
    rows = table_rows(example.restore("plugins").stdout)
    assert rows["example"][1:4] == ["restorekit-example-plugin", "0.1.0", "loaded"], rows.get("example")
    assert "1 generators" in rows["example"][4] and "1 recipes" in rows["example"][4]
    assert rows["srgan"][3] == "loaded"


def test_check_finds_the_recipe_by_name(example):
    out = example.restore("check", "espcn").stdout
    assert "ok espcn" in out
    resolved = out[: out.index("ok espcn")]
    assert 'name = "espcn"' in resolved and "scale = 3" in resolved
    assert 'name = "mse"' in resolved  # the paper's loss


def test_run_trains_like_a_builtin_and_the_file_rebuilds_the_network(example):
    pytest.importorskip("skimage", reason="the recipe trains on scikit-image's sample photographs")
    from safetensors import safe_open

    run_dir = example.root / "run"
    example.restore(
        "run", "espcn",
        "--set", "train.steps=3",
        "--set", f"output.dir={run_dir}",
        "--set", "data.batch_size=2",
        "--set", "data.train.crop=24",
        "--set", "data.workers=0",
        "--set", "train.device=cpu",
        "--set", "output.tensorboard=false",
        "--set", "output.previews=false",
        # A 200x200 photograph instead of the recipe's 451x300 one keeps validation quick.
        "--set", 'data.val.include=["chessboard_RGB.png"]',
    )  # fmt: skip

    weights = run_dir / "espcn.safetensors"
    with safe_open(str(weights), framework="pt") as handle:
        meta = handle.metadata()
        keys = set(handle.keys())
    assert meta["name"] == "espcn" and meta["plugin"] == "example"
    assert json.loads(meta["args"]) == {"features": 64, "scale": 3}
    assert meta["scale"] == "3" and meta["task"] == "super_resolution" and meta["recipe_name"] == "espcn"
    assert keys == {f"conv{i}.{p}" for i in (1, 2, 3) for p in ("weight", "bias")}

    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert train and train[-1]["step"] == 3 and train[-1]["g_pixel"] > 0
    assert [r["step"] for r in records if r["kind"] == "done"] == [3]
    assert list((example.home / "models" / "espcn").glob("*.safetensors")), "weights were not added to the store"

    info = table_rows(example.restore("info", str(weights)).stdout)
    assert info["network"][1] == "espcn (generator, plugin example)"
    # conv 5x5 3->64, conv 3x3 64->32, conv 3x3 32->27 (3 channels x 3^2), with biases.
    assert info["parameters"][1] == f"{(3 * 64 * 25 + 64) + (64 * 32 * 9 + 32) + (32 * 27 * 9 + 27):,}"

    # Evaluated and applied by the stored name, exactly like a built-in model.
    hr = example.root / "hr"
    hr.mkdir(exist_ok=True)
    from PIL import Image

    Image.new("RGB", (30, 24), (120, 40, 200)).save(hr / "flat.png")
    scores = json.loads(example.restore("eval", "--model", "espcn", "--data", str(hr), "--json").stdout)
    assert scores["scale"] == 3 and [image["name"] for image in scores["images"]] == ["flat"]
    example.restore("apply", "--model", "espcn", str(hr / "flat.png"), "-o", str(example.root / "out"))
    assert Image.open(example.root / "out" / "flat.png").size == (90, 72)


# --- plugins that go wrong ---------------------------------------------------------------------------


def test_broken_plugin_is_reported_and_does_not_take_the_cli_down(troubled):
    listing = troubled.restore("list")  # exit 0 is asserted by restore()
    rows = table_rows(listing.stdout, key=2)
    assert rows["espcn", "generator"][2] == "example" and rows["srresnet", "generator"][2] == "srgan"
    assert "plugin 'broken' is broken: ImportError: restorekit-broken-plugin needs libfrobnicate" in listing.stderr

    plugins = table_rows(troubled.restore("plugins").stdout)
    assert plugins["broken"][1:4] == ["restorekit-broken-plugin", "2.0", "broken"]
    assert plugins["broken"][4] == "ImportError: restorekit-broken-plugin needs libfrobnicate, which is not installed"
    assert plugins["example"][3] == "loaded"


def test_duplicate_name_names_both_plugins_and_leaves_the_registry_unchanged(troubled):
    plugins = table_rows(troubled.restore("plugins").stdout)
    assert plugins["twin"][3] == "broken"
    assert plugins["twin"][4] == "duplicate generator 'srresnet': registered by plugin 'srgan' and by plugin 'twin'"
    assert plugins["srgan"][3] == "loaded"

    rows = table_rows(troubled.restore("list", "generators").stdout)
    assert rows["srresnet"][2] == "srgan"
    assert "twin_net" not in rows  # all of a failing plugin's registrations are dropped


def test_builtin_name_survives_a_plugin_loading_first(tmp_path):
    env = PluginEnv(tmp_path)
    _fake_distribution(env.site, "restorekit-aardvark-plugin", "1.0", {"aardvark": "restorekit_aardvark_plugin"})
    env.add_module("restorekit_aardvark_plugin", TWIN_PLUGIN.replace("twin", "aardvark"))
    plugins = table_rows(env.restore("plugins").stdout)
    assert plugins["srgan"][3] == "loaded", plugins["srgan"]
    assert plugins["aardvark"][4] == (
        "duplicate generator 'srresnet': registered by plugin 'srgan' and by plugin 'aardvark'"
    )


# --- the network itself ----------------------------------------------------------------------------


@pytest.fixture
def espcn_class(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE_SRC))
    from restorekit_example.espcn import ESPCN

    return ESPCN


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_espcn_upscales_by_its_scale_with_the_paper_layout(espcn_class, scale):
    import torch

    net = espcn_class(features=8, scale=scale)
    assert net.scale == scale
    assert [(c.kernel_size, c.in_channels, c.out_channels) for c in (net.conv1, net.conv2, net.conv3)] == [
        ((5, 5), 3, 8), ((3, 3), 8, 4), ((3, 3), 4, 3 * scale * scale),
    ]  # fmt: skip
    x = torch.rand(2, 3, 7, 5, requires_grad=True)
    out = net(x)
    assert out.shape == (2, 3, 7 * scale, 5 * scale)
    out.mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_espcn_rejects_bad_arguments(espcn_class):
    with pytest.raises(TypeError):
        espcn_class(3, 3)  # keyword arguments only
    with pytest.raises(TypeError):
        espcn_class(scales=3)  # a mistyped recipe key fails
    with pytest.raises(ValueError, match="scale"):
        espcn_class(scale=0)
    with pytest.raises(ValueError, match="features"):
        espcn_class(features=1)
