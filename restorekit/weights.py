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

Metadata is untrusted input: its values are type-checked, and the network it describes is first built
on the ``meta`` device, bounded by the file's own tensors, and must have exactly the file's shapes
before anything is allocated (:mod:`restorekit.limits`). Every error names the file.
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
from restorekit.fileio import atomic_path, printable

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
        """Read the metadata of a weight file, checking every value it relies on.

        Raises:
            WeightsError: not restorekit metadata, or a value of the wrong type or out of range
                (``args`` not a table, ``scale`` not an integer from 1 to 64, ``metrics`` not numbers,
                a descriptor that contradicts the rest); the message names *path*.
        """
        path = printable(path)
        if meta.get("format") != FORMAT:
            raise WeightsError(
                f"{printable(path)}: not a restorekit weight file (no restorekit metadata); "
                "convert foreign checkpoints with 'restore convert'"
            )
        try:
            known = {
                "format", "format_version", "kind", "name", "plugin", "args", "task", "scale", "restorekit",
                "recipe_name", "recipe_digest", "metrics", "created", "descriptor",
            }
            name = meta["name"]
            args = json.loads(meta.get("args") or "{}")
            metrics = json.loads(meta.get("metrics") or "{}")
            scale = int(meta.get("scale") or 1)
            kind = meta.get("kind", "generator")
            if not name or not name.replace("_", "").replace("-", "").isalnum():
                raise ValueError(f"name {printable(name)!r} is not a registry name")
            if kind not in ("generator", "discriminator"):
                raise ValueError(f"kind must be generator or discriminator, got {printable(kind)!r}")
            if not isinstance(args, dict):
                raise ValueError(f"args must be a table of constructor arguments, got {type(args).__name__}")
            if not isinstance(metrics, dict) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in metrics.values()
            ):
                raise ValueError("metrics must be a table of numbers")
            if not 1 <= scale <= 64:
                raise ValueError(f"scale must be an integer from 1 to 64, got {scale}")
            descriptor = None
            if meta.get("descriptor"):
                descriptor = ModelDescriptor.from_json(meta["descriptor"], path)
                if descriptor.name != name:
                    raise WeightsError(
                        f"{printable(path)}: damaged restorekit metadata (descriptor names "
                        f"'{printable(descriptor.name)}', the file '{printable(name)}')"
                    )
                if json.dumps(dict(descriptor.args), sort_keys=True) != json.dumps(args, sort_keys=True):
                    raise WeightsError(
                        f"{printable(path)}: damaged restorekit metadata (the descriptor's arguments "
                        f"{_short(descriptor.args)} differ from the file's {_short(args)})"
                    )
            return cls(
                name=name,
                args=args,
                kind=kind,
                plugin=meta.get("plugin", ""),
                task=meta.get("task", ""),
                scale=scale,
                version=meta.get("restorekit", ""),
                recipe_name=meta.get("recipe_name", ""),
                recipe_digest=meta.get("recipe_digest", ""),
                metrics={str(k): float(v) for k, v in metrics.items()},
                created=meta.get("created", ""),
                extra={k: v for k, v in meta.items() if k not in known},
                descriptor=descriptor,
            )
        except DescriptorError as exc:
            raise WeightsError(str(exc) if str(exc).startswith(path) else f"{printable(path)}: {exc}") from None
        except KeyError as exc:
            raise WeightsError(f"{printable(path)}: damaged restorekit metadata (no {exc} entry)") from None
        except RecursionError:
            raise WeightsError(f"{printable(path)}: damaged restorekit metadata (nested too deeply)") from None
        except (ValueError, TypeError, OverflowError) as exc:
            raise WeightsError(f"{printable(path)}: damaged restorekit metadata ({printable(exc)})") from None


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


FOREIGN_SUFFIXES = (".pth", ".pt", ".ckpt")
"""Checkpoint suffixes :func:`read_weights` converts (through :mod:`restorekit.convert`) instead of reading."""


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and raw metadata of a restorekit weight file.

    A foreign ``.pth`` / ``.pt`` / ``.ckpt`` checkpoint (``generator.init = "RRDB_ESRGAN_x4.pth"``) is
    converted as ``restore convert`` would (read with ``torch.load(weights_only=True)``, recognised by the
    plugins) and comes back as the converted network's tensors and metadata.

    Raises:
        WeightsError: missing, empty or not a safetensors file, or a checkpoint that does not convert.
    """
    path = Path(path)
    if path.suffix.lower() in FOREIGN_SUFFIXES:
        return _read_foreign(path)
    shown = printable(path)
    if not path.is_file():
        raise WeightsError(f"{shown}: no such file")
    if path.stat().st_size == 0:
        raise WeightsError(f"{shown}: empty file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            meta = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"{shown}: not a readable safetensors file ({_reason(exc)})") from None
    return tensors, meta


def _read_foreign(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from restorekit.convert import ConvertError, convert_checkpoint

    try:
        network, info = convert_checkpoint(path)
    except ConvertError as exc:
        raise WeightsError(str(exc)) from None
    return {k: v.detach() for k, v in network.state_dict().items()}, info.to_metadata()


def _reason(exc: BaseException) -> str:
    """The first line of a library's message, for a one-line error."""
    text = str(exc).strip()
    return printable(text.splitlines()[0]) if text else type(exc).__name__


def read_info(path: str | Path) -> WeightInfo:
    """Only the metadata of a restorekit weight file (tensors are not read)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{printable(path)}: no such file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            meta = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"{printable(path)}: not a readable safetensors file ({_reason(exc)})") from None
    return WeightInfo.from_metadata(meta, path)


def load_state(module: nn.Module, state: dict[str, torch.Tensor], source: str | Path, *, strict: bool = True) -> None:
    """Load *state* into *module*, checking names and shapes first.

    Raises:
        WeightsError: missing or unexpected keys (with ``strict``), or any shape mismatch; the
            message lists a few of each.
    """
    expected = module.state_dict()
    problems = fit_problems({k: tuple(v.shape) for k, v in expected.items()}, state, strict=strict)
    if problems:
        raise WeightsError(f"{printable(source)}: weights do not fit the network: " + "; ".join(problems))
    module.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)


def fit_problems(
    expected: dict[str, tuple[int, ...]], state: dict[str, torch.Tensor], *, strict: bool = True
) -> list[str]:
    """What keeps *state* from loading into a network whose tensors have the *expected* shapes."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {v}" for k, v in expected.items() if k in state and tuple(state[k].shape) != v
    ]
    problems = []
    if strict and missing:
        problems.append(f"missing keys ({len(missing)}): {_few(missing)}")
    if strict and unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_few(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatch (file vs network) ({len(mismatched)}): {_few(mismatched)}")
    return problems


def _few(items: list[str], n: int = 4) -> str:
    shown = ", ".join(printable(i) for i in items[:n])
    return shown + (f", ... (+{len(items) - n} more)" if len(items) > n else "")


def _short(args: Any, limit: int = 120) -> str:
    text = printable(json.dumps(args, sort_keys=True, default=str))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def build_network(
    info: WeightInfo, *, state: dict[str, torch.Tensor] | None = None, source: str | Path = ""
) -> nn.Module:
    """Build the network a weight file describes (random weights), through the registry.

    With *state* (the file's tensors), the network is first built on the ``meta`` device, stopped as soon
    as it would hold more than the file does, and must have exactly the file's tensor names and shapes:
    metadata that lies about the architecture (``num_blocks = 10**9`` beside 30 tensors) is refused
    before anything is allocated.

    Raises:
        WeightsError: unknown network, arguments its constructor rejects, or arguments that do not
            match the tensors; the message names *source*.
    """
    from restorekit import limits
    from restorekit.plugins import PluginError, call_plugin, get_plugins
    from restorekit.registry import RegistryError

    where = f"{printable(source)}: " if source else ""
    kind = "discriminators" if info.kind == "discriminator" else "generators"
    plugins = get_plugins()
    try:
        component = plugins.registry(kind).get(info.name)
        component.factory  # noqa: B018 - import now: a broken plugin is reported as such
    except RegistryError as exc:
        raise WeightsError(f"{where}cannot rebuild the network: {exc}{plugins.broken_note()}") from None
    described = f"'{info.name}' with {_short(info.args)}"
    try:
        if state is not None:
            shell = call_plugin(
                component.plugin, f"building {described}", limits.build_on_meta, component, info.args,
                budget=limits.Budget.for_state(state), passthrough=(limits.SizeLimitError,),
            )  # fmt: skip
            problems = fit_problems(limits.state_shapes(shell), state)
            if problems:
                raise WeightsError(
                    f"{where}weights do not fit the network the metadata describes ({described}): "
                    + "; ".join(problems)
                )
        return call_plugin(component.plugin, f"building {described}", component.build, **info.args)
    except limits.SizeLimitError as exc:
        raise WeightsError(
            f"{where}the metadata describes {described}, larger than the {len(state or {})} tensors the file holds "
            f"({exc.detail}); damaged or forged metadata"
        ) from None
    except PluginError as exc:
        raise WeightsError(f"{where}cannot rebuild {described}: plugin '{exc.plugin}' raised {exc.reason}") from None


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
    network = build_network(info, state=tensors, source=path)
    load_state(network, tensors, path)
    if info.descriptor is None:  # written before descriptors existed: derive it once, here
        try:
            info = dataclasses.replace(info, descriptor=descriptor_of(info, network))
        except WeightsError as exc:
            raise WeightsError(f"{printable(path)}: {exc}") from None
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
