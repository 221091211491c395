"""One generic registry, used for architectures and for training modes.

A registry maps names to specs.  Names are registered once (a second
registration under the same name is an error that names both sources), looked
up with a did-you-mean on a miss, and listed with shell-style patterns in
natural sort order ("inception-k8" before "inception-k16").

Plugins reach a registry in two ways, and the built-in entries use the first:

* an entry point in the registry's group (for example ``gonprof.architectures``)
  whose value is a module; importing the module registers its entries;
* a Python file passed as ``--plugin FILE.py``; executing it registers its
  entries.

This module imports nothing heavy, so that the CLI can use it before torch.
"""

from __future__ import annotations

import builtins
import difflib
import fnmatch
import importlib
import importlib.util
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")
_O = TypeVar("_O")


class RegistryError(Exception):
    """Base class for registry errors; the message is one line for the user."""


class UnknownNameError(RegistryError, KeyError):
    def __init__(self, kind: str, name: str, suggestions: list[str]):
        self.kind, self.name, self.suggestions = kind, name, suggestions
        hint = f"; did you mean {' or '.join(suggestions)}?" if suggestions else ""
        where = "gonprof list --modes" if kind == "mode" else "gonprof list"
        super().__init__(f"unknown {kind} {name!r}{hint} (see `{where}`)")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DuplicateNameError(RegistryError):
    pass


class PluginError(RegistryError):
    pass


def natural_key(name: str) -> list[int | str]:
    """Sort key that orders embedded numbers by value: k8 < k16 < k32."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    value: T
    origin: str  # where it was registered from: a module or a plugin file


class Registry(Generic[T]):
    """Name -> spec mapping with plugin loading.

    ``kind`` names what is registered ("architecture", "mode") in messages;
    ``group`` is the entry point group that plugins (and the built-ins) use.
    """

    def __init__(self, kind: str, group: str):
        self.kind = kind
        self.group = group
        self._entries: dict[str, Entry[T]] = {}
        self._plugins_loaded = False
        self._loading = False

    # -- registration -------------------------------------------------
    def add(self, name: str, value: T, origin: str | None = None) -> T:
        origin = origin or _caller_origin()
        old = self._entries.get(name)
        if old is not None:
            if old.origin == origin and _same_definition(old.value, value):
                return value  # the same module imported twice: harmless
            raise DuplicateNameError(
                f"{self.kind} {name!r} is registered twice: by {old.origin} and by {origin}"
            )
        self._entries[name] = Entry(name, value, origin)
        return value

    def register(self, name: str, make: Callable[[Callable[..., Any]], T] | None = None) -> Callable[[_O], _O]:
        """Decorator: ``@REG.register("name", make=lambda fn: Spec(fn))``.

        Without ``make`` the decorated object itself is registered.  The
        decorated object is returned unchanged.
        """

        def deco(obj: Any) -> Any:  # any object without make; a callable that make turns into a T
            origin = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}"
            self.add(name, make(obj) if make else obj, origin=origin)
            return obj

        return deco

    # -- lookup -------------------------------------------------------
    def get(self, name: str) -> T:
        self.load_plugins()
        try:
            return self._entries[name].value
        except KeyError:
            raise UnknownNameError(self.kind, name, self.suggest(name)) from None

    def origin(self, name: str) -> str:
        self.get(name)
        return self._entries[name].origin

    def suggest(self, name: str, n: int = 3) -> list[str]:
        return difflib.get_close_matches(name, list(self._entries), n=n, cutoff=0.6)

    def list(self, pattern: str | None = None) -> list[str]:
        """Registered names matching ``pattern``, naturally sorted.

        A pattern with ``*``, ``?`` or ``[`` is a glob over the whole name; a
        plain word matches names that contain it; None lists everything.
        """
        self.load_plugins()
        names: Iterable[str] = self._entries.keys()
        if pattern:
            pat = pattern if any(c in pattern for c in "*?[") else f"*{pattern}*"
            names = [n for n in names if fnmatch.fnmatchcase(n, pat)]
        return sorted(names, key=natural_key)

    def match(self, patterns: builtins.list[str]) -> builtins.list[str]:
        """Expand names and globs in order, without repeats; an unknown plain name raises."""
        out: builtins.list[str] = []
        for pat in patterns:
            if any(c in pat for c in "*?["):
                found = self.list(pat)
                if not found:
                    raise UnknownNameError(self.kind, pat, [])
            else:
                self.get(pat)
                found = [pat]
            out.extend(n for n in found if n not in out)
        return out

    def __contains__(self, name: str) -> bool:
        self.load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[T]:
        return (self._entries[n].value for n in self.list())

    def __len__(self) -> int:
        self.load_plugins()
        return len(self._entries)

    # -- plugins ------------------------------------------------------
    def load_plugins(self) -> None:
        """Import every module named in this registry's entry point group (once)."""
        if self._plugins_loaded or self._loading:
            return
        self._loading = True
        try:
            for ep in sorted(metadata.entry_points(group=self.group), key=lambda e: e.name):
                try:
                    ep.load()
                except RegistryError:
                    raise
                except Exception as exc:  # a broken third-party plugin names itself
                    raise PluginError(
                        f"plugin {ep.name!r} ({ep.value}) in group {self.group} failed to load: "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc
            self._plugins_loaded = True
        finally:
            self._loading = False


def load_plugin_file(path: str | Path) -> None:
    """Execute a plugin file; whatever it registers joins the registries."""
    path = Path(path)
    if not path.is_file():
        raise PluginError(f"plugin file not found: {path}")
    modname = "gonprof_plugin_" + re.sub(r"\W", "_", str(path.resolve()))
    if modname in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"plugin file is not a Python module: {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    try:
        spec.loader.exec_module(module)
    except RegistryError:
        del sys.modules[modname]
        raise
    except Exception as exc:
        del sys.modules[modname]
        raise PluginError(f"plugin {path} failed to load: {type(exc).__name__}: {exc}") from exc


def _caller_origin() -> str:
    frame = sys._getframe(2)
    return f"{frame.f_globals.get('__name__', '?')} ({frame.f_code.co_filename}:{frame.f_lineno})"


def _same_definition(a: object, b: object) -> bool:
    return a is b or a == b
