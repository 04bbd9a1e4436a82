"""Plugin discovery and the registries it fills.

Every plugin, the built-in ones included, is found through the ``restorekit`` entry-point group.
A plugin that fails to import is recorded as *broken* with its error instead of taking the CLI down;
only using its components fails.

Environment:
    RESTOREKIT_DISABLE_PLUGINS: comma-separated plugin names not to load.
    RESTOREKIT_ONLY_PLUGINS: comma-separated plugin names; load only these (``core`` is always kept).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pluggy

from restorekit import hookspecs
from restorekit.registry import KINDS, Component, Registry, RegistryError

ENTRY_POINT_GROUP = "restorekit"


@dataclass
class PluginInfo:
    """What ``restore plugins`` shows about one plugin."""

    name: str
    module: str
    distribution: str = ""
    version: str = ""
    state: str = "loaded"  # loaded | broken | disabled
    error: str = ""
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class RecipeEntry:
    name: str
    path: Path
    plugin: str
    description: str = ""


@dataclass
class ModelEntry:
    """Named weights a plugin ships (``path``) or offers for download (``url`` + ``sha256``).

    The catalogue fields describe a download before it is made: ``size`` in bytes, ``licence`` (an SPDX
    name), ``arch`` (the restorekit generator the checkpoint converts to), ``scale``, ``task``,
    ``source`` (homepage or provenance) and ``filename`` (the downloaded file's name; by default the
    last segment of the URL's path).
    """

    name: str
    plugin: str
    path: Path | None = None
    url: str | None = None
    sha256: str | None = None
    description: str = ""
    size: int | None = None
    licence: str = ""
    arch: str = ""
    scale: int | None = None
    task: str = ""
    source: str = ""
    filename: str | None = None

    @property
    def download_name(self) -> str:
        """The file name a download is saved under."""
        if self.filename:
            return self.filename
        from urllib.parse import unquote, urlparse

        return unquote(urlparse(self.url or "").path.rsplit("/", 1)[-1]) or f"{self.name}.pth"


class Plugins:
    """The loaded plugins and the four registries they filled."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.info: dict[str, PluginInfo] = {}
        self.registries: dict[str, Registry] = {kind: Registry(kind) for kind in KINDS}
        self.recipes: dict[str, RecipeEntry] = {}
        self.models: dict[str, ModelEntry] = {}

    # -- loading ------------------------------------------------------------------------------------

    def load_entry_points(self) -> None:
        """Import every plugin of the ``restorekit`` entry-point group and collect its components."""
        disabled = _env_names("RESTOREKIT_DISABLE_PLUGINS")
        only = _env_names("RESTOREKIT_ONLY_PLUGINS")
        # The core first, then restorekit's own built-ins, then third-party plugins: a built-in name
        # taken again by a third-party plugin is reported against that plugin, not the built-in.
        eps = sorted(
            metadata.entry_points(group=ENTRY_POINT_GROUP),
            key=lambda e: (e.name != "core", (e.dist.name if e.dist else "") != "restorekit", e.name),
        )
        for ep in eps:
            if ep.name in self.info:
                continue  # the same distribution seen twice on sys.path
            dist = getattr(ep, "dist", None)
            info = PluginInfo(
                name=ep.name,
                module=ep.value,
                distribution=dist.name if dist else "",
                version=dist.version if dist else "",
            )
            self.info[ep.name] = info
            if ep.name in disabled or (only and ep.name not in only and ep.name != "core"):
                info.state = "disabled"
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must not take the CLI down
                info.state, info.error = "broken", f"{type(exc).__name__}: {exc}"
                continue
            self.add_plugin(plugin, ep.name, info)
        self.pm.check_pending()

    def add_plugin(self, plugin: Any, name: str, info: PluginInfo | None = None) -> None:
        """Register a plugin object (module or instance) and collect its components.

        Used by :meth:`load_entry_points`, and by tests that add a plugin object directly.
        """
        info = info or self.info.setdefault(name, PluginInfo(name=name, module=getattr(plugin, "__name__", "")))
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except Exception as exc:  # misspelled hook names and the like
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            info.state, info.error = "broken", f"{type(exc).__name__}: {exc}"
            return
        try:
            staged = self._collect(name)
        except Exception as exc:
            self.pm.unregister(plugin)
            info.state, info.error = "broken", f"{type(exc).__name__}: {exc}"
            return
        if not self._commit(name, info, staged):
            self.pm.unregister(plugin)

    def _collect(self, plugin_name: str) -> dict[str, list[Any]]:
        """Call one plugin's collector hooks, staging what it registers."""
        staged: dict[str, list[Any]] = {kind: [] for kind in (*KINDS, "recipes", "models")}

        def component_register(kind: str) -> Callable[..., None]:
            def register(name: str, target: Any, description: str = "", **info: Any) -> None:
                if not description and not isinstance(target, str):
                    description = _first_line(getattr(target, "__doc__", None))
                staged[kind].append(Component(name, kind, target, plugin_name, description, info))

            return register

        def recipe_register(name: str, path: str | os.PathLike[str], description: str = "") -> None:
            staged["recipes"].append(RecipeEntry(name, Path(path), plugin_name, description))

        def model_register(
            name: str,
            path: str | os.PathLike[str] | None = None,
            url: str | None = None,
            sha256: str | None = None,
            description: str = "",
            *,
            size: int | None = None,
            licence: str = "",
            arch: str = "",
            scale: int | None = None,
            task: str = "",
            source: str = "",
            filename: str | None = None,
        ) -> None:
            where = f"model '{name}' from plugin '{plugin_name}'"
            if (path is None) == (url is None):
                raise RegistryError(f"{where}: give exactly one of path, url")
            if url is not None and not sha256:
                raise RegistryError(f"{where}: a url needs its sha256")
            if sha256 is not None and (len(sha256) != 64 or any(c not in "0123456789abcdefABCDEF" for c in sha256)):
                raise RegistryError(f"{where}: sha256 must be 64 hex digits, got {sha256!r}")
            for label, number in (("size", size), ("scale", scale)):
                if number is not None and (isinstance(number, bool) or not isinstance(number, int) or number < 1):
                    raise RegistryError(f"{where}: {label} must be a positive integer, got {number!r}")
            if filename is not None and (not filename or "/" in filename or "\\" in filename or filename.startswith(".")):
                raise RegistryError(f"{where}: filename must be a plain file name, got {filename!r}")
            staged["models"].append(
                ModelEntry(
                    name, plugin_name, Path(path) if path else None, url, sha256.lower() if sha256 else None,
                    description, size=size, licence=licence, arch=arch, scale=scale, task=task, source=source,
                    filename=filename,
                )
            )

        callbacks = {kind: component_register(kind) for kind in KINDS}
        callbacks["recipes"] = recipe_register
        callbacks["models"] = model_register
        for kind, callback in callbacks.items():
            hook = getattr(self.pm.hook, f"register_{kind}")
            for impl in hook.get_hookimpls():
                if impl.plugin_name == plugin_name:
                    impl.function(*[{"register": callback}[arg] for arg in impl.argnames])
        return staged

    def _commit(self, plugin_name: str, info: PluginInfo, staged: dict[str, list[Any]]) -> bool:
        # Check everything first so that a failure leaves every registry unchanged.
        try:
            for kind in KINDS:
                probe = Registry(kind)
                probe._entries = dict(self.registries[kind]._entries)
                probe.add_all(staged[kind])
            for table, label in ((self.recipes, "recipe"), (self.models, "model")):
                key = "recipes" if label == "recipe" else "models"
                names = [e.name for e in staged[key]]
                for entry in staged[key]:
                    if entry.name in table or names.count(entry.name) > 1:
                        owner = table[entry.name].plugin if entry.name in table else plugin_name
                        raise RegistryError(
                            f"duplicate {label} '{entry.name}': registered by plugin '{owner}' "
                            f"and by plugin '{plugin_name}'"
                        )
        except RegistryError as exc:
            info.state, info.error = "broken", str(exc)
            return False
        for kind in KINDS:
            self.registries[kind].add_all(staged[kind])
            info.counts[kind] = len(staged[kind])
        for entry in staged["recipes"]:
            self.recipes[entry.name] = entry
        for entry in staged["models"]:
            self.models[entry.name] = entry
        info.counts["recipes"] = len(staged["recipes"])
        info.counts["models"] = len(staged["models"])
        return True

    # -- queries ------------------------------------------------------------------------------------

    def registry(self, kind: str) -> Registry:
        return self.registries[kind]

    def convert_state_dict(
        self, state_dict: dict[str, Any], path: str, hints: dict[str, Any] | None = None
    ) -> tuple[str, Any] | None:
        """Ask the plugins who can read a foreign checkpoint, in pluggy's call order; first answer wins.

        Implementations are called one by one (rather than through the hook caller) so that an answer
        can be attributed to its plugin, an ``arch`` hint can pass over answers naming another network,
        and a plugin that raises something other than a ``ConvertError`` is named in the message.

        Returns:
            ``(plugin_name, answer)``, or None when no plugin recognises the keys.

        Raises:
            restorekit.convert.ConvertError: a plugin raised; the message names the plugin.
        """
        from restorekit.convert import ConvertError

        hints = dict(hints or {})
        arch = hints.get("arch")
        values = {"state_dict": state_dict, "path": path, "hints": hints}
        # pluggy keeps implementations in reverse call order (tryfirst/trylast already applied).
        for impl in reversed(self.pm.hook.convert_state_dict.get_hookimpls()):
            try:
                answer = impl.function(*[values[name] for name in impl.argnames])
            except ConvertError:
                raise
            except Exception as exc:  # a plugin's bug must not end in a traceback
                raise ConvertError(
                    f"{path}: plugin '{impl.plugin_name}' failed while reading the checkpoint "
                    f"({type(exc).__name__}: {exc})"
                ) from None
            if answer is None:
                continue
            if arch is not None and not (isinstance(answer, tuple) and answer and answer[0] == arch):
                continue  # recognised as another network; the user asked for `arch`
            return impl.plugin_name, answer
        return None


def _env_names(var: str) -> set[str]:
    return {n.strip() for n in os.environ.get(var, "").split(",") if n.strip()}


def _first_line(doc: str | None) -> str:
    return doc.strip().splitlines()[0].strip() if doc and doc.strip() else ""


_PLUGINS: Plugins | None = None


def get_plugins() -> Plugins:
    """The process-wide plugin set, loaded on first use."""
    global _PLUGINS
    if _PLUGINS is None:
        plugins = Plugins()
        plugins.load_entry_points()
        _PLUGINS = plugins
    return _PLUGINS


def reset_plugins() -> None:
    """Forget loaded plugins (tests that change the environment call this)."""
    global _PLUGINS
    _PLUGINS = None
    importlib.invalidate_caches()


def registry(kind: str) -> Registry:
    """Shortcut: ``registry("generators").build("srresnet", scale=4)``."""
    return get_plugins().registry(kind)
