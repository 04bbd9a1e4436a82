"""Pixel, VGG perceptual and adversarial losses: values, gradients, frozen VGG, weight loading."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from restorekit.losses.adversarial import BCEGANLoss, HingeGANLoss, LSGANLoss, RaGANLoss, WGANGPLoss
from restorekit.losses import perceptual
from restorekit.losses.base import is_adversarial
from restorekit.losses.perceptual import (
    MissingWeightsError,
    PerceptualLoss,
    RandomWeightsWarning,
    VGGWeightsError,
    layer_names,
)
from restorekit.losses.pixel import CharbonnierLoss, L1Loss, MSELoss

# ---------------------------------------------------------------- pixel


def _pair():
    output = torch.tensor([0.0, 0.5, 1.0, 0.25]).view(1, 1, 2, 2)
    target = torch.tensor([0.5, 0.5, 0.0, 1.0]).view(1, 1, 2, 2)
    return output, target  # differences -0.5, 0, 1, -0.75


def test_pixel_losses_match_hand_computed_values():
    output, target = _pair()
    assert MSELoss()(output, target).item() == pytest.approx((0.25 + 0 + 1 + 0.5625) / 4)
    assert MSELoss(reduction="sum")(output, target).item() == pytest.approx(1.8125)
    assert L1Loss()(output, target).item() == pytest.approx((0.5 + 0 + 1 + 0.75) / 4)
    assert L1Loss(reduction="sum")(output, target).item() == pytest.approx(2.25)
    eps = 0.1
    expected = [math.sqrt(d * d + eps * eps) for d in (0.5, 0.0, 1.0, 0.75)]
    assert CharbonnierLoss(eps=eps, reduction="sum")(output, target).item() == pytest.approx(sum(expected))
    assert CharbonnierLoss(eps=eps)(output, target).item() == pytest.approx(sum(expected) / 4)
    assert CharbonnierLoss()(target, target).item() == pytest.approx(1e-3)


@pytest.mark.parametrize("cls", [MSELoss, L1Loss, CharbonnierLoss])
def test_pixel_loss_rejects_bad_reduction_and_shape(cls):
    with pytest.raises(ValueError, match="reduction must be one of mean, sum"):
        cls(reduction="none")
    with pytest.raises(TypeError):
        cls(reductoin="mean")  # a mistyped recipe key fails
    with pytest.raises(ValueError, match="shape"):
        cls()(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 1))


@pytest.mark.parametrize("cls", [MSELoss, L1Loss, CharbonnierLoss])
def test_pixel_loss_float32_under_autocast_and_gradient(cls):
    output = torch.rand(2, 3, 4, 4, requires_grad=True)
    target = torch.rand(2, 3, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = cls()(output.bfloat16(), target.bfloat16())
    assert loss.dtype == torch.float32
    loss.backward()
    assert output.grad is not None and output.grad.abs().sum() > 0


# ---------------------------------------------------------------- perceptual


def _random_vgg(**kwargs) -> PerceptualLoss:
    with pytest.warns(RandomWeightsWarning, match="meaningless for training"):
        return PerceptualLoss(weights="random", **kwargs)


def test_layer_name_tables():
    vgg19, vgg16 = layer_names("vgg19"), layer_names("vgg16")
    assert "conv5_4" in vgg19 and "conv5_4" not in vgg16
    assert "conv5_3" in vgg16 and "relu5_3" in vgg16
    for name in ("conv3_3", "relu3_3", "conv1_1", "relu2_2", "pool5"):
        assert name in vgg19 and name in vgg16
    # torchvision's feature stacks have 37 and 31 layers
    assert len(vgg19) == 37 and len(vgg16) == 31
    assert vgg19[:5] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"]


def test_unknown_layer_lists_valid_names_with_suggestion():
    with pytest.raises(ValueError, match=r"did you mean conv5_3.*valid layers: conv1_1"):
        PerceptualLoss(network="vgg16", layers={"conv5_4": 1.0}, weights="random")
    with pytest.raises(ValueError, match="did you mean vgg19"):
        PerceptualLoss(network="vgg91", weights="random")
    with pytest.raises(ValueError, match="criterion"):
        PerceptualLoss(criterion="l2", weights="random")
    with pytest.raises(TypeError):
        PerceptualLoss(layer={"conv5_4": 1.0}, weights="random")


def test_random_weights_warn_and_truncate_after_deepest_layer():
    loss = _random_vgg(network="vgg16", layers={"conv3_3": 1.0, "relu1_2": 0.5})
    # conv3_3 is index 14 in torchvision's VGG16: nothing past it is kept
    assert len(loss.features) == 15
    assert isinstance(loss.features[-1], nn.Conv2d)
    assert not any(isinstance(m, nn.ReLU) and m.inplace for m in loss.features)


def test_pre_activation_capture_is_really_before_relu():
    torch.manual_seed(0)
    loss = _random_vgg(layers=["conv2_1", "relu2_1"])
    feats = loss.extract(torch.rand(2, 3, 16, 16))
    conv, relu = feats["conv2_1"], feats["relu2_1"]
    assert conv.min() < 0  # an in-place ReLU would have clipped the captured map
    assert relu.min() >= 0
    torch.testing.assert_close(F.relu(conv), relu)
    assert not torch.equal(conv, relu)


def test_perceptual_loss_zero_for_identical_and_positive_otherwise():
    torch.manual_seed(0)
    loss = _random_vgg(layers={"conv1_2": 1.0, "relu2_2": 0.5}, criterion="l1")
    image = torch.rand(2, 3, 16, 16)
    assert loss(image, image.clone()).item() == 0.0
    assert loss(image, (image + 0.1 * torch.randn_like(image)).clamp(0, 1)).item() > 0


def test_perceptual_gradient_reaches_input_only_and_vgg_stays_frozen():
    torch.manual_seed(0)
    loss = _random_vgg(layers={"relu2_2": 1.0})
    parent = nn.ModuleDict({"perceptual": loss, "head": nn.Conv2d(3, 3, 1)})
    parent.train()
    assert parent.training and loss.training
    assert all(not m.training for m in loss.features)
    output = torch.rand(1, 3, 16, 16, requires_grad=True)
    target = torch.rand(1, 3, 16, 16, requires_grad=True)
    loss(output, target).backward()
    assert output.grad is not None and output.grad.abs().sum() > 0
    assert target.grad is None  # target features are computed without grad
    assert all(p.grad is None and not p.requires_grad for p in loss.features.parameters())


def test_perceptual_input_handling():
    torch.manual_seed(0)
    loss = _random_vgg(layers=["conv1_2"])
    gray = torch.rand(1, 1, 8, 8)
    torch.testing.assert_close(loss.extract(gray)["conv1_2"], loss.extract(gray.repeat(1, 3, 1, 1))["conv1_2"])
    rgb = torch.rand(1, 3, 8, 8)
    raw = _random_vgg(layers=["conv1_2"], normalize=False)
    raw.load_state_dict(loss.state_dict())
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(loss.extract(rgb)["conv1_2"], raw.extract((rgb - mean) / std)["conv1_2"])
    resized = _random_vgg(layers=["conv1_2"], resize_to=12)
    assert resized.extract(rgb)["conv1_2"].shape == (1, 64, 12, 12)
    with pytest.raises(ValueError, match="RGB"):
        loss(torch.rand(1, 4, 8, 8), torch.rand(1, 4, 8, 8))


def test_perceptual_under_autocast_is_float32():
    torch.manual_seed(0)
    loss = _random_vgg(layers={"conv2_2": 1.0})
    output = torch.rand(1, 3, 16, 16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(output, torch.rand(1, 3, 16, 16))
    assert value.dtype == torch.float32 and torch.isfinite(value) and value > 0
    value.backward()
    assert output.grad.abs().sum() > 0


@pytest.fixture
def empty_hub(tmp_path):
    # A private torch hub cache: no test reads or leaves a VGG file in the real one.
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub"
    torch.hub.set_dir(previous)


def test_missing_imagenet_weights_offline_names_file_and_cache_path(empty_hub, monkeypatch):
    monkeypatch.setenv("RESTOREKIT_OFFLINE", "1")  # forbids the download, so the file stays missing
    expected = empty_hub / "checkpoints" / "vgg19-dcbb9e9d.pth"
    with pytest.raises(MissingWeightsError) as info:
        PerceptualLoss()
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert "vgg19-dcbb9e9d.pth" in message and str(expected) in message
    assert "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth" in message and "weights_path" in message
    assert "RESTOREKIT_OFFLINE" in message and "\n" not in message
    with pytest.raises(MissingWeightsError, match="vgg16-397923af.pth"):
        PerceptualLoss(network="vgg16", layers=["relu2_2"])
    with pytest.raises(MissingWeightsError, match="nowhere.pth does not exist"):
        PerceptualLoss(weights_path=empty_hub / "nowhere.pth")
    assert not (empty_hub / "checkpoints").exists() or list((empty_hub / "checkpoints").iterdir()) == []


def _torchvision_name(data: bytes) -> str:
    """torchvision's file naming: the first 8 hex digits of the SHA-256 after the network name."""
    import hashlib

    return f"vgg19-{hashlib.sha256(data).hexdigest()[:8]}.pth"


@pytest.fixture(scope="module")
def vgg19_state(tmp_path_factory):
    """A random torchvision VGG19 feature state dict, saved under a torchvision-style (hash-prefixed) name."""
    import io

    import torchvision

    torch.manual_seed(1)
    features = torchvision.models.vgg19(weights=None).features
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    path = tmp_path_factory.mktemp("hub") / "checkpoints" / _torchvision_name(buffer.getvalue())
    path.parent.mkdir()
    path.write_bytes(buffer.getvalue())
    return features, path


@pytest.fixture
def vgg_server(monkeypatch):
    """A local HTTP server standing in for download.pytorch.org (the URL table is pointed at it)."""
    from hub_server import start_server

    monkeypatch.delenv("RESTOREKIT_OFFLINE", raising=False)
    server, http = start_server()

    def serve(data: bytes, name: str) -> str:
        url = server.add(name, data)
        monkeypatch.setitem(perceptual.IMAGENET_URLS, "vgg19", url)
        return url

    yield server, serve
    http.shutdown()
    http.server_close()


def test_weights_path_and_hub_cache_load_the_given_state_dict(vgg19_state, empty_hub, monkeypatch):
    features, path = vgg19_state
    images = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    loss = PerceptualLoss(layers={"conv3_4": 1.0, "relu4_1": 0.5}, weights_path=path)
    # reference: torchvision's own VGG19 features with the same state dict, inputs normalised by hand
    reference = features[:21]  # relu4_1 is index 20
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        a, b = ((x - mean) / std for x in images)
        expected = F.mse_loss(reference[:17](a), reference[:17](b)) + 0.5 * F.mse_loss(reference(a), reference(b))
    # torchvision's in-place ReLU means reference[:17] really ends at conv3_4's output (index 16)
    assert isinstance(reference[16], nn.Conv2d)
    torch.testing.assert_close(loss(*images), expected)

    # A file already in the hub cache is hash-checked against its name and used, offline too.
    monkeypatch.setenv("RESTOREKIT_OFFLINE", "1")
    monkeypatch.setitem(perceptual.IMAGENET_URLS, "vgg19", f"http://127.0.0.1:1/{path.name}")
    torch.hub.set_dir(str(path.parent.parent))
    cached = PerceptualLoss(layers={"conv3_4": 1.0, "relu4_1": 0.5})
    torch.testing.assert_close(cached(*images), expected)


def test_imagenet_weights_are_downloaded_on_first_use_and_hash_checked(vgg19_state, empty_hub, vgg_server):
    features, path = vgg19_state
    server, serve = vgg_server
    url = serve(path.read_bytes(), path.name)
    loss = PerceptualLoss(layers=["conv1_1"])
    cached = empty_hub / "checkpoints" / path.name
    assert cached.read_bytes() == path.read_bytes()
    torch.testing.assert_close(loss.features[0].weight, features[0].weight)
    PerceptualLoss(layers=["conv1_1"])  # the second one reads the cache
    assert [r.path for r in server.requests] == [f"/{path.name}"] and url.endswith(path.name)


def test_imagenet_download_with_wrong_bytes_is_refused(vgg19_state, empty_hub, vgg_server):
    _, path = vgg19_state
    server, serve = vgg_server
    url = serve(b"not the VGG weights", path.name)  # served under the real file's hash-prefixed name
    with pytest.raises(MissingWeightsError) as info:
        PerceptualLoss(layers=["conv1_1"])
    message = str(info.value)
    assert url in message and str(empty_hub / "checkpoints" / path.name) in message and "SHA-256" in message
    leftovers = [p.name for p in (empty_hub / "checkpoints").iterdir() if not p.name.endswith(".lock")]
    assert leftovers == []


def test_safetensors_weights_path(vgg19_state, tmp_path):
    from safetensors.torch import save_file

    features, path = vgg19_state
    state = torch.load(path, weights_only=True)
    st_path = tmp_path / "vgg19.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(st_path))
    loss = PerceptualLoss(layers=["conv1_1"], weights_path=st_path)
    torch.testing.assert_close(loss.features[0].weight, features[0].weight)


def test_mismatched_state_dict_is_a_clear_error(tmp_path):
    path = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(1), "head.weight": torch.zeros(1)}, path)
    with pytest.raises(VGGWeightsError, match=r"wrong.pth does not hold torchvision vgg19 weights; missing: "):
        PerceptualLoss(layers=["conv1_1"], weights_path=path)
    with pytest.raises(VGGWeightsError, match=r"unexpected: head.weight.*wrong shape: features.0.weight"):
        PerceptualLoss(layers=["conv1_1"], weights_path=path)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(VGGWeightsError, match="could not read"):
        PerceptualLoss(layers=["conv1_1"], weights_path=garbage)


# ---------------------------------------------------------------- adversarial

ADVERSARIAL = [BCEGANLoss, LSGANLoss, WGANGPLoss, RaGANLoss, HingeGANLoss]


def _tiny_disc(patch: bool) -> nn.Module:
    layers = [nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(8, 1, 3, padding=1)]
    if not patch:
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]  # (N, 1) logits
    return nn.Sequential(*layers)


@pytest.mark.parametrize("cls", ADVERSARIAL)
def test_adversarial_rejects_unknown_arguments(cls):
    with pytest.raises(TypeError):
        cls(gp_wieght=10.0)


def test_registered_losses_reject_unknown_recipe_keys():
    from restorekit.plugins import registry

    losses = registry("losses")
    assert {"mse", "l1", "charbonnier", "perceptual", "bce_gan", "lsgan", "wgan_gp", "ragan", "hinge_gan"} <= set(
        losses.names()
    )
    for name in ("mse", "l1", "charbonnier", "perceptual", "bce_gan", "lsgan", "wgan_gp", "ragan", "hinge_gan"):
        assert losses.get(name).check_args({"typo_key": 1}), name


@pytest.mark.parametrize("patch", [False, True])
@pytest.mark.parametrize("cls", ADVERSARIAL)
def test_adversarial_finite_and_generator_gradient_reaches_fake(cls, patch):
    torch.manual_seed(0)
    loss, disc = cls(), _tiny_disc(patch)
    assert is_adversarial(loss)
    real = torch.rand(4, 3, 8, 8)
    fake = torch.rand(4, 3, 8, 8, requires_grad=True)
    d_loss = loss.discriminator_loss(disc, real, fake.detach())
    assert d_loss.dim() == 0 and torch.isfinite(d_loss) and d_loss.dtype == torch.float32
    disc.requires_grad_(False)  # as the trainer does on the generator's step
    g_loss = loss.generator_loss(disc, real, fake)
    assert g_loss.dim() == 0 and torch.isfinite(g_loss)
    g_loss.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0


@pytest.mark.parametrize("cls", ADVERSARIAL)
def test_discriminator_term_decreases_when_trained(cls):
    torch.manual_seed(0)
    loss, disc = cls(), _tiny_disc(patch=True)
    real = torch.rand(4, 3, 8, 8) * 0.5 + 0.5
    fake = torch.rand(4, 3, 8, 8) * 0.5
    optimizer = torch.optim.Adam(disc.parameters(), lr=1e-3)
    values = []
    for _ in range(20):
        optimizer.zero_grad()
        value = loss.discriminator_loss(disc, real, fake)
        value.backward()
        optimizer.step()
        values.append(value.item())
    assert values[-1] < values[0]


class _ConstantDisc(nn.Module):
    """Maps an all-ones image to ``real`` and an all-zeros image to ``fake`` (affine in the input)."""

    def __init__(self, real: float, fake: float):
        super().__init__()
        self.real, self.fake = real, fake

    def forward(self, x):
        return x.mean(dim=(1, 2, 3)).view(-1, 1) * (self.real - self.fake) + self.fake


def test_bce_gan_values_and_label_smoothing():
    disc = _ConstantDisc(real=2.0, fake=-1.0)
    real, fake = torch.ones(3, 1, 1, 1), torch.zeros(3, 1, 1, 1)
    sp = F.softplus  # BCE(x, 1) = softplus(-x), BCE(x, 0) = softplus(x)
    d = BCEGANLoss().discriminator_loss(disc, real, fake)
    assert d.item() == pytest.approx((sp(torch.tensor(-2.0)) + sp(torch.tensor(-1.0))).item())
    smooth = BCEGANLoss(real_label=0.9).discriminator_loss(disc, real, fake)
    expected = 0.9 * sp(torch.tensor(-2.0)) + 0.1 * sp(torch.tensor(2.0)) + sp(torch.tensor(-1.0))
    assert smooth.item() == pytest.approx(expected.item())
    g = BCEGANLoss(real_label=0.9).generator_loss(disc, real, fake)
    assert g.item() == pytest.approx(sp(torch.tensor(1.0)).item())  # -log sigmoid(-1), unsmoothed
    with pytest.raises(ValueError, match="real_label"):
        BCEGANLoss(real_label=1.5)


def test_lsgan_and_hinge_hand_values():
    disc = _ConstantDisc(real=0.5, fake=-2.0)
    real, fake = torch.ones(2, 1, 2, 2), torch.zeros(2, 1, 2, 2)
    assert LSGANLoss().discriminator_loss(disc, real, fake).item() == pytest.approx(0.5 * 0.25 + 0.5 * 4.0)
    assert LSGANLoss().generator_loss(disc, real, fake).item() == pytest.approx(0.5 * 9.0)
    # relu(1 - 0.5) + relu(1 - 2) = 0.5; generator -(-2) = 2
    assert HingeGANLoss().discriminator_loss(disc, real, fake).item() == pytest.approx(0.5)
    assert HingeGANLoss().generator_loss(disc, real, fake).item() == pytest.approx(2.0)
    confident = _ConstantDisc(real=3.0, fake=-4.0)
    assert HingeGANLoss().discriminator_loss(confident, real, fake).item() == 0.0
    wrong = _ConstantDisc(real=-1.0, fake=1.0)
    assert HingeGANLoss().discriminator_loss(wrong, real, fake).item() == pytest.approx(4.0)


def test_ragan_uses_real_on_generator_side_and_matches_esrgan_formula():
    torch.manual_seed(0)
    disc = _tiny_disc(patch=False)
    real, fake = torch.rand(4, 3, 8, 8), torch.rand(4, 3, 8, 8)
    loss = RaGANLoss()
    g1 = loss.generator_loss(disc, real, fake)
    g2 = loss.generator_loss(disc, torch.rand(4, 3, 8, 8), fake)
    assert not torch.isclose(g1, g2)
    with torch.no_grad():
        c_r, c_f = disc(real), disc(fake)
    bce = F.binary_cross_entropy_with_logits
    expected_d = (bce(c_r - c_f.mean(), torch.ones_like(c_r)) + bce(c_f - c_r.mean(), torch.zeros_like(c_f))) / 2
    expected_g = (bce(c_r - c_f.mean(), torch.zeros_like(c_r)) + bce(c_f - c_r.mean(), torch.ones_like(c_f))) / 2
    torch.testing.assert_close(loss.discriminator_loss(disc, real, fake), expected_d)
    torch.testing.assert_close(g1, expected_g)


def test_ragan_generator_side_takes_no_gradient_through_real():
    torch.manual_seed(0)
    disc = _tiny_disc(patch=False)
    real = torch.rand(2, 3, 8, 8, requires_grad=True)
    fake = torch.rand(2, 3, 8, 8, requires_grad=True)
    RaGANLoss().generator_loss(disc, real, fake).backward()
    assert real.grad is None and fake.grad is not None


class _LinearCritic(nn.Module):
    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, x):
        return (x.flatten(1) * self.weight.flatten()).sum(dim=1, keepdim=True)


def test_wgan_gp_penalty_zero_for_unit_lipschitz_critic():
    torch.manual_seed(0)
    real, fake = torch.rand(4, 3, 4, 4), torch.rand(4, 3, 4, 4)
    unit = torch.randn(3, 4, 4)
    unit = unit / unit.norm()
    loss = WGANGPLoss()
    critic = _LinearCritic(unit)
    value = loss.discriminator_loss(critic, real, fake)
    assert loss.last_gradient_penalty.item() == pytest.approx(0.0, abs=1e-10)
    assert not loss.last_gradient_penalty.requires_grad
    wasserstein = critic(fake).mean() - critic(real).mean()
    torch.testing.assert_close(value, wasserstein)

    steep = _LinearCritic(3 * unit)  # gradient norm 3: penalty (3 - 1)^2 = 4
    value = loss.discriminator_loss(steep, real, fake)
    assert loss.last_gradient_penalty.item() == pytest.approx(4.0, rel=1e-5)
    value.backward()  # the penalty trains the critic: its gradient pulls the norm back to 1
    wasserstein_grad = (fake - real).mean(dim=0)
    penalty_grad = steep.weight.grad - wasserstein_grad
    assert torch.dot(penalty_grad.flatten(), unit.flatten()) > 0


def test_wgan_gp_under_bfloat16_autocast():
    torch.manual_seed(0)
    disc = _tiny_disc(patch=True)
    real, fake = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    loss = WGANGPLoss(gp_weight=10.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss.discriminator_loss(disc, real, fake)
    assert value.dtype == torch.float32 and torch.isfinite(value)
    assert loss.last_gradient_penalty.dtype == torch.float32 and loss.last_gradient_penalty > 0
    value.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in disc.parameters())
    with pytest.raises(ValueError, match="gp_weight"):
        WGANGPLoss(gp_weight=-1.0)
