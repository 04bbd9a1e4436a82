"""The one weight format: ``.safetensors`` with enough metadata that the file alone rebuilds its model.

Metadata (all strings, as safetensors requires):

====================  ====================================================================
``format``            ``restorekit``
``format_version``    ``1``
``kind``              ``generator`` (or ``discriminator``)
``name``              registry name of the network (``srresnet``)
``plugin``            plugin that registered it
``args``              JSON of the constructor arguments
``task``              ``super_resolution`` / ``deblurring``
``scale``             output / input size
``restorekit``        restorekit version that wrote the file
``recipe_name``       recipe the weights were trained with, if any
``recipe_digest``     SHA-256 of the resolved recipe
``metrics``           JSON of validation metrics, if any
``created``           ISO-8601 time
``descriptor``        JSON of the :class:`~restorekit.descriptor.ModelDescriptor`: scale, channels,
                      size multiple, half-precision support, tiling rule (written verbatim;
                      ``name``/``args``/``task``/``scale`` above repeat it for older readers)
====================  ====================================================================

Files written before descriptors existed are read too: their descriptor is derived once, when the
network is rebuilt (:func:`load_network`).

Nothing is unpickled: safetensors holds tensors only. Foreign ``.pth`` checkpoints are read with
``torch.load(weights_only=True)`` in :mod:`restorekit.convert`.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from restorekit._version import __version__
from restorekit.descriptor import DescriptorError, ModelDescriptor, describe, describe_network
from restorekit.fileio import atomic_path

FORMAT = "restorekit"
FORMAT_VERSION = "1"


class WeightsError(Exception):
    """A weight file cannot be read or does not fit its network; the message names the file."""


@dataclass
class WeightInfo:
    """What a weight file says about itself."""

    name: str
    args: dict[str, Any]
    kind: str = "generator"
    plugin: str = ""
    task: str = ""
    scale: int = 1
    version: str = ""
    recipe_name: str = ""
    recipe_digest: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    created: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    descriptor: ModelDescriptor | None = None

    @classmethod
    def of(cls, descriptor: ModelDescriptor, **fields: Any) -> WeightInfo:
        """Weight-file metadata for a network described by *descriptor* (name, args, task, scale from it)."""
        return cls(
            name=descriptor.name,
            args=dict(descriptor.args),
            kind=descriptor.kind,
            plugin=descriptor.plugin,
            task=descriptor.task,
            scale=descriptor.scale,
            descriptor=descriptor,
            **fields,
        )

    def to_metadata(self) -> dict[str, str]:
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "name": self.name,
            "plugin": self.plugin,
            "args": json.dumps(self.args, sort_keys=True),
            "task": self.task,
            "scale": str(self.scale),
            "restorekit": self.version or __version__,
            "recipe_name": self.recipe_name,
            "recipe_digest": self.recipe_digest,
            "metrics": json.dumps(self.metrics, sort_keys=True),
            "created": self.created or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        if self.descriptor is not None:
            meta["descriptor"] = self.descriptor.to_json()
        meta.update(self.extra)
        return meta

    @classmethod
    def from_metadata(cls, meta: dict[str, str], path: str | Path = "") -> WeightInfo:
        if meta.get("format") != FORMAT:
            raise WeightsError(
                f"{path}: not a restorekit weight file (no restorekit metadata); "
                "convert foreign checkpoints with 'restore convert'"
            )
        try:
            known = {
                "format", "format_version", "kind", "name", "plugin", "args", "task", "scale", "restorekit",
                "recipe_name", "recipe_digest", "metrics", "created", "descriptor",
            }
            descriptor = None
            if meta.get("descriptor"):
                descriptor = ModelDescriptor.from_json(meta["descriptor"], str(path))
                if descriptor.name != meta["name"]:
                    raise WeightsError(
                        f"{path}: damaged restorekit metadata (descriptor names '{descriptor.name}', "
                        f"the file '{meta['name']}')"
                    )
            return cls(
                name=meta["name"],
                args=json.loads(meta.get("args") or "{}"),
                kind=meta.get("kind", "generator"),
                plugin=meta.get("plugin", ""),
                task=meta.get("task", ""),
                scale=int(meta.get("scale") or 1),
                version=meta.get("restorekit", ""),
                recipe_name=meta.get("recipe_name", ""),
                recipe_digest=meta.get("recipe_digest", ""),
                metrics=json.loads(meta.get("metrics") or "{}"),
                created=meta.get("created", ""),
                extra={k: v for k, v in meta.items() if k not in known},
                descriptor=descriptor,
            )
        except DescriptorError as exc:
            raise WeightsError(str(exc)) from None
        except (KeyError, ValueError) as exc:
            raise WeightsError(f"{path}: damaged restorekit metadata ({exc})") from None


def save_weights(module: nn.Module, path: str | Path, info: WeightInfo) -> Path:
    """Write *module*'s parameters and buffers to *path* (atomically) with *info* as metadata.

    Example:
        >>> from restorekit.plugins import registry
        >>> net = registry("generators").build("srresnet", num_blocks=2, scale=2)  # doctest: +SKIP
        >>> save_weights(net, "net.safetensors", WeightInfo("srresnet", {"num_blocks": 2, "scale": 2}))  # doctest: +SKIP
    """
    path = Path(path)
    if info.descriptor is None:
        # Every file restorekit writes carries its descriptor; derive it here for hand-made WeightInfo.
        info = dataclasses.replace(info, descriptor=descriptor_of(info, module))
    # Clone to CPU: safetensors refuses tensors that share storage, and the caller keeps training.
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in module.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=info.to_metadata())
    return path


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and raw metadata of a safetensors file.

    Raises:
        WeightsError: missing, empty or not a safetensors file.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise WeightsError(f"{path}: empty file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            meta = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from None
    return tensors, meta


def read_info(path: str | Path) -> WeightInfo:
    """Only the metadata of a restorekit weight file (tensors are not read)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            meta = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from None
    return WeightInfo.from_metadata(meta, path)


def load_state(module: nn.Module, state: dict[str, torch.Tensor], source: str | Path, *, strict: bool = True) -> None:
    """Load *state* into *module*, checking names and shapes first.

    Raises:
        WeightsError: missing or unexpected keys (with ``strict``), or any shape mismatch; the
            message lists a few of each.
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if strict and missing:
        problems.append(f"missing keys ({len(missing)}): {_few(missing)}")
    if strict and unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_few(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatch (file vs network) ({len(mismatched)}): {_few(mismatched)}")
    if problems:
        raise WeightsError(f"{source}: weights do not fit the network: " + "; ".join(problems))
    module.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)


def _few(items: list[str], n: int = 4) -> str:
    shown = ", ".join(items[:n])
    return shown + (f", ... (+{len(items) - n} more)" if len(items) > n else "")


def build_network(info: WeightInfo) -> nn.Module:
    """Build the network a weight file describes (random weights), through the registry."""
    from restorekit.plugins import registry
    from restorekit.registry import RegistryError

    kind = "discriminators" if info.kind == "discriminator" else "generators"
    try:
        return registry(kind).build(info.name, **info.args)
    except RegistryError as exc:
        raise WeightsError(f"cannot rebuild the network: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"cannot rebuild '{info.name}' with {info.args}: {exc}") from None


def load_network(path: str | Path) -> tuple[nn.Module, WeightInfo]:
    """Rebuild a network from a restorekit ``.safetensors`` file alone.

    Returns:
        The network in eval mode on the CPU, and the file's :class:`WeightInfo`.

    Raises:
        WeightsError: unreadable file, foreign file, unknown network, or weights that do not fit.

    Example:
        >>> net, info = load_network("runs/srresnet/srresnet.safetensors")  # doctest: +SKIP
        >>> info.scale  # doctest: +SKIP
        4
    """
    tensors, meta = read_weights(path)
    info = WeightInfo.from_metadata(meta, path)
    network = build_network(info)
    load_state(network, tensors, path)
    if info.descriptor is None:  # written before descriptors existed: derive it once, here
        info = dataclasses.replace(info, descriptor=descriptor_of(info, network))
    return network.eval(), info


def descriptor_of(info: WeightInfo, network: nn.Module) -> ModelDescriptor:
    """The descriptor of *network*, which *info* describes: the file's own record when it has one.

    Otherwise (files from before descriptors, hand-made :class:`WeightInfo`) it is derived once from the
    registration and the network (:func:`restorekit.descriptor.describe`); a network whose plugin is not
    installed is described by its attributes alone. The task and scale *info* states win over derived ones.

    Raises:
        WeightsError: a stated fact is out of range.
    """
    if info.descriptor is not None:
        return info.descriptor
    from restorekit.plugins import registry

    kind = "discriminators" if info.kind == "discriminator" else "generators"
    try:
        if info.name in registry(kind):
            described = describe(registry(kind).get(info.name), info.args, network, task=info.task or None)
        else:
            described = describe_network(info.name, info.args, network, task=info.task, plugin=info.plugin)
        if info.plugin and not described.plugin:
            described = described.replace(plugin=info.plugin)
        return described
    except DescriptorError as exc:
        raise WeightsError(str(exc)) from None
