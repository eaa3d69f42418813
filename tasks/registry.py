"""One registry for every named choice in a config: models, datasets, transform recipes, shifts,
corruptions, learning-rate schedules, distillation losses, model kinds.

    SCHEDULES = Registry("schedule", key="schedule.name")

    @SCHEDULES.register("cosine")
    def cosine(cfg, total, steps_per_epoch): ...

    SCHEDULES.get("cosnie")   # ValueError: schedule.name must be one of [...], got 'cosnie' (did you mean 'cosine'?)

A name is registered once (a second registration is refused); ``info`` keeps what a registration
says besides its factory (a corruption's strengths, say). ``discover``: a package whose modules
register themselves, imported on the first lookup (one file per entry, as timm's models).
"""
from __future__ import annotations

import difflib
import importlib
import pkgutil
from typing import Any, Callable, Dict, Generic, Iterator, List, Optional, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, what: str, key: str = "", discover: str = ""):
        self.what = what                # "dataset": how an error names an entry
        self.key = key                  # "shift.kind": the config key that names one, if any
        self.discover = discover        # a package whose modules register on the first lookup
        self._entries: Dict[str, T] = {}
        self.info: Dict[str, Dict[str, Any]] = {}
        self._discovered = not discover

    def register(self, name: str = "", **info) -> Callable[[T], T]:
        """A decorator registering its function or class as ``name`` (a class: its ``name``)."""
        def wrap(entry: T) -> T:
            self.add(name or getattr(entry, "name", ""), entry, **info)
            return entry
        return wrap

    def add(self, name: str, entry: T, **info) -> None:
        if not name or name in self._entries:
            raise ValueError(f"a {self.what} needs a new name, got {name!r}"
                             + (" (already registered)" if name in self._entries else ""))
        self._entries[name] = entry
        self.info[name] = info

    def pop(self, name: str, default=None):
        """Unregister ``name`` (a test's or a plugin's entry); its entry, or ``default`` if none."""
        self.info.pop(name, None)
        return self._entries.pop(name, default)

    def get(self, name: str) -> T:
        """The entry ``name``; a ValueError listing the known names (and the nearest one) if none."""
        self._discover()
        if name in self._entries:
            return self._entries[name]
        raise ValueError(self.unknown(name))

    def unknown(self, name) -> str:
        """What is said of a name that is not registered."""
        close = difflib.get_close_matches(str(name), self.names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        if self.key:
            return f"{self.key} must be one of {self.names()}, got {name!r}{hint}"
        return f"unknown {self.what} {name!r}{hint}; known: {', '.join(self.names())}"

    def names(self) -> List[str]:
        self._discover()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._discover()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def find(self, test: Callable[[T], bool], order: Optional[List[str]] = None) -> Optional[str]:
        """The first name (in ``order``, else sorted) whose entry passes ``test``."""
        return next((n for n in (order or self.names()) if test(self.get(n))), None)

    def _discover(self) -> None:
        if not self._discovered:
            self._discovered = True
            package = importlib.import_module(self.discover)
            for module in pkgutil.iter_modules(package.__path__):
                importlib.import_module(f"{self.discover}.{module.name}")
