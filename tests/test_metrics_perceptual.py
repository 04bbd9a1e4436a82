"""LPIPS (AlexNet, VGG) and DISTS: equal to torchmetrics' own calls on the same weights; 0 for identical
images; growing with noise; backbones fetched through the verified download path.

No ImageNet weights are reachable here, so the backbones are random ones (seeded) saved under
torchvision's file names. torchmetrics' public functions load them from a temporary torch hub cache, as
they would load the real files; restorekit's metrics get the same file through ``weights_path`` or the
download path (a local HTTP server standing in for download.pytorch.org).
"""

from __future__ import annotations

import hashlib

import pytest
import torch
import torchvision
from torch import nn

from restorekit.metrics import perceptual
from restorekit.metrics.perceptual import DISTS, LPIPS, MetricWeightsError, RandomMetricWeightsWarning

pytest.importorskip("torchmetrics")

OFFICIAL = {"alexnet": "alexnet-owt-7be5be79.pth", "vgg16": "vgg16-397923af.pth"}


def _random_state(arch: str, seed: int) -> dict[str, torch.Tensor]:
    """A full torchvision state dict: random features (seeded), classifier as zero-stride zeros (tiny file)."""
    with torch.device("meta"):
        model = getattr(torchvision.models, arch)(weights=None)
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in model.state_dict().items():
        if key.startswith("features.") and key.endswith("weight"):
            fan_in = value[0].numel()
            state[key] = torch.randn(value.shape, generator=generator) * (2.0 / fan_in) ** 0.5
        elif key.startswith("features."):
            state[key] = torch.randn(value.shape, generator=generator) * 0.01
        else:  # classifier: never used by the metrics, but torchvision loads strictly
            state[key] = torch.zeros(()).expand(value.shape)
    return state


@pytest.fixture(scope="module")
def backbones(tmp_path_factory) -> dict[str, object]:
    """Random AlexNet/VGG16 files, under the official names in a torch hub cache (for torchmetrics)."""
    hub = tmp_path_factory.mktemp("torch-home") / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    files = {}
    for seed, arch in enumerate(OFFICIAL):
        path = hub / "checkpoints" / OFFICIAL[arch]
        torch.save(_random_state(arch, seed), path)
        files[arch] = path
    return {"hub": hub, **files}


@pytest.fixture()
def library_hub(backbones):
    """torchvision (inside torchmetrics) reads the random files from this hub cache."""
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(backbones["hub"]))
    yield backbones
    torch.hub.set_dir(previous)


def _pair(seed: int = 0, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    smooth = torch.nn.functional.interpolate(torch.rand(2, 3, size // 8, size // 8, generator=generator), size=size,
                                             mode="bicubic", align_corners=False)
    clean = (smooth + 0.1 * torch.rand(2, 3, size, size, generator=generator)).clamp(0, 1)
    noisy = (clean + 0.1 * torch.randn(clean.shape, generator=generator)).clamp(0, 1)
    return noisy, clean


@pytest.mark.parametrize(
    "net,arch", [("alex", "alexnet"), pytest.param("vgg", "vgg16", marks=pytest.mark.slow)], ids=["alex", "vgg"]
)
def test_lpips_equals_torchmetrics_own_call_on_the_same_weights(library_hub, net, arch):
    from torchmetrics.functional.image.lpips import learned_perceptual_image_patch_similarity

    output, target = _pair()
    ours = LPIPS(net=net, weights_path=library_hub[arch])(output, target)
    theirs = learned_perceptual_image_patch_similarity(output, target, net_type=net, normalize=True, reduction="none")
    assert ours.dtype == torch.float64 and ours.shape == (2,)
    torch.testing.assert_close(ours.float(), theirs, rtol=1e-5, atol=1e-7)
    assert float(ours.min()) > 0


def test_dists_equals_torchmetrics_own_call_on_the_same_weights(library_hub):
    from torchmetrics.functional.image.dists import deep_image_structure_and_texture_similarity

    output, target = _pair(1)
    score = DISTS(weights_path=library_hub["vgg16"])
    ours = score(output, target)
    theirs = deep_image_structure_and_texture_similarity(output, target, reduction="none")
    torch.testing.assert_close(ours.float(), theirs.detach(), rtol=1e-5, atol=1e-7)
    assert float(ours.min()) > 0 and float(score(target, target).abs().max()) < 1e-6


@pytest.mark.parametrize("metric", ["alex", *(pytest.param(m, marks=pytest.mark.slow) for m in ("vgg", "dists"))])
def test_identical_images_give_zero_and_noise_grows_the_distance(backbones, metric):
    build = (lambda: DISTS(weights_path=backbones["vgg16"])) if metric == "dists" else (
        lambda: LPIPS(net=metric, weights_path=backbones["alexnet" if metric == "alex" else "vgg16"]))
    score = build()
    _, clean = _pair(2, size=48)
    assert score(clean, clean).abs().max() < 1e-6
    generator = torch.Generator().manual_seed(3)
    noise = torch.randn(clean.shape, generator=generator)
    values = [float(score((clean + sigma * noise).clamp(0, 1), clean).mean()) for sigma in (0.02, 0.08, 0.3)]
    assert values == sorted(values) and values[0] > 0, values


def test_border_grey_images_and_per_image_values(backbones):
    score = LPIPS(net="alex", border=4, weights_path=backbones["alexnet"])
    output, target = _pair(4)
    batch = score(output, target)
    singles = torch.stack([score(output[i], target[i]) for i in range(2)])
    torch.testing.assert_close(batch, singles)
    cropped = LPIPS(net="alex", weights_path=backbones["alexnet"])(output[..., 4:-4, 4:-4], target[..., 4:-4, 4:-4])
    torch.testing.assert_close(batch, cropped)
    grey = output[:, :1]
    as_rgb = score(grey.expand(-1, 3, -1, -1), target[:, :1].expand(-1, 3, -1, -1))
    torch.testing.assert_close(score(grey, target[:, :1]), as_rgb)
    with pytest.raises(ValueError, match="shapes differ"):
        score(output, target[..., :32])
    with pytest.raises(ValueError, match="border 40 leaves nothing"):
        LPIPS(net="alex", border=40, weights_path=backbones["alexnet"])(output, target)


def test_random_backbone_warns_and_bad_arguments_are_refused():
    with pytest.warns(RandomMetricWeightsWarning, match="tests only"):
        LPIPS(net="alex", weights="random")
    with pytest.raises(ValueError, match="net must be one of alex, vgg"):
        LPIPS(net="squeezenet")
    with pytest.raises(ValueError, match="weights must be one of"):
        DISTS(weights="pretrained")


def test_offline_error_names_the_file_its_url_and_where_to_put_it(tmp_path):
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "empty-hub"))
    try:
        with pytest.raises(MetricWeightsError) as info:
            LPIPS(net="alex")
    finally:
        torch.hub.set_dir(previous)
    message = str(info.value)
    assert "RESTOREKIT_OFFLINE" in message and perceptual.BACKBONE_URLS["alexnet"] in message
    assert str(tmp_path / "empty-hub" / "checkpoints" / OFFICIAL["alexnet"]) in message


def test_a_weights_file_of_another_network_is_refused(backbones):
    with pytest.raises(MetricWeightsError, match="does not hold torchvision alexnet weights"):
        LPIPS(net="alex", weights_path=backbones["vgg16"])


@pytest.fixture()
def alexnet_server(monkeypatch, tmp_path, backbones):
    """download.pytorch.org stood in for by a local server; the file named by its own SHA-256 prefix."""
    from hub_server import start_server

    monkeypatch.delenv("RESTOREKIT_OFFLINE", raising=False)
    server, http = start_server()
    data = backbones["alexnet"].read_bytes()
    name = f"alexnet-owt-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    hub = tmp_path / "hub"
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(hub))

    def serve(payload: bytes) -> str:
        url = server.add(name, payload)
        monkeypatch.setitem(perceptual.BACKBONE_URLS, "alexnet", url)
        return url

    yield server, serve, data, hub / "checkpoints" / name
    torch.hub.set_dir(previous)
    http.shutdown()
    http.server_close()


def test_the_backbone_is_downloaded_once_hash_checked_and_used(alexnet_server, backbones):
    server, serve, data, cached = alexnet_server
    serve(data)
    output, target = _pair(5)
    downloaded = LPIPS(net="alex")(output, target)
    assert cached.read_bytes() == data
    torch.testing.assert_close(downloaded, LPIPS(net="alex", weights_path=backbones["alexnet"])(output, target))
    LPIPS(net="alex")  # from the cache now
    assert len(server.requests) == 1


def test_a_download_that_fails_its_hash_is_refused_and_not_kept(alexnet_server):
    _, serve, _, cached = alexnet_server
    url = serve(b"these are not AlexNet weights")
    with pytest.raises(MetricWeightsError) as info:
        LPIPS(net="alex")
    assert url in str(info.value) and "SHA-256" in str(info.value) and str(cached) in str(info.value)
    assert not cached.exists() and not cached.with_name(cached.name + ".part").exists()


def test_the_network_stays_frozen_in_eval_mode(backbones):
    score = LPIPS(net="alex", weights_path=backbones["alexnet"])
    score.net.train(True)
    assert not score.net.training
    assert not any(p.requires_grad for p in score.net.parameters())
    assert all(not isinstance(m, nn.Dropout) or not m.training for m in score.net.modules())


def test_the_linear_layers_are_the_authors_and_not_random(backbones):
    """The lin layers come from torchmetrics' wheel: two instances agree without any seeding."""
    torch.manual_seed(11)
    a = LPIPS(net="alex", weights_path=backbones["alexnet"])
    torch.manual_seed(12)
    b = LPIPS(net="alex", weights_path=backbones["alexnet"])
    for pa, pb in zip(a.net.parameters(), b.net.parameters()):
        assert torch.equal(pa, pb)
