"""The strict registry: duplicates, unknown names, argument checks, lazy imports."""

from __future__ import annotations

import pytest

from restorekit.registry import Component, ComponentImportError, Registry, RegistryError, UnknownComponentError


def make_net(*, num_blocks: int = 4, num_features: int = 8):
    """A toy factory with explicit arguments."""
    return ("net", num_blocks, num_features)


def test_add_get_build():
    reg = Registry("generators")
    reg.add(Component("toy", "generators", make_net, "p1", "toy net"))
    assert "toy" in reg and len(reg) == 1
    assert reg.build("toy", num_blocks=2) == ("net", 2, 8)


def test_duplicate_names_both_plugins_and_leaves_registry_unchanged():
    reg = Registry("generators")
    reg.add(Component("toy", "generators", make_net, "first_plugin"))
    batch = [Component("other", "generators", make_net, "second_plugin"), Component("toy", "generators", make_net, "second_plugin")]
    with pytest.raises(RegistryError) as info:
        reg.add_all(batch)
    message = str(info.value)
    assert "first_plugin" in message and "second_plugin" in message and "'toy'" in message
    assert reg.names() == ["toy"]  # 'other' was not half-added
    assert reg.get("toy").plugin == "first_plugin"


def test_unknown_name_lists_closest():
    reg = Registry("generators")
    for name in ("srresnet", "rrdbnet", "rdn"):
        reg.add(Component(name, "generators", make_net, "p"))
    with pytest.raises(UnknownComponentError) as info:
        reg.get("srresnt")
    assert "did you mean srresnet" in str(info.value)
    with pytest.raises(UnknownComponentError) as info:
        reg.get("zzzzzz")
    assert "known: rdn, rrdbnet, srresnet" in str(info.value)


def test_check_args_unknown_and_missing():
    def needs(*, scale: int, num_blocks: int = 16):
        return scale

    comp = Component("x", "generators", needs, "p")
    problems = dict(comp.check_args({"num_blocs": 3}))
    assert problems["num_blocs"] == "unknown; did you mean num_blocks?"
    assert "required" in problems["scale"]
    assert comp.check_args({"scale": 2}) == []


def test_lazy_target_imported_on_first_use_and_broken_import_reported():
    comp = Component("lin", "generators", "torch.nn:Linear", "p")
    assert isinstance(comp.target, str)
    assert comp.factory.__name__ == "Linear"
    broken = Component("gone", "generators", "no_such_module_xyz:Net", "badplugin")
    with pytest.raises(ComponentImportError) as info:
        broken.factory
    assert "badplugin" in str(info.value) and "no_such_module_xyz" in str(info.value)


def test_invalid_name_rejected():
    reg = Registry("losses")
    with pytest.raises(RegistryError):
        reg.add(Component("bad name!", "losses", make_net, "p"))
