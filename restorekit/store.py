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


def _source_of(path: Path) -> str:
    parts = path.name.split("-")
    return parts[1] if len(parts) > 2 and parts[1] in SOURCES else "user"



def list_models() -> list[StoredModel]:
    """Every named model: the newest stored file per name, then what plugins ship or offer."""
    from restorekit.plugins import get_plugins
    from restorekit.weights import WeightsError, read_info

    found: dict[str, StoredModel] = {}
    root = models_dir()
    if root.is_dir():
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            for path in _stored_files(folder.name):
                try:
                    info = read_info(path)
                except WeightsError:
                    continue  # a damaged file never shadows an older good one
                source = _source_of(path)
                found[folder.name] = StoredModel(
                    folder.name,
                    path,
                    "catalogue-downloaded" if source == "catalogue" else source,
                    info.created,
                    info.recipe_name,
                    info.metrics,
                    description=info.extra.get("description", ""),
                    url=info.extra.get("source_url"),
                    size=path.stat().st_size,
                    licence=info.extra.get("licence", ""),
                    arch=info.name,
                    scale=info.scale,
                )
                break
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
        FileNotFoundError: neither a file nor a known name; the message says how to get one.
        restorekit.hub.DownloadError: a catalogue model could not be downloaded or verified.
        restorekit.convert.ConvertError: a downloaded checkpoint could not be converted.
    """
    path = Path(ref).expanduser()
    if path.is_file():
        return path
    name = str(ref)
    if any(sep in name for sep in ("/", "\\")) or path.suffix in (".safetensors", ".pth", ".pt", ".ckpt"):
        raise FileNotFoundError(f"{path}: no such file")
    from restorekit.weights import WeightsError, read_info

    for stored in _stored_files(name):
        try:
            read_info(stored)
            return stored
        except WeightsError:
            continue
    from restorekit.plugins import get_plugins

    entry = get_plugins().models.get(name)
    if entry is not None:
        if entry.path is not None:
            if not entry.path.is_file():
                raise FileNotFoundError(f"model '{name}' from plugin '{entry.plugin}': {entry.path} is missing")
            return entry.path
        if not download:
            raise FileNotFoundError(f"model '{name}' is not downloaded yet: run 'restore models pull {name}'")
        return pull(name)
    known = [m.name for m in list_models()]
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
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
        if _source_of(stored) != "catalogue":
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
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"invalid model name {name!r}")
