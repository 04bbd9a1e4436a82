"""VGG perceptual (feature) loss on named layers, after SRGAN (Ledig et al. 2017) and ESRGAN (Wang et al. 2018).

The loss compares the activations of a frozen ImageNet VGG16/VGG19 on the restored image and on the
target. Layers go by their usual names: ``convX_Y`` is the feature map *before* its ReLU (ESRGAN's
``conv5_4``), ``reluX_Y`` after it (SRGAN's "VGG5,4", DeblurGAN's ``conv3_3`` in their own code), and
``poolX`` after the X-th max pooling.

torchvision's VGG applies its ReLUs in place, which would overwrite a captured ``convX_Y`` map with
its activation. The feature stack is therefore rebuilt with out-of-place ReLUs, and it is cut after the
deepest requested layer so that no unused layer costs time.

The ImageNet weights are torchvision's files, fetched on first use into the torch hub cache
(``torch.hub.get_dir()/checkpoints``) through :func:`restorekit.hub.fetch` — resumable, with progress,
checked against the SHA-256 prefix in the file name as ``torch.hub`` does — unless ``weights_path``
names a local file. Offline (``RESTOREKIT_OFFLINE=1``) or on a failed download, a missing file is a
:class:`MissingWeightsError` naming the file, its URL and the place to put it. Importing this module
builds nothing and reads nothing.
"""

from __future__ import annotations

import difflib
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import Tensor, nn

VGG_BLOCKS: dict[str, tuple[int, ...]] = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
"""Convolutions per block (configurations D and E of Simonyan & Zisserman 2015)."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CRITERIA = ("mse", "l1")
WEIGHTS = ("imagenet", "random")
DEFAULT_LAYERS = {"conv5_4": 1.0}

IMAGENET_URLS: dict[str, str] = {
    "vgg16": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "vgg19": "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
}
"""torchvision's ``IMAGENET1K_V1`` files (a module attribute, so tests can point it at a local server)."""


class MissingWeightsError(FileNotFoundError):
    """The ImageNet VGG weights file is not on disk and could not be downloaded (or offline)."""


class VGGWeightsError(ValueError):
    """A VGG weights file could not be read or does not match the requested network."""


class RandomWeightsWarning(UserWarning):
    """A perceptual loss was built on a randomly initialised VGG: fine for tests, meaningless for training."""


def _check_network(network: str) -> tuple[int, ...]:
    if network not in VGG_BLOCKS:
        close = difflib.get_close_matches(str(network), VGG_BLOCKS, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ValueError(f"PerceptualLoss: network must be one of {', '.join(VGG_BLOCKS)}, got {network!r}{hint}")
    return VGG_BLOCKS[network]


def layer_indices(network: str) -> dict[str, int]:
    """Map each layer name of *network* to its index in torchvision's ``vgg.features``.

    Args:
        network: ``"vgg16"`` or ``"vgg19"``.

    Returns:
        ``{"conv1_1": 0, "relu1_1": 1, ..., "pool5": 36}`` in network order.

    Raises:
        ValueError: for an unknown network.
    """
    table: dict[str, int] = {}
    index = 0
    for block, convs in enumerate(_check_network(network), start=1):
        for conv in range(1, convs + 1):
            table[f"conv{block}_{conv}"] = index
            table[f"relu{block}_{conv}"] = index + 1
            index += 2
        table[f"pool{block}"] = index
        index += 1
    return table


def layer_names(network: str) -> list[str]:
    """The layer names a perceptual loss on *network* accepts, shallowest first.

    Args:
        network: ``"vgg16"`` or ``"vgg19"``.

    Returns:
        ``["conv1_1", "relu1_1", "conv1_2", ..., "pool5"]``.

    Raises:
        ValueError: for an unknown network.

    Example:
        >>> "conv5_4" in layer_names("vgg19"), "conv5_4" in layer_names("vgg16")
        (True, False)
    """
    return list(layer_indices(network))


def _check_layers(network: str, layers: Mapping[str, float] | Sequence[str] | str | None) -> dict[str, float]:
    """Normalise *layers* to ``{name: weight}`` and check every name against the network."""
    if layers is None:
        layers = DEFAULT_LAYERS
    if isinstance(layers, str):
        layers = [layers]
    if isinstance(layers, Mapping):
        weighted = dict(layers)
    elif isinstance(layers, Sequence):
        weighted = {}
        for name in layers:
            if name in weighted:
                raise ValueError(f"PerceptualLoss: layer {name!r} listed twice in layers")
            weighted[name] = 1.0
    else:
        raise TypeError(f"PerceptualLoss: layers must be a table {{name = weight}} or a list of names, got {layers!r}")
    if not weighted:
        raise ValueError("PerceptualLoss: layers is empty; name at least one VGG layer, e.g. conv5_4")
    valid = layer_indices(network)
    for name, weight in weighted.items():
        if name not in valid:
            close = difflib.get_close_matches(str(name), valid, n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise ValueError(
                f"PerceptualLoss: unknown {network} layer {name!r}; {hint}valid layers: {', '.join(valid)}"
            )
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"PerceptualLoss: weight of layer {name!r} must be a finite number >= 0, got {weight!r}")
        weighted[name] = float(weight)
    return weighted


def imagenet_weights_file(network: str) -> tuple[str, str]:
    """File name and download URL of torchvision's ImageNet weights for *network*.

    Args:
        network: ``"vgg16"`` or ``"vgg19"``.

    Returns:
        ``(filename, url)``, e.g. ``("vgg19-dcbb9e9d.pth", "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth")``.
    """
    _check_network(network)
    url = IMAGENET_URLS[network]
    return os.path.basename(urlparse(url).path), url


def _hash_prefix(filename: str) -> str:
    """The SHA-256 prefix torchvision writes into its file names (``vgg19-dcbb9e9d.pth`` → ``dcbb9e9d``)."""
    return Path(filename).stem.rsplit("-", 1)[-1]


def _find_weights_file(network: str, weights_path: str | os.PathLike | None) -> Path:
    filename, url = imagenet_weights_file(network)
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise MissingWeightsError(
                f"PerceptualLoss: weights_path {path} does not exist; it should hold torchvision's "
                f"{network} ImageNet weights ({filename}, from {url})"
            )
        return path
    from restorekit.hub import DownloadError, fetch

    path = Path(torch.hub.get_dir()) / "checkpoints" / filename
    try:
        # The same cache torchvision uses, so a file either tool downloaded serves both.
        return fetch(url, path, sha256_prefix=_hash_prefix(filename), label=filename)
    except DownloadError as exc:
        raise MissingWeightsError(
            f"PerceptualLoss needs torchvision's {network} ImageNet weights {filename} (from {url}): {exc}; "
            f"or set weights_path in the recipe's perceptual loss args"
        ) from None


def _read_state_dict(path: Path) -> Mapping[str, Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load and safetensors raise many types for a bad file
        raise VGGWeightsError(f"PerceptualLoss: could not read VGG weights from {path}: {exc}") from exc
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise VGGWeightsError(f"PerceptualLoss: {path} is not a state dict of tensors (torchvision VGG layout)")
    return state


def _check_state_dict(state: Mapping[str, Tensor], expected: Mapping[str, torch.Size], network: str, path: Path):
    """Require every ``features.*`` tensor of *network* with its shape; tolerate the classifier's."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected and not k.startswith("classifier.")]
    wrong = [
        f"{k} {tuple(state[k].shape)} instead of {tuple(shape)}"
        for k, shape in expected.items()
        if k in state and state[k].shape != shape
    ]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if items:
            more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
            problems.append(f"{label}: {', '.join(items[:3])}{more}")
    if problems:
        raise VGGWeightsError(
            f"PerceptualLoss: {path} does not hold torchvision {network} weights; {'; '.join(problems)}"
        )


class PerceptualLoss(nn.Module):
    """Weighted distance between VGG features of the output and of the target.

    ``loss = sum_l w_l * criterion(phi_l(output), phi_l(target))`` over the requested layers, each
    criterion a mean over its feature map. Gradients flow to ``output`` only: the VGG is frozen and
    stays in eval mode whatever ``.train()`` is called on a parent module, and target features are
    computed under ``torch.no_grad()``. Features are compared in float32, also under autocast.

    Args:
        network: ``"vgg19"`` or ``"vgg16"`` (torchvision's, without batch norm).
        layers: ``{name: weight}`` or a list of names (weight 1 each); ``None`` means ``{"conv5_4": 1.0}``
            (ESRGAN). See :func:`layer_names`.
        criterion: ``"mse"`` (SRGAN) or ``"l1"`` (ESRGAN).
        weights: ``"imagenet"`` (torchvision's ``IMAGENET1K_V1``) or ``"random"`` (tests only; warns).
        weights_path: a local ``.pth``/``.safetensors`` file with torchvision's VGG state dict, instead
            of the torch hub cache.
        normalize: apply ImageNet mean/std to the ``[0, 1]`` RGB inputs, as the VGG was trained on.
        resize_to: if set, resize inputs bilinearly to this square size before the VGG.

    Raises:
        ValueError: unknown network, layer, criterion or weights, or a bad ``resize_to``.
        MissingWeightsError: the ImageNet weights file is not on disk and cannot be downloaded.
        VGGWeightsError: the weights file is unreadable or is not the requested network's.

    Example:
        >>> loss = PerceptualLoss(layers={"conv5_4": 1.0}, criterion="l1")  # doctest: +SKIP
        >>> loss(sr, hr).backward()  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        network: str = "vgg19",
        layers: Mapping[str, float] | Sequence[str] | None = None,
        criterion: str = "mse",
        weights: str = "imagenet",
        weights_path: str | os.PathLike | None = None,
        normalize: bool = True,
        resize_to: int | None = None,
    ):
        super().__init__()
        self.layer_weights = _check_layers(network, layers)
        if criterion not in CRITERIA:
            raise ValueError(f"PerceptualLoss: criterion must be one of {', '.join(CRITERIA)}, got {criterion!r}")
        if weights not in WEIGHTS:
            raise ValueError(f"PerceptualLoss: weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
        if weights == "random" and weights_path is not None:
            raise ValueError("PerceptualLoss: weights_path is given but weights='random'; use weights='imagenet'")
        if resize_to is not None and (isinstance(resize_to, bool) or not isinstance(resize_to, int) or resize_to < 1):
            raise ValueError(f"PerceptualLoss: resize_to must be a positive integer or None, got {resize_to!r}")
        self.network, self.criterion, self.weights = network, criterion, weights
        self.normalize, self.resize_to = bool(normalize), resize_to

        indices = layer_indices(network)
        # A layer index may carry several names only in principle; keep a list per index anyway.
        self._captures: dict[int, list[str]] = {}
        for name in self.layer_weights:
            self._captures.setdefault(indices[name], []).append(name)
        self.features, expected = self._build_features(max(self._captures))

        if weights == "imagenet":
            path = _find_weights_file(network, weights_path)
            state = _read_state_dict(path)
            _check_state_dict(state, expected, network, path)
            kept = {key: state[f"features.{key}"] for key in self.features.state_dict()}
            self.features.load_state_dict(kept)
        else:
            warnings.warn(
                f"PerceptualLoss uses a randomly initialised {network}: its value is meaningless for training "
                "(use weights='imagenet' outside tests)",
                RandomWeightsWarning,
                stacklevel=2,
            )
            for module in self.features:
                if isinstance(module, nn.Conv2d):  # torchvision's own VGG initialisation
                    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                    nn.init.zeros_(module.bias)

        self.features.requires_grad_(False)
        self.features.eval()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _build_features(self, last: int) -> tuple[nn.Sequential, dict[str, torch.Size]]:
        """torchvision's feature stack up to index *last*, with out-of-place ReLUs, on CPU.

        The full network is first built on the meta device (no memory, no initialisation cost) so that
        the layout and the expected state-dict shapes are torchvision's own.
        """
        import torchvision

        with torch.device("meta"):
            full = getattr(torchvision.models, self.network)(weights=None).features
        for name, index in layer_indices(self.network).items():
            kind = {"c": nn.Conv2d, "r": nn.ReLU, "p": nn.MaxPool2d}[name[0]]
            if not isinstance(full[index], kind):
                raise RuntimeError(f"torchvision's {self.network} layout changed: {name} is not layer {index}")
        expected = {f"features.{k}": v.shape for k, v in full.state_dict().items()}
        kept = [nn.ReLU(inplace=False) if isinstance(m, nn.ReLU) else m for m in full[: last + 1]]
        return nn.Sequential(*kept).to_empty(device="cpu"), expected

    def train(self, mode: bool = True) -> PerceptualLoss:
        """Set the module's mode but keep the frozen VGG in eval mode."""
        super().train(mode)
        self.features.eval()
        return self

    def _prepare(self, images: Tensor) -> Tensor:
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(
                f"PerceptualLoss expects (N, 3, H, W) RGB or (N, 1, H, W) gray images, got {tuple(images.shape)}"
            )
        x = images.to(self.mean.dtype)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.resize_to is not None:
            x = F.interpolate(x, size=(self.resize_to, self.resize_to), mode="bilinear", align_corners=False)
        if self.normalize:
            x = (x - self.mean) / self.std
        return x

    def extract(self, images: Tensor) -> dict[str, Tensor]:
        """VGG features of *images* at every requested layer.

        Args:
            images: ``(N, 3, H, W)`` RGB or ``(N, 1, H, W)`` gray in ``[0, 1]``.

        Returns:
            ``{layer name: (N, C_l, H_l, W_l) feature map}``.
        """
        x = self._prepare(images)
        found: dict[str, Tensor] = {}
        for index, layer in enumerate(self.features):
            x = layer(x)
            for name in self._captures.get(index, ()):
                found[name] = x
        return found

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        """Perceptual loss of *output* against *target*.

        Args:
            output: restored images ``(N, C, H, W)`` in ``[0, 1]``, C = 3 or 1.
            target: ground truth of the same shape.

        Returns:
            A float32 scalar.

        Raises:
            ValueError: if the shapes differ or are not image batches.
        """
        if output.shape != target.shape:
            raise ValueError(
                f"PerceptualLoss: output shape {tuple(output.shape)} != target shape {tuple(target.shape)}"
            )
        distance = F.mse_loss if self.criterion == "mse" else F.l1_loss
        out_features = self.extract(output)
        with torch.no_grad():
            target_features = self.extract(target)
        total = output.new_zeros((), dtype=torch.float32)
        for name, weight in self.layer_weights.items():
            total = total + weight * distance(out_features[name].float(), target_features[name].float())
        return total

    def extra_repr(self) -> str:
        return (
            f"network={self.network!r}, layers={self.layer_weights}, criterion={self.criterion!r}, "
            f"weights={self.weights!r}, normalize={self.normalize}, resize_to={self.resize_to}"
        )
