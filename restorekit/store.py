"""The model store: named weights that ``--model NAME`` finds.

Three sources, looked up in this order:

1. weights written by ``restore run`` under the recipe's name, and files added with
   ``restore models add NAME FILE`` — kept as ``$RESTOREKIT_HOME/models/NAME/<time>-<digest>.safetensors``,
   newest first;
2. weights a plugin registers (a path, or a URL + SHA-256 downloaded on first use into
   ``$RESTOREKIT_HOME/downloads``).

``RESTOREKIT_HOME`` defaults to the platform's user cache folder (``~/.cache/restorekit`` on Linux).
"""

from __future__ import annotations

import datetime as _dt
import difflib
import hashlib
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from restorekit.fileio import atomic_path, remove_temporaries, sha256_file


def home() -> Path:
    """restorekit's cache and store folder."""
    env = os.environ.get("RESTOREKIT_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("restorekit"))


def models_dir() -> Path:
    return home() / "models"


@dataclass
class StoredModel:
    """One named weight file in the store or offered by a plugin."""

    name: str
    path: Path | None
    source: str  # run | user | plugin
    created: str = ""
    recipe: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    description: str = ""
    url: str | None = None


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
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"invalid model name {name!r}")
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    digest = (info.recipe_digest or sha256_file(file))[:8]
    target = models_dir() / name / f"{stamp}-{source}-{digest}.safetensors"
    remove_temporaries(target.parent)  # copies a killed process left half-written
    with atomic_path(target) as tmp:
        shutil.copyfile(file, tmp)
    return target



def list_models() -> list[StoredModel]:
    """Every named model: the newest stored file per name, then plugin-registered ones."""
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
                source = "run" if "-run-" in path.name else "user"
                found[folder.name] = StoredModel(
                    folder.name, path, source, info.created, info.recipe_name, info.metrics
                )
                break
    for entry in get_plugins().models.values():
        if entry.name not in found:
            found[entry.name] = StoredModel(
                entry.name, entry.path, "plugin", description=entry.description, url=entry.url
            )
    return [found[k] for k in sorted(found)]


def resolve_weights(ref: str | Path, *, download: bool = True) -> Path:
    """A weight file from a path or a model name.

    Raises:
        FileNotFoundError: neither a file nor a known name; the message says how to get one.
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
        return _download(name, entry.url or "", entry.sha256 or "", allowed=download)
    known = [m.name for m in list_models()]
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    recipes = get_plugins().recipes
    train = f"train it with 'restore run {name}'" if name in recipes else "train one with 'restore run RECIPE'"
    raise FileNotFoundError(
        f"no model named '{name}'{hint}: {train}, or add a file with 'restore models add {name} FILE'"
    )


def _download(name: str, url: str, sha256: str, *, allowed: bool) -> Path:
    """Fetch a plugin's weights once into the cache, checking the SHA-256."""
    target = home() / "downloads" / f"{name}-{sha256[:12]}{Path(url).suffix or '.safetensors'}"
    if target.is_file():
        return target
    if not allowed:
        raise FileNotFoundError(f"model '{name}' is not downloaded yet ({url})")
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    try:
        with atomic_path(target) as tmp, urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310
            total = int(response.headers.get("Content-Length") or 0) or None
            digest = hashlib.sha256()
            with open(tmp, "wb") as out, Progress(
                "[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn()
            ) as progress:
                task = progress.add_task(f"downloading {name}", total=total)
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    progress.advance(task, len(chunk))
            if digest.hexdigest() != sha256.lower():
                raise FileNotFoundError(
                    f"model '{name}': download from {url} has SHA-256 {digest.hexdigest()}, expected {sha256}"
                )
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise FileNotFoundError(
            f"model '{name}' must be downloaded from {url} but the network is unreachable ({exc}); "
            f"download it elsewhere and run 'restore models add {name} FILE'"
        ) from None
    return target
