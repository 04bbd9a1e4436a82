"""Plugin discovery and the registries it fills.

Every plugin, the built-in ones included, is found through the ``restorekit`` entry-point group.
A plugin that fails to import is recorded as *broken* with its error instead of taking the CLI down;
only using its components fails. Plugin code is always called through :func:`call_plugin`, which
contains whatever it raises — ``SystemExit`` (a ``sys.exit()``), ``KeyboardInterrupt`` it raises
itself and other ``BaseException`` subclasses included — and names the plugin; a real Ctrl-C from the
user still stops the program.

Environment:
    RESTOREKIT_DISABLE_PLUGINS: comma-separated plugin names not to load.
    RESTOREKIT_ONLY_PLUGINS: comma-separated plugin names; load only these (``core`` is always kept).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pluggy

from restorekit import hookspecs
from restorekit.fileio import printable
from restorekit.metrics.registry import MetricRegistry, MetricSpec, check_spec
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
    """The loaded plugins and the registries they filled (the four component kinds and the metrics)."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.info: dict[str, PluginInfo] = {}
        self.registries: dict[str, Registry] = {kind: Registry(kind) for kind in KINDS}
        self.recipes: dict[str, RecipeEntry] = {}
        self.models: dict[str, ModelEntry] = {}
        self.metrics = MetricRegistry()

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
                plugin = call_plugin(ep.name, "import", ep.load)
            except PluginError as exc:  # a broken plugin must not take the CLI down
                info.state, info.error = "broken", exc.reason
                continue
            self.add_plugin(plugin, ep.name, info)
        self.pm.check_pending()

    def add_plugin(self, plugin: Any, name: str, info: PluginInfo | None = None) -> None:
        """Register a plugin object (module or instance) and collect its components.

        Used by :meth:`load_entry_points`, and by tests that add a plugin object directly.
        """
        info = info or self.info.setdefault(name, PluginInfo(name=name, module=getattr(plugin, "__name__", "")))
        try:
            # pluggy reads the plugin's attributes, which can run its code (a module __getattr__).
            call_plugin(name, "registration", self.pm.register, plugin, name=name)
            self.pm.check_pending()
        except Exception as exc:  # misspelled hook names and the like
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            info.state, info.error = "broken", _reason(exc)
            return
        try:
            staged = self._collect(name)
        except Exception as exc:
            self.pm.unregister(plugin)
            info.state, info.error = "broken", _reason(exc)
            return
        if not self._commit(name, info, staged):
            self.pm.unregister(plugin)

    def _collect(self, plugin_name: str) -> dict[str, list[Any]]:
        """Call one plugin's collector hooks, staging what it registers."""
        staged: dict[str, list[Any]] = {kind: [] for kind in (*KINDS, "recipes", "models", "metrics")}

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

        def metric_register(
            name: str,
            target: Any,
            description: str = "",
            *,
            higher_is_better: bool,
            needs_reference: bool = True,
            colour: str = "rgb",
            label: str = "",
        ) -> None:
            if not description and not isinstance(target, str):
                description = _first_line(getattr(target, "__doc__", None))
            spec = MetricSpec(name, target, plugin_name, description, higher_is_better, needs_reference, colour, label)
            check_spec(spec)
            staged["metrics"].append(spec)

        callbacks = {kind: component_register(kind) for kind in KINDS}
        callbacks["recipes"] = recipe_register
        callbacks["models"] = model_register
        callbacks["metrics"] = metric_register
        for kind, callback in callbacks.items():
            hook = getattr(self.pm.hook, f"register_{kind}")
            for impl in hook.get_hookimpls():
                if impl.plugin_name == plugin_name:
                    args = [{"register": callback}[arg] for arg in impl.argnames]
                    # RegistryError is the callback's own refusal (a bad entry); anything else is the plugin's.
                    call_plugin(plugin_name, f"register_{kind}", impl.function, *args, passthrough=(RegistryError,))
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
            self.metrics.copy().add_all(staged["metrics"])
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
        self.metrics.add_all(staged["metrics"])
        info.counts["recipes"] = len(staged["recipes"])
        info.counts["models"] = len(staged["models"])
        info.counts["metrics"] = len(staged["metrics"])
        return True

    # -- queries ------------------------------------------------------------------------------------

    def module_owners(self) -> dict[str, str]:
        """Module name (or package prefix) → the plugin whose code it is: plugin modules, and the modules
        of the components each plugin registered (lazy ``"module:attr"`` targets included)."""
        owners: dict[str, str] = {}
        for info in self.info.values():
            module = info.module.partition(":")[0]
            if module and info.name != "core":
                owners.setdefault(module, info.name)
        for registry in self.registries.values():
            for comp in registry:
                target = comp.target
                module = target.partition(":")[0] if isinstance(target, str) else getattr(target, "__module__", "")
                if module and not module.startswith("restorekit.") and module != "restorekit":
                    owners.setdefault(module, comp.plugin)
        return owners

    def broken_note(self) -> str:
        """``"; plugin 'x' is broken (...)"`` for messages about a name nobody registered, or ``""``."""
        broken = [i for i in self.info.values() if i.state == "broken"]
        if not broken:
            return ""
        named = ", ".join(f"'{i.name}' ({i.error})" for i in broken[:3])
        return f"; note: plugin{'s' if len(broken) > 1 else ''} {named} failed to load ('restore plugins' shows why)"

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
            restorekit.convert.ConverterFailed: a plugin's code failed; the message names the plugin.
            restorekit.convert.ConvertError: a plugin refused the checkpoint (its own message).
        """
        from restorekit.convert import ConverterFailed, ConvertError

        hints = dict(hints or {})
        arch = hints.get("arch")
        values = {"state_dict": state_dict, "path": path, "hints": hints}
        # pluggy keeps implementations in reverse call order (tryfirst/trylast already applied).
        for impl in reversed(self.pm.hook.convert_state_dict.get_hookimpls()):
            try:
                args = [values[name] for name in impl.argnames]
                answer = call_plugin(
                    impl.plugin_name, "convert_state_dict", impl.function, *args, passthrough=(ConvertError,)
                )
            except PluginError as exc:  # a plugin's bug (or its sys.exit) must not end in a traceback
                raise ConverterFailed(
                    f"{printable(path)}: plugin '{impl.plugin_name}' failed while reading the checkpoint ({exc.reason})"
                ) from None
            if answer is None:
                continue
            if arch is not None and not (isinstance(answer, tuple) and answer and answer[0] == arch):
                continue  # recognised as another network; the user asked for `arch`
            return impl.plugin_name, answer
        return None


def _reason(exc: Exception) -> str:
    """Why a plugin is broken, in one line."""
    return exc.reason if isinstance(exc, PluginError) else f"{type(exc).__name__}: {exc}"


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


# --- calling plugin code ------------------------------------------------------------------------------


class PluginError(RegistryError):
    """Plugin code failed: it raised, called ``sys.exit()`` or raised ``KeyboardInterrupt`` itself.

    Attributes:
        plugin: the plugin's name.
        what: what was being done (``import``, ``register_generators``, ``convert_state_dict``, ...).
        reason: what the plugin did, in one line (``SystemExit: sys.exit(3)``, ``ValueError: ...``).
    """

    def __init__(self, plugin: str, what: str, reason: str) -> None:
        self.plugin, self.what, self.reason = plugin, what, reason
        super().__init__(f"plugin '{plugin}' failed in {what} ({reason})")


def describe_exception(exc: BaseException) -> str:
    """One line saying what an exception is: its type and the first line of its message."""
    if isinstance(exc, SystemExit):
        return f"SystemExit: sys.exit({exc.code!r})"
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return printable(f"{type(exc).__name__}: {first}" if first else type(exc).__name__)


class _Interrupts(threading.local):
    depth = 0
    user = False  # the user pressed Ctrl-C
    handler: Any = None  # our SIGINT handler, while installed


_INTERRUPTS = _Interrupts()


@contextlib.contextmanager
def user_interrupts() -> Iterator[_Interrupts]:
    """Tell a Ctrl-C from the user apart from a ``KeyboardInterrupt`` raised by code.

    Inside the block, SIGINT (where Python's default handler is installed, in the main thread) is
    handled by a handler that records that the user pressed Ctrl-C and then raises ``KeyboardInterrupt``
    as the default one does. Yields the record; ``record.user`` is True once the user interrupted.
    Nested blocks share one record.
    """
    state = _INTERRUPTS
    install = (
        state.depth == 0
        and threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    )
    previous = None
    if install:
        state.user = False

        def on_sigint(signum: int, frame: Any) -> None:
            state.user = True
            raise KeyboardInterrupt

        state.handler = on_sigint
        previous = signal.signal(signal.SIGINT, on_sigint)
    state.depth += 1
    try:
        yield state
    finally:
        state.depth -= 1
        if install:
            state.handler = None
            signal.signal(signal.SIGINT, previous)


def interrupted_by_user() -> bool:
    """Whether a ``KeyboardInterrupt`` being handled now may be the user's Ctrl-C (and must propagate)."""
    return _interrupt_is_the_users(_INTERRUPTS)


def _interrupt_is_the_users(state: _Interrupts) -> bool:
    # Without our handler in place (another one was installed meanwhile, such as the trainer's, or this
    # is not the main thread) a KeyboardInterrupt may well be the user's: let it stop the program.
    current = signal.getsignal(signal.SIGINT)
    if state.handler is None and current is signal.SIG_IGN:
        return False  # Ctrl-C is ignored in this process (nohup, a background job): code raised it
    return state.user or state.handler is None or current is not state.handler


def call_plugin(
    plugin: str,
    what: str,
    func: Callable[..., Any],
    /,
    *args: Any,
    passthrough: tuple[type[BaseException], ...] = (),
    **kwargs: Any,
) -> Any:
    """Call plugin code; whatever it raises becomes a :class:`PluginError` naming the plugin.

    ``SystemExit``, ``GeneratorExit``, a ``KeyboardInterrupt`` the code raised itself and any other
    ``BaseException`` are contained like ordinary exceptions; a Ctrl-C the user pressed meanwhile is
    not (it propagates as ``KeyboardInterrupt``).

    Args:
        plugin: the plugin's name (for the message).
        what: what the call does (``import``, ``register_generators``, ``convert_state_dict``, ...).
        func: the plugin's callable.
        *args: its positional arguments.
        passthrough: exception types that are part of the hook's contract (a ``ConvertError``), re-raised
            as they are.
        **kwargs: its keyword arguments.

    Returns:
        What *func* returned.

    Raises:
        PluginError: the plugin's code raised.

    Example:
        >>> call_plugin("demo", "import", lambda: 42)
        42
    """
    with user_interrupts() as state:
        try:
            return func(*args, **kwargs)
        except passthrough:
            raise
        except KeyboardInterrupt as exc:
            if _interrupt_is_the_users(state):
                raise
            raise PluginError(plugin, what, describe_exception(exc)) from None
        except BaseException as exc:  # noqa: BLE001 - containing everything is the point
            raise PluginError(plugin, what, describe_exception(exc)) from None


def plugin_of_traceback(exc: BaseException, *, innermost: bool = False) -> str | None:
    """The plugin whose code raised *exc* (the innermost frame of its traceback in a plugin's module).

    Used at the CLI boundary, for exceptions that escape plugin code called through the registries
    (a network constructor or ``forward``, a loss, a task). With *innermost*, only the frame that
    raised counts (for ``KeyboardInterrupt``: a Ctrl-C lands wherever the program was). None when no
    plugin code is involved, or plugins were never loaded.
    """
    plugins = _PLUGINS
    if plugins is None:
        return None
    owners = plugins.module_owners()
    found = None
    tb = exc.__traceback__
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        owner = _owner(module, owners)
        if owner is not None or innermost:
            found = owner
        tb = tb.tb_next
    return found


def _owner(module: str, owners: dict[str, str]) -> str | None:
    while module:
        if module in owners:
            return owners[module]
        module = module.rpartition(".")[0]
    return None
