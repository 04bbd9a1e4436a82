"""Plugin discovery through the entry-point group, broken plugins, blocking plugins by name."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from restorekit.hookspecs import hookimpl
from restorekit.plugins import Plugins, get_plugins, reset_plugins
from restorekit.registry import KINDS


def test_builtin_plugins_come_through_the_entry_point_group():
    plugins = get_plugins()
    for name in ("core", "srgan", "esrgan", "deblurgan", "rdn"):
        assert plugins.info[name].state == "loaded", plugins.info[name].error
        assert plugins.info[name].distribution == "restorekit"
    assert plugins.registry("generators").get("srresnet").plugin == "srgan"
    assert plugins.registry("losses").get("perceptual").plugin == "core"
    assert plugins.registry("tasks").get("super_resolution").plugin == "core"
    assert "quickstart" in plugins.recipes


def test_every_lazy_component_imports():
    plugins = get_plugins()
    for kind in KINDS:
        for comp in plugins.registry(kind):
            assert callable(comp.factory), comp.name
            assert comp.description, f"{comp.name} has no description"


def _plugin(**hooks):
    module = types.ModuleType("fake_plugin")
    for name, func in hooks.items():
        setattr(module, name, hookimpl(func))
    return module


def test_add_plugin_duplicate_marks_broken_and_keeps_registries():
    plugins = Plugins()
    plugins.add_plugin(_plugin(register_generators=lambda register: register("net", "torch.nn:Identity", "x")), "one")

    def dup(register):
        register("fresh", "torch.nn:Identity", "y")
        register("net", "torch.nn:Identity", "z")

    plugins.add_plugin(_plugin(register_generators=dup), "two")
    assert plugins.info["two"].state == "broken"
    assert "'one'" in plugins.info["two"].error and "'two'" in plugins.info["two"].error
    assert plugins.registry("generators").names() == ["net"]
    assert plugins.registry("generators").get("net").plugin == "one"


def test_hook_that_raises_marks_plugin_broken():
    plugins = Plugins()

    def boom(register):
        raise RuntimeError("kaboom")

    plugins.add_plugin(_plugin(register_losses=boom), "exploding")
    assert plugins.info["exploding"].state == "broken"
    assert "kaboom" in plugins.info["exploding"].error
    assert len(plugins.registry("losses")) == 0


def test_misspelled_hook_is_a_loud_error():
    plugins = Plugins()
    plugins.add_plugin(_plugin(register_generator=lambda register: None), "typo")
    assert plugins.info["typo"].state == "broken"
    assert "register_generator" in plugins.info["typo"].error


def test_hookimpl_may_take_fewer_arguments():
    plugins = Plugins()
    called = []
    plugins.add_plugin(_plugin(register_tasks=lambda: called.append(True)), "noargs")
    assert called == [True] and plugins.info["noargs"].state == "loaded"


def test_disable_plugins_by_environment(monkeypatch):
    monkeypatch.setenv("RESTOREKIT_DISABLE_PLUGINS", "esrgan, rdn")
    reset_plugins()
    try:
        plugins = get_plugins()
        assert plugins.info["esrgan"].state == "disabled"
        assert "rrdbnet" not in plugins.registry("generators")
        assert "srresnet" in plugins.registry("generators")
    finally:
        monkeypatch.delenv("RESTOREKIT_DISABLE_PLUGINS")
        reset_plugins()


def test_only_plugins_keeps_core(monkeypatch):
    monkeypatch.setenv("RESTOREKIT_ONLY_PLUGINS", "srgan")
    reset_plugins()
    try:
        plugins = get_plugins()
        assert plugins.info["core"].state == "loaded"
        assert plugins.registry("generators").names() == ["srresnet"]
    finally:
        monkeypatch.delenv("RESTOREKIT_ONLY_PLUGINS")
        reset_plugins()


def test_import_restorekit_builds_nothing_and_imports_no_torch():
    code = (
        "import sys, restorekit, restorekit.plugins as p; p.get_plugins();"
        "import restorekit.cli;"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "restorekit.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for command in ("list", "plugins", "check", "run", "info", "models"):
        assert command in out.stdout
