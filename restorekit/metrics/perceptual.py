"""Learned perceptual metrics: LPIPS (Zhang et al. 2018; AlexNet and VGG) and DISTS (Ding et al. 2020).

The networks are torchmetrics' (``pip install "restorekit[metrics]"``): its LPIPS is the authors' code
with the authors' linear layers, and its DISTS the authors' network with their alpha/beta weights, both
shipped inside the torchmetrics wheel. What torchmetrics does not do is fetch the ImageNet backbone
through a verified path — it calls torchvision's downloader — so the backbone is built without weights
and loaded here from torchvision's own file, obtained through :func:`restorekit.hub.fetch` into the
torch hub cache (the file torchvision and the perceptual loss use, hash-checked against the prefix in
its name), or from ``weights_path``. Offline, a missing file is a :class:`MetricWeightsError` naming
the file, its URL and the place to put it.

Both are distances, lower is better, computed in float32 on the images' device on RGB in [0, 1]
(a grey image is replicated to three channels), after shaving the protocol's border.

Example:
    >>> import torch
    >>> lpips = LPIPS(net="alex")  # doctest: +SKIP
    >>> lpips(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))  # doctest: +SKIP
    tensor([0.43...], dtype=torch.float64)
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["BACKBONE_URLS", "DISTS", "LPIPS", "MetricWeightsError", "RandomMetricWeightsWarning", "backbone_file"]

BACKBONE_URLS: dict[str, str] = {
    "alexnet": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    "vgg16": "https://download.pytorch.org/models/vgg16-397923af.pth",
}
"""torchvision's ``IMAGENET1K_V1`` files of the backbones (a module attribute, so tests can point it at a
local server). The file name carries the first hex digits of its SHA-256, which the download checks."""

LPIPS_NETS = {"alex": "alexnet", "vgg": "vgg16"}
WEIGHTS = ("imagenet", "random")
INSTALL_HINT = 'pip install "restorekit[metrics]"'


class MetricWeightsError(FileNotFoundError):
    """A metric's pretrained backbone is not on disk and cannot be downloaded (or offline), or is unreadable."""


class RandomMetricWeightsWarning(UserWarning):
    """A learned metric was built on a random backbone: fine for tests, meaningless as a score."""


def _torchmetrics(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(f"torchmetrics.functional.image.{module}")
    except ImportError as exc:
        raise ImportError(f"LPIPS and DISTS need torchmetrics ({INSTALL_HINT}): {exc}") from None


def backbone_file(arch: str, weights_path: str | os.PathLike[str] | None = None) -> Path:
    """The torchvision ImageNet weights of *arch* on disk: *weights_path*, or fetched into the torch hub cache.

    Args:
        arch: ``"alexnet"`` or ``"vgg16"``.
        weights_path: a local file to use instead (not hash-checked: the user chose it).

    Returns:
        The file's path.

    Raises:
        MetricWeightsError: the file is missing and cannot be downloaded; one line naming the file, its
            URL and where to put it.
    """
    url = BACKBONE_URLS[arch]
    filename = url.rsplit("/", 1)[-1]
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise MetricWeightsError(
                f"weights_path {path} does not exist; it should hold torchvision's {arch} ImageNet weights "
                f"({filename}, from {url})"
            )
        return path
    from restorekit.hub import DownloadError, fetch

    target = Path(torch.hub.get_dir()) / "checkpoints" / filename
    try:
        # torchvision's cache and naming, so a file either tool (or the perceptual loss) fetched serves all.
        return fetch(url, target, sha256_prefix=Path(filename).stem.rsplit("-", 1)[-1], label=filename)
    except DownloadError as exc:
        raise MetricWeightsError(f"{exc} (torchvision's {arch} ImageNet weights, for a learned metric)") from None


def _read_features(path: Path, arch: str) -> dict[str, Tensor]:
    """The ``features.*`` tensors of a torchvision state dict, checked against the architecture."""
    import torchvision

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)  # never unpickle objects
    except Exception as exc:  # noqa: BLE001 - torch.load and safetensors raise many types for a bad file
        raise MetricWeightsError(f"{path}: cannot read {arch} weights ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, Mapping):
        raise MetricWeightsError(f"{path}: not a state dict of tensors (torchvision {arch} layout)")
    with torch.device("meta"):  # shapes only: no memory, no initialisation of the classifier
        reference = getattr(torchvision.models, arch)(weights=None).features
    expected = {f"features.{k}": v.shape for k, v in reference.state_dict().items()}
    features = {k: v for k, v in state.items() if isinstance(k, str) and k.startswith("features.")}
    missing = [k for k in expected if k not in features]
    wrong = [k for k, shape in expected.items() if k in features and features[k].shape != shape]
    if missing or wrong or len(features) != len(expected):
        detail = ", ".join((missing + wrong)[:3]) or "unexpected features.* keys"
        raise MetricWeightsError(f"{path}: does not hold torchvision {arch} weights ({detail})")
    return features


def _load_backbone(module: nn.Module, features: Mapping[str, Tensor], where: str) -> None:
    """Copy ``features.I.*`` into every sub-module named ``I`` (torchmetrics keeps torchvision's indices)."""
    loaded = set()
    for name, child in module.named_modules():
        index = name.rsplit(".", 1)[-1]
        if not index.isdigit():
            continue  # the containers, and DISTS' own alpha/beta on the root
        for pname, param in child.named_parameters(recurse=False):
            key = f"features.{index}.{pname}"
            if key not in features:
                raise MetricWeightsError(f"{where}: no backbone tensor for {name}.{pname}")
            with torch.no_grad():
                param.copy_(features[key])
            loaded.add(key)
    if loaded != set(features):
        unused = sorted(set(features) - loaded)
        raise MetricWeightsError(f"{where}: backbone tensors left unused: {', '.join(unused[:3])}")


def _backbone(arch: str, weights: str, weights_path: str | os.PathLike[str] | None, metric: str) -> dict[str, Tensor] | None:
    if weights not in WEIGHTS:
        raise ValueError(f"{metric}: weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    if weights == "random":
        if weights_path is not None:
            raise ValueError(f"{metric}: weights_path and weights='random' contradict each other")
        warnings.warn(
            f"{metric} on a randomly initialised {arch}: for tests only, the scores mean nothing",
            RandomMetricWeightsWarning,
            stacklevel=3,
        )
        return None
    return _read_features(backbone_file(arch, weights_path), arch)


def _rgb_pair(output: Tensor, target: Tensor, border: int, metric: str) -> tuple[Tensor, Tensor]:
    if not isinstance(output, Tensor) or not isinstance(target, Tensor):
        raise ValueError(f"{metric}: output and target must be tensors")
    if output.shape != target.shape:
        raise ValueError(f"{metric}: output and target shapes differ: {tuple(output.shape)} vs {tuple(target.shape)}")
    if output.dim() not in (3, 4) or output.shape[-3] not in (1, 3):
        raise ValueError(
            f"{metric}: images must be (C, H, W) or (N, C, H, W) with 1 or 3 channels, got {tuple(output.shape)}"
        )
    if border:
        if 2 * border >= min(output.shape[-2:]):
            raise ValueError(f"{metric}: border {border} leaves nothing of a {output.shape[-1]}x{output.shape[-2]} image")
        output = output[..., border:-border, border:-border]
        target = target[..., border:-border, border:-border]
    pair = []
    for image in (output, target):
        image = image if image.dim() == 4 else image[None]
        pair.append(image.float().expand(-1, 3, -1, -1) if image.shape[1] == 1 else image.float())
    return pair[0], pair[1]


class _Learned:
    """What LPIPS and DISTS share: a frozen network kept in eval mode, moved to the images' device."""

    name = "learned"
    net: nn.Module

    def __init__(self, border: int) -> None:
        if isinstance(border, bool) or not isinstance(border, int) or border < 0:
            raise ValueError(f"{self.name}: border must be a non-negative integer, got {border!r}")
        self.border = border

    def _distance(self, output: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def __call__(self, output: Tensor, target: Tensor) -> Tensor:
        """The distance of each image to its target: float64 ``(N,)``, or 0-dim for ``(C, H, W)`` input."""
        batched = output.dim() == 4
        x, y = _rgb_pair(output, target, self.border, self.name)
        self.net.to(x.device)
        values = torch.stack([self._distance(a[None], b[None]).reshape(()) for a, b in zip(x, y)]).double()
        return values if batched else values[0]


class LPIPS(_Learned):
    """LPIPS v0.1 (Zhang et al. 2018): unit-normalised backbone features, learned channel weights, averaged.

    Args:
        net: ``"alex"`` (the paper's default, what SR papers report) or ``"vgg"``.
        border: pixels shaved from each side first.
        weights: ``"imagenet"`` (torchvision's backbone, fetched and verified) or ``"random"`` (tests only;
            warns). The linear layers are always the authors'.
        weights_path: a local file with torchvision's backbone state dict instead of the torch hub cache.

    Raises:
        ValueError: an unknown net or weights.
        MetricWeightsError: the backbone file is missing (offline) or is not that network's.
        ImportError: torchmetrics is not installed.

    Example:
        >>> metric = LPIPS(net="alex", border=4)  # doctest: +SKIP
        >>> float(metric(hr, hr))  # doctest: +SKIP
        0.0
    """

    def __init__(
        self,
        *,
        net: str = "alex",
        border: int = 0,
        weights: str = "imagenet",
        weights_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.name = f"lpips ({net})"
        super().__init__(border)
        if net not in LPIPS_NETS:
            raise ValueError(f"LPIPS: net must be one of {', '.join(LPIPS_NETS)}, got {net!r}")
        module = _torchmetrics("lpips")
        features = _backbone(LPIPS_NETS[net], weights, weights_path, "LPIPS")
        self.net = _lpips_network(module, net)
        if features is not None:
            _load_backbone(self.net.net, features, f"LPIPS ({net})")
        self.net.requires_grad_(False)

    def _distance(self, output: Tensor, target: Tensor) -> Tensor:
        return self.net(output, target, normalize=True)


class DISTS(_Learned):
    """DISTS (Ding et al. 2020): structure and texture similarity of VGG16 features with L2 pooling.

    Args:
        border: pixels shaved from each side first.
        weights: ``"imagenet"`` or ``"random"`` (tests only; warns); alpha/beta are always the authors'.
        weights_path: a local file with torchvision's VGG16 state dict.

    Raises:
        MetricWeightsError: the VGG16 file is missing (offline) or is not VGG16's.
        ImportError: torchmetrics is not installed.
    """

    def __init__(
        self, *, border: int = 0, weights: str = "imagenet", weights_path: str | os.PathLike[str] | None = None
    ) -> None:
        self.name = "dists"
        super().__init__(border)
        module = _torchmetrics("dists")
        features = _backbone("vgg16", weights, weights_path, "DISTS")
        self.net = _dists_network(module)
        if features is not None:
            _load_backbone(self.net, features, "DISTS")
        self.net.eval().requires_grad_(False)

    def _distance(self, output: Tensor, target: Tensor) -> Tensor:
        return self.net(output, target)


def _lpips_network(module: Any, net: str) -> nn.Module:
    """torchmetrics' LPIPS network with the authors' linear layers and an uninitialised-then-filled backbone.

    torchmetrics builds the backbone through torchvision, whole classifier included (60-140M parameters
    LPIPS never uses, initialised at every build). Built on the meta device instead and given memory
    afterwards, it costs nothing; what the constructor would have computed is then put back: the
    backbone's default initialisation (replaced by the ImageNet weights), the input scaling constants
    (a fresh ``ScalingLayer``) and the authors' linear layers, read from the file torchmetrics reads.
    ``_NoTrainLpips`` stays in eval mode (no dropout) whatever ``train()`` is called with.
    """
    with torch.device("meta"):
        lpips = module._NoTrainLpips(net=net, pretrained=False, pnet_rand=True)
    lpips.to_empty(device="cpu")
    for layer in lpips.net.modules():
        if isinstance(layer, nn.Conv2d):
            layer.reset_parameters()
    lpips.scaling_layer = module.ScalingLayer()
    lins = Path(module.__file__).parent / "lpips_models" / f"{net}.pth"
    state = torch.load(lins, map_location="cpu", weights_only=True)
    # lin0..lin4 (``lins.N`` are the same modules under a second name)
    missing = [k for k in lpips.state_dict() if k.startswith("lin") and not k.startswith("lins.") and k not in state]
    if missing:  # a torchmetrics whose files moved: refuse rather than score with random linear layers
        raise MetricWeightsError(f"{lins}: the LPIPS linear layers are missing {', '.join(missing[:3])}")
    lpips.load_state_dict(state, strict=False)
    return lpips.eval()


def _dists_network(module: Any) -> nn.Module:
    """torchmetrics' DISTS network on a VGG16 built without weights.

    ``DISTSNetwork.__init__`` always asks torchvision for the ImageNet VGG16 (a download); the subclass
    lays out the same stages on an unweighted VGG16 — max pooling replaced by the authors' L2 pooling —
    and keeps torchmetrics' forward pass and the authors' alpha/beta from its wheel. The parity test
    (``tests/test_metrics_perceptual.py``) checks it against torchmetrics' own call on the same weights.
    """
    import torchvision

    class _DISTS(module.DISTSNetwork):  # type: ignore[name-defined, misc]
        def __init__(self) -> None:
            nn.Module.__init__(self)
            # Built on the meta device, then given memory and torchvision's initialisation: the 120M
            # parameters of VGG16's classifier, which DISTS does not use, are never allocated.
            with torch.device("meta"):
                features = torchvision.models.vgg16(weights=None).features
            features.to_empty(device="cpu")
            for layer in features:
                if isinstance(layer, nn.Conv2d):
                    nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
                    nn.init.zeros_(layer.bias)
            cuts = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))
            widths = (None, 64, 128, 256, 512)
            for number, ((start, stop), width) in enumerate(zip(cuts, widths), start=1):
                stage = nn.Sequential()
                for index in range(start, stop):
                    layer = features[index]
                    if isinstance(layer, nn.MaxPool2d):
                        layer = module.L2pooling(channels=width)
                    stage.add_module(str(index), layer)
                setattr(self, f"stage{number}", stage)
            self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, -1, 1, 1))
            self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, -1, 1, 1))
            self.chns = [3, 64, 128, 256, 512, 512]
            weights = torch.load(str(module._PATH_WEIGHT_DISTS), map_location="cpu", weights_only=True)
            self.alpha = nn.Parameter(weights["alpha"])
            self.beta = nn.Parameter(weights["beta"])

    return _DISTS()
