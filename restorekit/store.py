"""The model store: named weights that ``--model NAME`` finds.

Three sources, looked up in this order:

1. weights written by ``restore run`` under the recipe's name, files added with
   ``restore models add NAME FILE``, and catalogue models already pulled — kept as
   ``$RESTOREKIT_HOME/models/NAME/<time>-<source>-<digest>.safetensors`` (source ``run``, ``user`` or
   ``catalogue``), newest first;
2. weights a plugin ships as a file;
3. the catalogue: weights a plugin registers by URL + SHA-256. :func:`pull` downloads one into
   ``$RESTOREKIT_HOME/downloads/FILENAME`` (through :func:`restorekit.hub.fetch`: resumable, verified,
   atomic), converts it to a restorekit ``.safetensors`` that records its provenance, and stores that
   under source 1; :func:`resolve_weights` pulls on first use.

``RESTOREKIT_HOME`` defaults to the platform's user cache folder (``~/.cache/restorekit`` on Linux).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import difflib
import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from restorekit.fileio import atomic_path, remove_temporaries, sha256_file

# Listing and name resolution read only safetensors headers, without torch: `restore models` and the
# did-you-mean of a mistyped name answer at once (restorekit.weights imports torch).
_FORMAT = "restorekit"

if TYPE_CHECKING:
    from torch import nn

    from restorekit.plugins import ModelEntry
    from restorekit.weights import WeightInfo

SOURCES = ("run", "user", "catalogue")
"""The sources a stored file's name records (``<time>-<source>-<digest>.safetensors``)."""


def home() -> Path:
    """restorekit's cache and store folder."""
    env = os.environ.get("RESTOREKIT_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("restorekit"))


def models_dir() -> Path:
    """Where named weights are stored (``$RESTOREKIT_HOME/models``)."""
    return home() / "models"


def downloads_dir() -> Path:
    """Where catalogue files are downloaded before conversion (``$RESTOREKIT_HOME/downloads``)."""
    return home() / "downloads"


@dataclass
class StoredModel:
    """One named weight file in the store, or one a plugin offers.

    ``source`` is ``run``, ``user``, ``catalogue-downloaded`` (pulled from the catalogue and stored),
    ``plugin`` (a file a plugin ships) or ``catalogue-available`` (not downloaded yet).
    """

    name: str
    path: Path | None
    source: str
    created: str = ""
    recipe: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    description: str = ""
    url: str | None = None
    size: int | None = None
    licence: str = ""
    arch: str = ""
    scale: int | None = None


class NotDownloadedError(FileNotFoundError):
    """A catalogue model that is not downloaded yet, asked for without permission to download it.

    ``entry`` is its catalogue entry (URL, size, licence, ...), so a caller can say what it would get.
    """

    def __init__(self, entry: ModelEntry) -> None:
        super().__init__(f"model '{entry.name}' is not downloaded yet: run 'restore models pull {entry.name}'")
        self.entry = entry


def _stored_files(name: str) -> list[Path]:
    folder = models_dir() / name
    if not folder.is_dir():
        return []
    # File names start with a UTC timestamp, so a reverse sort puts the newest first.
    return sorted((p for p in folder.glob("*.safetensors") if not p.name.startswith(".")), reverse=True)


def add_to_store(name: str, file: str | Path, *, source: str = "user") -> Path:
    """Copy a restorekit ``.safetensors`` file into the store under *name* (atomically).

    Raises:
        FileNotFoundError: *file* does not exist.
        restorekit.weights.WeightsError: it is not a restorekit weight file.
    """
    from restorekit.weights import read_info

    file = Path(file)
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no such file")
    info = read_info(file)  # refuse foreign or damaged files before copying
    _check_name(name)
    target = _new_store_path(name, source, info.recipe_digest or sha256_file(file))
    with atomic_path(target) as tmp:
        shutil.copyfile(file, tmp)
    return target


def _new_store_path(name: str, source: str, digest: str) -> Path:
    if source not in SOURCES:
        raise ValueError(f"unknown store source {source!r} (one of {', '.join(SOURCES)})")
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    target = models_dir() / name / f"{stamp}-{source}-{digest[:8]}.safetensors"
    remove_temporaries(target.parent)  # copies a killed process left half-written
    return target


def source_of(path: Path) -> str:
    """Which of :data:`SOURCES` a stored file came from, as its name records (``user`` if it does not say)."""
    parts = path.name.split("-")
    return parts[1] if len(parts) > 2 and parts[1] in SOURCES else "user"


def _stored_metadata(path: Path) -> dict[str, str] | None:
    """The metadata of a usable restorekit weight file, or None; reads the header only, imports no torch.

    Usable means: a well-formed safetensors file whose metadata says ``format: restorekit``, with the
    fields listing shows in shape (an integer scale, tables for args and metrics, numeric metrics) and a
    valid descriptor naming the same network. Listing and :func:`resolve_weights` both pick files with
    this check, so ``restore models`` shows the very file ``--model NAME`` loads; loading it then runs
    every check of :meth:`restorekit.weights.WeightInfo.from_metadata` and says what is wrong, if anything.
    """
    import json

    from restorekit.descriptor import DescriptorError, ModelDescriptor

    meta = _safetensors_metadata(path)
    if meta is None or meta.get("format") != _FORMAT or not meta.get("name"):
        return None
    try:
        int(meta.get("scale") or 1)
        args, metrics = (json.loads(meta.get(key) or "{}") for key in ("args", "metrics"))
        if not isinstance(args, dict) or not isinstance(metrics, dict):
            return None
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in metrics.values()):
            return None
        if meta.get("descriptor") and ModelDescriptor.from_json(meta["descriptor"]).name != meta["name"]:
            return None
    except (ValueError, RecursionError, DescriptorError):
        return None
    return meta


_MAX_HEADER = 100_000_000  # the limit safetensors itself puts on a header


def _safetensors_metadata(path: Path) -> dict[str, str] | None:
    """The ``__metadata__`` of a well-formed safetensors file, read from its header; None if malformed.

    The format (https://huggingface.co/docs/safetensors): an 8-byte little-endian header length N, N bytes
    of JSON mapping tensor names to dtype/shape/data_offsets (plus ``__metadata__``), then the tensor
    bytes. Well-formed means what safetensors checks on opening: the JSON parses, and the tensors' byte
    ranges cover the data section exactly (so a truncated copy is refused). Reading the header by hand, as
    ``huggingface_hub.get_safetensors_metadata`` does, keeps listing free of torch and numpy.
    """
    import json

    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                return None
            length = int.from_bytes(head, "little")
            if length > _MAX_HEADER:
                return None
            header = json.loads(handle.read(length).decode("utf-8"))
        size = path.stat().st_size
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(header, dict):
        return None
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        return None
    spans = []
    for tensor in header.values():
        offsets = tensor.get("data_offsets") if isinstance(tensor, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(v) is int for v in offsets)):
            return None
        spans.append((offsets[0], offsets[1]))
    covered = 0
    for begin, end in sorted(spans):
        if begin != covered or end < begin:
            return None  # a gap or an overlap: not what safetensors writes
        covered = end
    return meta if 8 + length + covered == size else None


def _newest_usable(name: str) -> tuple[Path, dict[str, str]] | None:
    """The newest usable stored file of *name* and its metadata; a damaged file never shadows an older one."""
    for path in _stored_files(name):
        meta = _stored_metadata(path)
        if meta is not None:
            return path, meta
    return None


def list_models() -> list[StoredModel]:
    """Every named model: the newest usable stored file per name, then what plugins ship or offer.

    Reads safetensors headers only and imports no torch, so listing stays fast with many large files.
    """
    import json

    from restorekit.plugins import get_plugins

    found: dict[str, StoredModel] = {}
    root = models_dir()
    if root.is_dir():
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            newest = _newest_usable(folder.name)
            if newest is None:
                continue
            path, meta = newest
            source = source_of(path)
            found[folder.name] = StoredModel(
                folder.name,
                path,
                "catalogue-downloaded" if source == "catalogue" else source,
                meta.get("created", ""),
                meta.get("recipe_name", ""),
                json.loads(meta.get("metrics") or "{}"),
                description=meta.get("description", ""),
                url=meta.get("source_url"),
                size=path.stat().st_size,
                licence=meta.get("licence", ""),
                arch=meta["name"],
                scale=int(meta.get("scale") or 1),
            )
    for entry in get_plugins().models.values():
        if entry.name in found:
            continue
        size = entry.size
        if entry.path is not None and entry.path.is_file():
            size = entry.path.stat().st_size
        found[entry.name] = StoredModel(
            entry.name,
            entry.path,
            "plugin" if entry.path is not None else "catalogue-available",
            description=entry.description,
            url=entry.url,
            size=size,
            licence=entry.licence,
            arch=entry.arch,
            scale=entry.scale,
        )
    return [found[k] for k in sorted(found)]


def resolve_weights(ref: str | Path, *, download: bool = True) -> Path:
    """A weight file from a path or a model name; a catalogue model is pulled on first use.

    Args:
        ref: a file path, or a model name (stored, shipped by a plugin, or in the catalogue).
        download: pull a catalogue model that is not stored yet (else that is an error).

    Raises:
        FileNotFoundError: neither a file nor a known name; the message says how to get one (and
            suggests close names).
        NotDownloadedError: a catalogue model not downloaded yet, and *download* is false.
        restorekit.hub.DownloadError: a catalogue model could not be downloaded or verified.
        restorekit.convert.ConvertError: a downloaded checkpoint could not be converted.

    Example:
        >>> resolve_weights("quickstart")  # doctest: +SKIP
        PosixPath('~/.cache/restorekit/models/quickstart/20250101T000000000000Z-run-1fc5a767.safetensors')
    """
    path = Path(ref).expanduser()
    if path.is_file():
        return path
    name = str(ref)
    if any(sep in name for sep in ("/", "\\")) or path.suffix in (".safetensors", ".pth", ".pt", ".ckpt"):
        raise FileNotFoundError(f"{path}: no such file")
    newest = _newest_usable(name)
    if newest is not None:
        return newest[0]
    from restorekit.plugins import get_plugins

    entry = get_plugins().models.get(name)
    if entry is not None:
        if entry.path is not None:
            if not entry.path.is_file():
                raise FileNotFoundError(f"model '{name}' from plugin '{entry.plugin}': {entry.path} is missing")
            return entry.path
        if not download:
            raise NotDownloadedError(entry)
        return pull(name)
    known = [m.name for m in list_models()]
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" (did you mean {', '.join(close)}?)" if close else " ('restore models' lists the models)"
    recipes = get_plugins().recipes
    train = f"train it with 'restore run {name}'" if name in recipes else "train one with 'restore run RECIPE'"
    raise FileNotFoundError(
        f"no model named '{name}'{hint}: {train}, or add a file with 'restore models add {name} FILE'"
    )


# --- the catalogue ------------------------------------------------------------------------------------


def catalogue_entry(name: str) -> ModelEntry:
    """The catalogue entry (a plugin's downloadable model) called *name*.

    Raises:
        FileNotFoundError: no such entry; the message suggests close names.
    """
    from restorekit.plugins import get_plugins

    models = get_plugins().models
    entry = models.get(name)
    if entry is not None and entry.url is not None:
        return entry
    if entry is not None:
        raise FileNotFoundError(f"model '{name}' is a file shipped by plugin '{entry.plugin}'; nothing to pull")
    offered = sorted(n for n, e in models.items() if e.url is not None)
    close = difflib.get_close_matches(name, offered, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "'restore models' lists the catalogue"
    raise FileNotFoundError(f"no catalogue model named '{name}' ({hint})")


def download_path(entry: ModelEntry) -> Path:
    """Where *entry*'s file is downloaded to, and where a file downloaded by hand is picked up."""
    return downloads_dir() / entry.download_name


def pull(name: str, *, force: bool = False, progress: bool | None = None) -> Path:
    """Download, verify, convert and store the catalogue model *name*; return the stored file.

    The download (see :func:`restorekit.hub.fetch`) is hash-checked before anything reads it. A foreign
    checkpoint is converted with :func:`restorekit.convert.convert_checkpoint` (the entry's ``arch`` and
    ``scale`` as hints) and saved as ``models/NAME/<time>-catalogue-<sha>.safetensors`` with its
    provenance in the metadata (``source_url``, ``source_sha256``, ``licence``, ``catalogue_name``, ...);
    a file that already is a restorekit ``.safetensors`` is stored as it is. A model already pulled
    from the same file is not pulled again unless *force*. Concurrent pulls of one name wait for
    each other, so they download and convert once.

    Args:
        name: a catalogue name (``restore models`` lists them).
        force: download and convert again even when stored (a stale download is deleted first).
        progress: show a progress bar; ``None``: only on a terminal.

    Raises:
        FileNotFoundError: *name* is not in the catalogue.
        restorekit.hub.DownloadError: offline, unreachable, HTTP error, truncated, or a hash mismatch.
        restorekit.convert.ConvertError: the downloaded checkpoint does not convert as the entry says.

    Example:
        >>> pull("realesrgan-x4plus")  # doctest: +SKIP
        PosixPath('~/.cache/restorekit/models/realesrgan-x4plus/20250101T000000000000Z-catalogue-4fa0d389.safetensors')
    """
    from filelock import FileLock

    from restorekit import hub

    entry = catalogue_entry(name)
    assert entry.url is not None and entry.sha256 is not None  # catalogue_entry guarantees it
    downloads_dir().mkdir(parents=True, exist_ok=True)
    with FileLock(str(downloads_dir() / f".{name}.pull.lock")):
        if not force:
            done = _pulled(entry)
            if done is not None:
                return done
        raw = download_path(entry)
        if force and raw.is_file() and not hub.offline():
            raw.unlink()
        raw = hub.fetch(entry.url, raw, sha256=entry.sha256, size=entry.size, label=name, progress=progress)
        return _store_download(entry, raw)


def _pulled(entry: ModelEntry) -> Path | None:
    """The newest stored file that came from *entry*'s exact download, if any."""
    from restorekit.weights import WeightsError, read_info

    for stored in _stored_files(entry.name):
        if source_of(stored) != "catalogue":
            continue
        try:
            info = read_info(stored)
        except WeightsError:
            continue
        if info.extra.get("source_sha256") == entry.sha256:
            return stored
        if "source_url" not in info.extra and sha256_file(stored) == entry.sha256:
            return stored  # stored as downloaded (it was a restorekit file already)
    return None


def _store_download(entry: ModelEntry, raw: Path) -> Path:
    from restorekit.weights import WeightsError, read_info

    if raw.suffix == ".safetensors":
        try:
            read_info(raw)
        except WeightsError:
            pass  # a foreign safetensors file: convert it below
        else:
            return add_to_store(entry.name, raw, source="catalogue")
    from restorekit.convert import convert_checkpoint

    hints: dict[str, object] = {}
    if entry.arch:
        hints["arch"] = entry.arch
    if entry.scale is not None:
        hints["scale"] = entry.scale
    network, info = convert_checkpoint(raw, hints=hints)
    return store_network(entry.name, network, _with_provenance(info, entry), source="catalogue")


def _with_provenance(info: WeightInfo, entry: ModelEntry) -> WeightInfo:
    provenance = {
        "source_url": entry.url or "",
        "source_sha256": entry.sha256 or "",
        "licence": entry.licence,
        "catalogue_name": entry.name,
        "catalogue_plugin": entry.plugin,
        "homepage": entry.source,
        "description": entry.description,
    }
    return dataclasses.replace(info, extra={**info.extra, **{k: v for k, v in provenance.items() if v}})


def store_network(name: str, network: nn.Module, info: WeightInfo, *, source: str = "user") -> Path:
    """Save *network* with *info* into the store under *name* (atomically); return the file.

    Raises:
        ValueError: an invalid name or source.
    """
    from restorekit.weights import save_weights

    _check_name(name)
    digest = info.extra.get("source_sha256") or info.recipe_digest or hashlib.sha256(name.encode()).hexdigest()
    target = _new_store_path(name, source, digest)
    return save_weights(network, target, info)


def _check_name(name: str) -> None:
    if not name or "/" in name or "\\" in name or name.startswith(".") or not name.isprintable() or len(name) > 200:
        # Names become file names and are printed: no separators, hidden files or control characters.
        raise ValueError(f"invalid model name {name!r}")
