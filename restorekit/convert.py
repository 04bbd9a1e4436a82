"""Read foreign checkpoints safely and turn them into restorekit weight files.

Community checkpoints come as ``.pth`` / ``.pt`` / ``.ckpt`` pickles or as bare ``.safetensors``, in
whatever key layout their training code used. This module is layout-agnostic:

1. :func:`read_foreign_state` reads the tensors without ever running pickled code
   (``torch.load(weights_only=True)``), and strips the usual wrappers (``params_ema``, ``params``,
   ``state_dict``, a ``module.`` prefix ...);
2. :func:`convert_checkpoint` asks the plugins (hook ``convert_state_dict``, first answer wins) which
   network the keys describe, builds that network through the registry and loads the weights strictly;
3. :func:`convert_file` writes the result as a restorekit ``.safetensors`` that rebuilds its network
   from the file alone (see :mod:`restorekit.weights`).

Where no plugin answers, spandrel (the optional extra ``restorekit[community]``, see
:mod:`restorekit.community`) has its turn, on the tensors read in step 1 only:

- :func:`convert_checkpoint` / :func:`convert_file` (a network restorekit can *rebuild*): spandrel names
  the architecture; a plugin that registers the same generator is asked again with that ``arch`` hint,
  and otherwise the one-line error says which architecture it is and that it can be used directly;
- :func:`load_foreign` (a network to *run*, used by ``restore apply|eval|info``): spandrel builds the
  network itself.

A plugin's ``convert_state_dict`` answers ``(generator_name, constructor_args, converted_state_dict)``
or ``(generator_name, constructor_args, converted_state_dict, layout)``, where ``layout`` names the
key layout it recognised (recorded in the file as ``source_layout``).
"""

from __future__ import annotations

import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from restorekit.fileio import printable, sha256_file
from restorekit.weights import FORMAT, WeightInfo, WeightsError, load_state, save_weights

PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt")
SAFETENSORS_SUFFIX = ".safetensors"

WRAPPER_KEYS = ("params_ema", "params-ema", "params", "state_dict", "model_state_dict", "model", "net", "generator")
"""Keys under which training code nests the weights, most wanted first: Real-ESRGAN files hold both
``params`` and ``params_ema``, and the EMA copy is the one its authors evaluate and release."""

_MAX_WRAPPER_DEPTH = 4


class ConvertError(Exception):
    """A checkpoint cannot be read or converted; the one-line message names the file."""


class ConverterFailed(ConvertError):
    """A plugin's converter crashed (raised, or called ``sys.exit()``): reported, never passed over."""


# --- reading ----------------------------------------------------------------------------------------


def read_foreign_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a foreign checkpoint, with the usual wrappers removed.

    ``.pth`` / ``.pt`` / ``.ckpt`` files are read only with ``torch.load(weights_only=True)``: a file
    that needs anything beyond tensors and plain containers to unpickle is refused, never executed.
    ``.safetensors`` files are read with safetensors (restorekit's own files are refused: there is
    nothing to convert).

    Args:
        path: the checkpoint.

    Returns:
        Parameter name → tensor (on the CPU), after unwrapping ``params_ema`` (preferred over
        ``params``), ``params``, ``state_dict``, ``model``, ``net`` or ``generator`` and stripping a
        ``module.`` prefix shared by all keys. Non-tensor entries are dropped.

    Raises:
        ConvertError: missing, empty, unreadable or unsafe file, or one that holds no tensors.

    Example:
        >>> state = read_foreign_state("RealESRGAN_x4plus.pth")  # doctest: +SKIP
        >>> state["conv_first.weight"].shape  # doctest: +SKIP
        torch.Size([64, 3, 3, 3])
    """
    path = Path(path)
    if not path.exists():
        raise ConvertError(f"{printable(path)}: no such file")
    if not path.is_file():
        raise ConvertError(f"{printable(path)}: not a file")
    if path.stat().st_size == 0:
        raise ConvertError(f"{printable(path)}: empty file")
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        loaded: Any = torch_load_safely(path)
    elif suffix == SAFETENSORS_SUFFIX:
        loaded = _read_safetensors(path)
    else:
        known = ", ".join((*PICKLE_SUFFIXES, SAFETENSORS_SUFFIX))
        raise ConvertError(f"{printable(path)}: unsupported checkpoint type '{path.suffix or '(none)'}'; expected {known}")
    return _canonical_state(loaded, path)


_ZIP_MAGIC = b"PK\x03\x04"
_RESAVE = "re-save it as a plain state dict or safetensors in a trusted environment"


def torch_load_safely(path: str | Path) -> Any:
    """``torch.load(weights_only=True)``, every failure a :class:`ConvertError` saying what the file really is.

    Neither a zip archive nor a pickle: "not a readable PyTorch checkpoint" (a text file is called one); pickled
    objects beyond tensors: refused, naming the first one found; damaged archives and pickles: said so.

    Raises:
        ConvertError: one line naming the file.

    Example:
        >>> torch_load_safely("notes.pth")  # doctest: +SKIP
        Traceback (most recent call last):
        restorekit.convert.ConvertError: notes.pth: not a readable PyTorch checkpoint (it is a text file, ...)
    """
    path = Path(path)
    shown = printable(path)
    with open(path, "rb") as handle:
        head = handle.read(64)
    pickle_protocol = head[1] if len(head) > 1 and head[0] == 0x80 else 0
    if not head.startswith(_ZIP_MAGIC) and not 2 <= pickle_protocol <= 5:
        # Neither torch's zip format nor a (legacy) pickle: say what it looks like, claim nothing else.
        raise ConvertError(f"{shown}: not a readable PyTorch checkpoint ({_looks_like(head)})")
    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols it did not write; irrelevant to a weights-only read.
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "weights only load failed" not in text.lower():
            raise ConvertError(f"{shown}: not a readable PyTorch checkpoint ({_first_line(exc)})") from None
        found = re.search(r"GLOBAL ([\w.]+)|[Uu]nsupported global:? (?:GLOBAL )?([\w.]+)", text)
        if found:
            raise ConvertError(
                f"{shown}: contains pickled Python objects beyond tensors (found {found.group(1) or found.group(2)}); "
                f"restorekit does not unpickle untrusted files; {_RESAVE}"
            ) from None
        operand = re.search(r"Unsupported operand (\d+)", text)
        what = f" (pickle instruction {operand.group(1)})" if operand else ""
        raise ConvertError(
            f"{shown}: not a readable PyTorch checkpoint (damaged, or a plain pickle{what}); "
            f"restorekit does not unpickle untrusted files; {_RESAVE}"
        ) from None
    except MemoryError:
        raise
    except Exception as exc:  # torch reports damaged files as RuntimeError, EOFError, KeyError ...
        reason = "damaged zip archive" if head.startswith(_ZIP_MAGIC) else f"{type(exc).__name__}: {_first_line(exc)}"
        if isinstance(exc, RuntimeError) and "zip archive" in str(exc):
            reason = "damaged or truncated zip archive"
        elif isinstance(exc, RuntimeError) and "not in a subdirectory" in str(exc):
            reason = "a zip archive, but not one torch.save wrote"
        raise ConvertError(f"{shown}: not a readable PyTorch checkpoint ({reason})") from None


def _looks_like(head: bytes) -> str:
    """What the first bytes of a file suggest, for "this is not a checkpoint" messages."""
    if not head:
        return "empty"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if text and sum(c.isprintable() or c in "\n\r\t" for c in text) >= 0.95 * len(text):
        preview = printable(text.splitlines()[0][:24]) if text.strip() else ""
        return f"it is a text file, starting {preview!r}" if preview else "it is a text file"
    return f"neither a zip archive nor a pickle; it starts with bytes {head[:8].hex(' ')}"


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            meta = handle.metadata() or {}
            if meta.get("format") == FORMAT:
                raise ConvertError(f"{printable(path)}: already a restorekit weight file; nothing to convert")
            return {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ConvertError(f"{printable(path)}: not a readable safetensors file ({_first_line(exc)})") from None


def _canonical_state(loaded: Any, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(loaded, Mapping):
        raise ConvertError(f"{printable(path)}: holds a {type(loaded).__name__}, not a state dict")
    state: Mapping[Any, Any] = loaded
    for _ in range(_MAX_WRAPPER_DEPTH):
        inner = next(
            (state[key] for key in WRAPPER_KEYS if isinstance(state.get(key), Mapping) and _holds_tensors(state[key])),
            None,
        )
        if inner is None:
            break
        state = inner
    tensors = {key: value for key, value in state.items() if isinstance(key, str) and isinstance(value, torch.Tensor)}
    if not tensors:
        keys = ", ".join(repr(k) for k in list(state)[:5]) or "none"
        raise ConvertError(f"{printable(path)}: no tensors found (top-level keys: {keys})")
    # DataParallel / DistributedDataParallel saves prefix every key; nested wrapping prefixes it twice.
    while all(key.startswith("module.") for key in tensors):
        tensors = {key[len("module.") :]: value for key, value in tensors.items()}
    return tensors


def _holds_tensors(mapping: Mapping[Any, Any], depth: int = _MAX_WRAPPER_DEPTH) -> bool:
    if any(isinstance(value, torch.Tensor) for value in mapping.values()):
        return True
    return depth > 0 and any(
        isinstance(mapping.get(key), Mapping) and _holds_tensors(mapping[key], depth - 1) for key in WRAPPER_KEYS
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- converting -------------------------------------------------------------------------------------


def convert_checkpoint(path: str | Path, *, hints: Mapping[str, Any] | None = None) -> tuple[nn.Module, WeightInfo]:
    """Read a foreign checkpoint and rebuild its network with restorekit's implementation.

    The plugins' converters are asked first. When none recognises the keys and spandrel is installed
    (``restorekit[community]``), spandrel identifies the architecture: if a plugin registers the same
    network as a generator (:data:`restorekit.community.RESTOREKIT_GENERATORS`), its converter is asked
    again with that ``arch`` hint; otherwise the error says which architecture it is and that it can
    still be used directly (:func:`load_foreign`), just not rebuilt by restorekit.

    Args:
        path: a ``.pth`` / ``.pt`` / ``.ckpt`` / ``.safetensors`` checkpoint.
        hints: what the user knows about the file, for converters that cannot tell from shapes:
            ``scale`` (int) and ``arch`` (a generator name). The answer must agree with them.

    Returns:
        The network (eval mode, CPU) with the checkpoint's weights loaded strictly, and the
        :class:`~restorekit.weights.WeightInfo` to save it with (its descriptor included); ``extra``
        records ``source_file``, ``source_layout``, ``source_sha256`` and the plugin that converted it
        (and ``identified_by`` ``spandrel`` when spandrel named the architecture).

    Raises:
        ConvertError: the file cannot be read safely, no plugin recognises its keys (as the hinted
            architecture), the weights do not fit the network the plugin chose, it contradicts a hint,
            or spandrel reads it as an architecture no plugin registers.

    Example:
        >>> net, info = convert_checkpoint("RRDB_ESRGAN_x4.pth")  # doctest: +SKIP
        >>> info.name, info.scale, info.extra["source_layout"]  # doctest: +SKIP
        ('rrdbnet', 4, 'esrgan-old')
    """
    path = Path(path)
    hints = _check_hints(hints or {}, path)
    state = read_foreign_state(path)
    converted = _convert_with_plugins(state, path, hints)
    if converted is not None:
        return converted
    return _convert_identified_by_spandrel(state, path, hints)


def load_foreign(path: str | Path, *, hints: Mapping[str, Any] | None = None) -> tuple[nn.Module, WeightInfo]:
    """A usable network from a foreign checkpoint: restorekit's plugins first, then spandrel.

    Unlike :func:`convert_checkpoint`, the network need not be one restorekit can rebuild: a checkpoint
    no plugin converts (or one a plugin recognises but refuses, such as an ESRGAN variant restorekit
    does not implement) is built by spandrel when ``restorekit[community]`` is installed. Such a network
    runs in :class:`~restorekit.inference.model.RestorationModel` like any other, with the descriptor
    :func:`restorekit.community.map_descriptor` derives, but cannot be saved as a restorekit file.

    Args:
        path: a ``.pth`` / ``.pt`` / ``.ckpt`` / ``.safetensors`` checkpoint.
        hints: ``scale`` / ``arch``, as for :func:`convert_checkpoint`; a spandrel answer must agree too.

    Returns:
        ``(network, info)`` in eval mode on the CPU. ``info.plugin`` is ``spandrel`` and
        ``info.extra["loaded_by"]`` ``spandrel`` when spandrel built it; otherwise as
        :func:`convert_checkpoint`.

    Raises:
        ConvertError: the file cannot be read safely (spandrel is never asked then), neither the plugins
            nor spandrel can build it, or the answer contradicts a hint.

    Example:
        >>> net, info = load_foreign("4x-SPAN.pth")  # doctest: +SKIP
        >>> info.name, info.plugin, info.scale  # doctest: +SKIP
        ('SPAN', 'spandrel', 4)
    """
    from restorekit.community import load_with_spandrel

    path = Path(path)
    hints = _check_hints(hints or {}, path)
    state = read_foreign_state(path)  # weights_only: nothing beyond tensors reaches spandrel
    refused: ConvertError | None = None
    try:
        converted = _convert_with_plugins(state, path, hints)
    except ConverterFailed:
        raise  # a crashed plugin is a problem to report, not an answer for spandrel to override
    except ConvertError as exc:  # recognised but not built (a variant, a misfit): spandrel may know it
        refused, converted = exc, None
    if converted is not None:
        return converted
    if "arch" in hints:  # an arch hint names a restorekit generator: spandrel's architectures are not
        if refused is not None:
            raise refused
        raise ConvertError(_unrecognised(state, path, hints))
    from restorekit import limits

    try:
        # spandrel builds what the key names suggest: bounded by the tensors, like the plugins' networks.
        with limits.guarded(limits.Budget.for_state(state), f"{printable(path)}: spandrel's reading of it"):
            loaded = load_with_spandrel(state, path)
    except limits.SizeLimitError as exc:
        if refused is not None:  # a plugin saw the same forgery and says it better
            raise refused from None
        raise ConvertError(f"{exc}; damaged or forged checkpoint") from None
    except ConvertError:
        # A plugin that recognised the file explains it better than spandrel failing on it too.
        if refused is not None:
            raise refused from None
        raise
    if loaded is None:
        if refused is not None:
            raise refused
        raise ConvertError(_unrecognised(state, path, hints))
    try:
        _check_spandrel_hints(loaded[1], path, hints)
    except ConvertError:
        # The plugin's reason is the more useful one when both disagree with the user's hints.
        if refused is not None:
            raise refused from None
        raise
    return loaded


def _convert_with_plugins(
    state: dict[str, torch.Tensor], path: Path, hints: Mapping[str, Any]
) -> tuple[nn.Module, WeightInfo] | None:
    """The network the first answering plugin converter rebuilds, or ``None`` when none answers."""
    from restorekit.descriptor import DescriptorError, describe
    from restorekit.plugins import get_plugins
    from restorekit.registry import RegistryError

    plugins = get_plugins()
    found = plugins.convert_state_dict(state, str(path), dict(hints))
    if found is None:
        return None
    converter, answer = found
    name, args, converted, layout = _unpack_answer(answer, path)

    from restorekit import limits
    from restorekit.plugins import PluginError, call_plugin
    from restorekit.weights import fit_problems

    generators = plugins.registry("generators")
    shown = printable(path)
    described = f"'{printable(name)}' with {printable(args)}"
    try:
        component = generators.get(name)
        # Shapes first, on meta and bounded by the checkpoint's own tensors: a converter that infers
        # num_blocks = 10**9 from a forged key allocates nothing before it is refused.
        shell = call_plugin(
            component.plugin, f"building {described}", limits.build_on_meta, component, args,
            budget=limits.Budget.for_state(converted), passthrough=(limits.SizeLimitError,),
        )  # fmt: skip
        problems = fit_problems(limits.state_shapes(shell), converted)
        if problems:
            raise ConvertError(
                f"{shown}: weights do not fit the network plugin '{converter}' reads it as ({described}): "
                + "; ".join(problems)
            )
        network = call_plugin(component.plugin, f"building {described}", component.build, **args)
        descriptor = describe(component, args, network)
    except limits.SizeLimitError as exc:
        raise ConvertError(
            f"{shown}: plugin '{converter}' reads it as {described}, larger than the {len(converted)} tensors "
            f"it holds ({exc.detail})"
        ) from None
    except PluginError as exc:  # the constructor's code failed
        raise ConverterFailed(f"{shown}: cannot build {described}: plugin '{exc.plugin}' raised {exc.reason}") from None
    except RegistryError as exc:
        raise ConvertError(f"{shown}: cannot build {described}: {exc}") from None
    except DescriptorError as exc:
        raise ConvertError(f"{shown}: {exc}") from None
    if "scale" in hints and descriptor.scale != hints["scale"]:
        raise ConvertError(
            f"{printable(path)}: plugin '{converter}' reads it as a x{descriptor.scale} '{name}', but scale {hints['scale']} "
            "was given; check the file or the --scale hint"
        )
    try:
        load_state(network, converted, path)
    except WeightsError as exc:
        raise ConvertError(str(exc)) from None

    info = WeightInfo.of(
        descriptor,
        extra={
            "source_file": path.name,
            "source_layout": layout,
            "source_sha256": sha256_file(path),
            "converted_by": converter,
        },
    )
    return network.eval(), info


def _unrecognised(state: Mapping[str, torch.Tensor], path: Path, hints: Mapping[str, Any]) -> str:
    """The one line for a checkpoint nothing recognises: its keys, who was asked, what would help."""
    from restorekit.community import architecture_count, identify, install_hint, spandrel_version
    from restorekit.plugins import get_plugins

    hook = get_plugins().pm.hook.convert_state_dict
    converters = sorted({impl.plugin_name for impl in hook.get_hookimpls()})
    keys = printable(", ".join(list(state)[:4]))
    what = f"as '{hints['arch']}' " if "arch" in hints else ""
    version = spandrel_version()
    named = identify(state) if version and "arch" in hints else None
    if named is not None:
        spandrel = f"spandrel reads it as {named}, not as '{hints['arch']}'"
    elif version:
        spandrel = f"spandrel {version} ({architecture_count()} architectures) does not recognise it either"
    else:
        spandrel = install_hint()
    return (
        f"{printable(path)}: no plugin recognises this checkpoint {what}({len(state)} tensors, keys such as {keys}); "
        f"layouts are known to plugin(s): {', '.join(converters) or 'none'}; {spandrel}"
    )


def _convert_identified_by_spandrel(
    state: dict[str, torch.Tensor], path: Path, hints: Mapping[str, Any]
) -> tuple[nn.Module, WeightInfo]:
    """No plugin answered: let spandrel name the architecture, and convert it where a plugin builds it.

    Raises:
        ConvertError: always, unless a plugin registers the architecture spandrel names and its
            converter accepts the keys when told which generator they are for.
    """
    from restorekit.community import RESTOREKIT_GENERATORS, identify
    from restorekit.plugins import registry

    arch = identify(state)
    if arch is None:
        raise ConvertError(_unrecognised(state, path, hints))
    generator = RESTOREKIT_GENERATORS.get(arch)
    if generator is None or generator not in registry("generators"):
        raise ConvertError(
            f"{printable(path)}: spandrel reads it as {arch}, which no restorekit plugin registers as a generator; "
            f"use it directly (restore apply/eval --model {path}) or install a plugin that registers it"
        )
    if hints.get("arch", generator) != generator:
        raise ConvertError(
            f"{printable(path)}: spandrel reads it as {arch} (restorekit generator '{generator}'), not as "
            f"'{hints['arch']}' (the arch hint)"
        )
    if "arch" not in hints:  # with the hint given, the plugins have already been asked this
        converted = _convert_with_plugins(state, path, {**hints, "arch": generator})
        if converted is not None:
            network, info = converted
            info.extra["identified_by"] = "spandrel"
            return network, info
    raise ConvertError(
        f"{printable(path)}: spandrel reads it as {arch} (restorekit generator '{generator}'), but no plugin converts "
        f"this variant of it; use it directly (restore apply/eval --model {path})"
    )


def _check_spandrel_hints(info: WeightInfo, path: Path, hints: Mapping[str, Any]) -> None:
    """A spandrel answer must agree with the user's ``scale`` / ``arch`` hints, as a plugin's must."""
    from restorekit.community import RESTOREKIT_GENERATORS

    arch = info.extra.get("spandrel_architecture", info.name)
    if "scale" in hints and info.scale != hints["scale"]:
        raise ConvertError(
            f"{printable(path)}: spandrel reads it as a x{info.scale} {arch}, but scale {hints['scale']} was given; "
            "check the file or the --scale hint"
        )
    if "arch" in hints and RESTOREKIT_GENERATORS.get(arch) != hints["arch"]:
        raise ConvertError(
            f"{printable(path)}: spandrel reads it as {arch}, not as '{hints['arch']}' (the arch hint); leave the hint "
            f"out to use it as {arch}"
        )


def _check_hints(hints: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """Only the known hints, of the right types; a one-line error names a bad one."""
    unknown = sorted(set(hints) - {"scale", "arch"})
    if unknown:
        raise ConvertError(f"{printable(path)}: unknown conversion hint(s) {', '.join(unknown)}; known: scale, arch")
    out = {k: v for k, v in hints.items() if v is not None}
    scale = out.get("scale")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, int) or not 1 <= scale <= 16):
        raise ConvertError(f"{printable(path)}: the scale hint must be an integer from 1 to 16, got {scale!r}")
    if "arch" in out:
        from restorekit.plugins import registry

        if not isinstance(out["arch"], str) or out["arch"] not in registry("generators"):
            from restorekit.registry import UnknownComponentError

            known = registry("generators").names()
            raise ConvertError(f"{printable(path)}: {UnknownComponentError('generators', str(out['arch']), known)}")
    return out


def _unpack_answer(answer: Any, path: Path) -> tuple[str, dict[str, Any], dict[str, torch.Tensor], str]:
    if isinstance(answer, tuple) and len(answer) in (3, 4):
        name, args, converted = answer[:3]
        layout = answer[3] if len(answer) == 4 else ""
        if isinstance(name, str) and isinstance(args, dict) and isinstance(converted, Mapping) and isinstance(
            layout, str
        ):
            return name, args, dict(converted), layout
    raise ConvertError(
        f"{printable(path)}: a plugin answered convert_state_dict with {type(answer).__name__}, not "
        "(generator_name, args, state_dict[, layout])"
    )



def default_output(src: str | Path) -> Path:
    """Where ``restore convert IN`` writes when OUT is not given.

    ``x.pth`` → ``x.safetensors``; a foreign ``x.safetensors`` → ``x.restorekit.safetensors`` (never
    the source itself).
    """
    src = Path(src)
    if src.suffix.lower() == SAFETENSORS_SUFFIX:
        return src.with_name(f"{src.stem}.restorekit{SAFETENSORS_SUFFIX}")
    return src.with_suffix(SAFETENSORS_SUFFIX)


def convert_file(
    src: str | Path,
    dst: str | Path | None = None,
    *,
    overwrite: bool = False,
    hints: Mapping[str, Any] | None = None,
) -> Path:
    """Convert a foreign checkpoint into a restorekit ``.safetensors`` file (written atomically).

    Args:
        src: the foreign checkpoint.
        dst: the output; by default :func:`default_output` of *src*. Must end in ``.safetensors``.
        overwrite: replace an existing *dst*.
        hints: ``scale`` / ``arch`` for converters that cannot tell from tensor shapes.

    Returns:
        The path written (:func:`restorekit.weights.read_info` shows what it says about itself).

    Raises:
        ConvertError: *dst* exists (without *overwrite*), is *src* itself or has the wrong suffix, or
            *src* cannot be converted (see :func:`convert_checkpoint`). Nothing is written then.

    Example:
        >>> convert_file("RealESRGAN_x4plus.pth").name  # doctest: +SKIP
        'RealESRGAN_x4plus.safetensors'
    """
    src = Path(src)
    dst = default_output(src) if dst is None else Path(dst)
    if dst.suffix.lower() != SAFETENSORS_SUFFIX:
        raise ConvertError(f"{printable(dst)}: the output must be a .safetensors file")
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise ConvertError(f"{printable(dst)}: the output would replace the checkpoint being converted")
    if dst.is_dir():
        raise ConvertError(f"{printable(dst)}: is a directory")
    if dst.exists() and not overwrite:
        raise ConvertError(f"{printable(dst)}: already exists (use --overwrite to replace it)")
    network, info = convert_checkpoint(src, hints=hints)
    save_weights(network, dst, info)
    return dst
