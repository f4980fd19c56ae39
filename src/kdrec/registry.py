"""One registry mechanism for models, distillers, datasets and tasks (RecBole-style names).

An entry registers itself with a decorator in its own module; the first lookup imports every
module of the registry's package, so adding a model, distiller, dataset or task is one module
(plus its yaml) and no hand-kept import list.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable

from kdrec.errors import ConfigError


@dataclass
class Entry:
    name: str
    obj: Any  # a class, or a builder function
    meta: dict = field(default_factory=dict)


def _ident(obj) -> tuple:
    return (getattr(obj, "__module__", None), getattr(obj, "__qualname__", id(obj)))


class Registry:
    def __init__(self, kind: str, package: str):
        self.kind, self.package = kind, package
        self._entries: dict[str, Entry] = {}
        self._discovered = False

    def register(self, name: str, **meta) -> Callable:
        def deco(obj):
            old = self._entries.get(name)
            if old is not None and _ident(old.obj) != _ident(obj):
                raise ValueError(f"{self.kind} {name!r} registered twice ({old.obj} and {obj})")
            self._entries[name] = Entry(name, obj, meta)
            if isinstance(obj, type):
                obj.registry_name = name
            return obj

        return deco

    def discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        pkg = importlib.import_module(self.package)
        for mod in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            importlib.import_module(mod.name)

    def entry(self, name: str) -> Entry:
        if name not in self._entries:
            self.discover()
        if name not in self._entries:
            raise ConfigError(f"unknown {self.kind} {name!r}; registered: {self.names()}")
        return self._entries[name]

    def get(self, name: str) -> Any:
        return self.entry(name).obj

    def names(self) -> list[str]:
        self.discover()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self.discover()
        return name in self._entries
