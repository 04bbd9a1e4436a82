"""The official Real-ESRGAN models in the download catalogue: exact URLs and hashes from the reference
data, complete metadata, and an architecture restorekit can convert for every entry."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from restorekit.convert import convert_checkpoint
from restorekit.plugins import get_plugins, registry
from restorekit_plugins.esrgan.rrdbnet import RRDBNet
from restorekit_plugins.realesrgan.srvgg import SRVGGNetCompact

# catalogue name -> (file name in the reference table, architecture, scale, bytes or None)
EXPECTED = {
    "realesrgan-x4plus": ("RealESRGAN_x4plus", "rrdbnet", 4, 67_040_989),
    "realesrnet-x4plus": ("RealESRNet_x4plus", "rrdbnet", 4, None),
    "realesrgan-x2plus": ("RealESRGAN_x2plus", "rrdbnet", 2, None),
    "realesrgan-x4plus-anime-6b": ("RealESRGAN_x4plus_anime_6B", "rrdbnet", 4, 17_938_799),
    "realesr-general-x4v3": ("realesr-general-x4v3", "srvgg_compact", 4, None),
}


def _reference_rows(reference: Path) -> dict[str, tuple[str, str]]:
    """name → (URL, SHA-256) read from the published table, so a typo in either place is caught."""
    rows = {}
    for line in reference.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and re.fullmatch(r"[0-9a-f]{64}", cells[3]):
            rows[cells[0]] = (cells[1], cells[3])
    return rows


@pytest.fixture(scope="module")
def models():
    return get_plugins().models


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_entry_matches_the_reference(name, models, shared_data):
    ref_name, arch, scale, size = EXPECTED[name]
    url, sha256 = _reference_rows(shared_data / "models-reference.md")[ref_name]
    entry = models[name]
    assert (entry.plugin, entry.url, entry.sha256, entry.path) == ("realesrgan", url, sha256, None)
    assert (entry.arch, entry.scale, entry.size, entry.task) == (arch, scale, size, "super_resolution")
    assert (entry.licence, entry.source) == ("BSD-3-Clause", "https://github.com/xinntao/Real-ESRGAN")
    assert entry.description and "\n" not in entry.description
    assert arch in registry("generators")


def _official_like(arch: str, name: str) -> tuple[torch.nn.Module, str]:
    """A tiny random network with the same key layout as the entry's file, and the wrapper key it
    is saved under (RRDBNet files hold params_ema, the compact ones params)."""
    if name == "realesr-general-x4v3":
        return SRVGGNetCompact(num_features=8, num_conv=3, scale=4), "params"
    blocks = 2 if "6b" in name else 1
    return RRDBNet(num_features=8, num_blocks=blocks, growth_channels=4, scale=EXPECTED[name][2]), "params_ema"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_entry_architecture_converts(name, models, tmp_path):
    entry = models[name]
    net, wrapper = _official_like(entry.arch, name)
    state = net.state_dict()
    if name == "realesrgan-x2plus":
        assert state["conv_first.weight"].shape[1] == 12  # pixel-unshuffle front, as in the official file
    path = tmp_path / f"{name}.pth"
    torch.save({wrapper: state}, path)
    converted, info = convert_checkpoint(path, hints={"arch": entry.arch, "scale": entry.scale})
    assert (info.name, info.scale) == (entry.arch, entry.scale)
    x = torch.rand(1, 3, 6, 7)
    with torch.no_grad():
        assert torch.allclose(converted(x), net.eval()(x), atol=1e-6)
