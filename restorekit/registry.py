"""Strict component registries: generators, discriminators, losses and tasks.

Registries are filled only through plugin hooks (see :mod:`restorekit.plugins`). An entry holds a
*factory* — a class or function taking explicit keyword arguments — or a lazy ``"module:attr"``
reference to one, so that listing components imports nothing heavy.

Rules, after spandrel's registry:

* a duplicate name is an error that names both plugins;
* a failed registration leaves the registry unchanged;
* an unknown name is an error listing the closest registered names;
* constructor arguments are checked against the factory's signature (no ``**kwargs``).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

KINDS = ("generators", "discriminators", "losses", "tasks")
"""The four component registries, in display order."""

SINGULAR = {"generators": "generator", "discriminators": "discriminator", "losses": "loss", "tasks": "task"}


class RegistryError(Exception):
    """A registration or lookup failed; the message is meant for the user as is."""


class UnknownComponentError(RegistryError, KeyError):
    """A name that no plugin registered."""

    def __init__(self, kind: str, name: str, known: list[str]):
        self.kind, self.name, self.known = kind, name, known
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(sorted(known)) or 'none'}"
        super().__init__(f"unknown {SINGULAR.get(kind, kind)} '{name}'; {hint}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class ComponentImportError(RegistryError):
    """A lazily registered component could not be imported (its plugin is broken)."""


@dataclass
class Component:
    """One registry entry.

    Attributes:
        name: registry name used in recipes (``srresnet``).
        kind: one of :data:`KINDS`.
        target: the factory, or a ``"module:attr"`` string imported on first use.
        plugin: name of the plugin that registered it.
        description: one line for ``restore list``.
        info: free-form extras a plugin attaches (for example ``task`` for a generator).
    """

    name: str
    kind: str
    target: Callable[..., Any] | str
    plugin: str
    description: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def factory(self) -> Callable[..., Any]:
        """The callable that builds the component, importing it on first use."""
        if isinstance(self.target, str):
            module_name, _, attr = self.target.partition(":")
            try:
                obj: Any = importlib.import_module(module_name)
                for part in attr.split("."):
                    obj = getattr(obj, part)
            except Exception as exc:  # any import failure belongs to the plugin
                raise ComponentImportError(
                    f"{SINGULAR[self.kind]} '{self.name}' from plugin '{self.plugin}' cannot be imported "
                    f"({self.target}): {type(exc).__name__}: {exc}"
                ) from exc
            self.target = obj
        return self.target

    def parameters(self) -> dict[str, inspect.Parameter]:
        """Keyword parameters the factory accepts (``self`` excluded)."""
        return dict(inspect.signature(self.factory).parameters)

    def check_args(self, args: dict[str, Any]) -> list[tuple[str, str]]:
        """Problems with constructor arguments, as ``(argument, message)`` pairs; empty if fine."""
        params = self.parameters()
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            accepted = None  # cannot check names; the factory takes anything
        else:
            accepted = [n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
        problems = []
        if accepted is not None:
            for key in args:
                if key not in accepted:
                    close = difflib.get_close_matches(key, accepted, n=1, cutoff=0.6)
                    hint = f"did you mean {close[0]}?" if close else f"accepted: {', '.join(accepted) or 'none'}"
                    problems.append((key, f"unknown; {hint}"))
        for pname, p in params.items():
            required = p.default is inspect.Parameter.empty and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
            if required and pname not in args:
                problems.append((pname, "missing; this argument is required"))
        return problems

    def full_args(self, args: dict[str, Any]) -> dict[str, Any]:
        """*args* completed with the factory's defaults (to compare two argument sets)."""
        out = {
            name: p.default
            for name, p in self.parameters().items()
            if p.default is not inspect.Parameter.empty and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        }
        out.update(args)
        return out

    def build(self, **kwargs: Any) -> Any:
        """Call the factory with keyword arguments."""
        return self.factory(**kwargs)


class Registry:
    """Name → :class:`Component` for one kind."""

    def __init__(self, kind: str):
        if kind not in KINDS:
            raise ValueError(f"unknown registry kind {kind!r}")
        self.kind = kind
        self._entries: dict[str, Component] = {}

    def add(self, component: Component) -> None:
        """Add one component; a duplicate name is an error naming both plugins."""
        self.add_all([component])

    def add_all(self, components: list[Component]) -> None:
        """Add several components at once: either all are added or none."""
        seen: dict[str, Component] = {}
        for comp in components:
            if not comp.name or not comp.name.replace("_", "").replace("-", "").isalnum():
                raise RegistryError(f"invalid {SINGULAR[self.kind]} name {comp.name!r} from plugin '{comp.plugin}'")
            other = self._entries.get(comp.name) or seen.get(comp.name)
            if other is not None:
                raise RegistryError(
                    f"duplicate {SINGULAR[self.kind]} '{comp.name}': registered by plugin '{other.plugin}' "
                    f"and by plugin '{comp.plugin}'"
                )
            seen[comp.name] = comp
        self._entries.update(seen)

    def get(self, name: str) -> Component:
        """The component called *name*.

        Raises:
            UnknownComponentError: no such name; the message lists the closest names.
        """
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownComponentError(self.kind, name, list(self._entries)) from None

    def build(self, name: str, **kwargs: Any) -> Any:
        """Build component *name* with keyword arguments."""
        return self.get(name).build(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Component]:
        return iter(sorted(self._entries.values(), key=lambda c: c.name))

    def __len__(self) -> int:
        return len(self._entries)
