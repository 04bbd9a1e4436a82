"""Contract tests parametrized over the registries themselves.

Every registered generator, discriminator and loss — including those a plugin adds — gets these
checks for free: forward shape, backward, safetensors round trip, strict constructor arguments.
"""

from __future__ import annotations

import inspect
import warnings

import pytest
import torch

from restorekit.plugins import get_plugins
from restorekit.weights import WeightInfo, load_network, read_info, save_weights

PLUGINS = get_plugins()
GENERATORS = PLUGINS.registry("generators").names()
DISCRIMINATORS = PLUGINS.registry("discriminators").names()
LOSSES = PLUGINS.registry("losses").names()


def _build(kind: str, name: str):
    comp = PLUGINS.registry(kind).get(name)
    torch.manual_seed(0)
    return comp, comp.build(**comp.info.get("tiny_args", {})), comp.info.get("tiny_args", {})


@pytest.mark.parametrize("name", GENERATORS)
def test_generator_contract(name, tmp_path):
    comp, net, args = _build("generators", name)
    params = inspect.signature(comp.factory).parameters
    assert not any(p.kind is p.VAR_KEYWORD for p in params.values()), "constructors take explicit arguments"
    scale = net.scale
    assert isinstance(scale, int) and scale >= 1
    size = comp.info.get("test_size", 12)
    x = torch.rand(2, getattr(net, "in_channels", 3), size, size + 4)
    y = net(x)
    assert y.shape[-2:] == (size * scale, (size + 4) * scale)
    y.mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters() if p.requires_grad)

    path = tmp_path / f"{name}.safetensors"
    save_weights(net, path, WeightInfo(name=name, args=args, plugin=comp.plugin, scale=scale, task="t"))
    info = read_info(path)
    assert (info.name, info.args, info.scale, info.plugin) == (name, args, scale, comp.plugin)
    rebuilt, _ = load_network(path)  # from the file alone
    net.eval()
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), net(x), atol=1e-6)


@pytest.mark.parametrize("name", DISCRIMINATORS)
def test_discriminator_contract(name):
    comp, net, _args = _build("discriminators", name)
    size = comp.info.get("test_size", 32)
    x = torch.rand(2, 3, size, size, requires_grad=True)
    logits = net(x)
    assert logits.shape[0] == 2 and logits.shape[1] == 1
    logits.mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", LOSSES)
def test_loss_rejects_unknown_arguments(name):
    comp = PLUGINS.registry("losses").get(name)
    assert comp.check_args({"no_such_argument": 1}), "a mistyped recipe key must fail"


@pytest.mark.parametrize("name", LOSSES)
def test_loss_contract(name):
    comp = PLUGINS.registry("losses").get(name)
    args = {"weights": "random", "layers": {"relu2_2": 1.0}} if name == "perceptual" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss = comp.build(**args)
    out = torch.rand(2, 3, 32, 32, requires_grad=True)
    target = torch.rand(2, 3, 32, 32)
    if getattr(loss, "adversarial", False):
        disc = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.LeakyReLU(0.2), torch.nn.Conv2d(4, 1, 3))
        d_value = loss.discriminator_loss(disc, target, out.detach())
        g_value = loss.generator_loss(disc, target, out)
        assert d_value.ndim == 0 and g_value.ndim == 0 and torch.isfinite(d_value) and torch.isfinite(g_value)
        g_value.backward()
    else:
        value = loss(out, target)
        assert value.ndim == 0 and value > 0
        value.backward()
        assert float(loss(target, target)) <= float(value.detach())
    assert out.grad is not None
