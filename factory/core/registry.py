"""Named entries of one pluggable kind (filter steps, rewards, verifiers, formats, backends).

Each entry has a one-line help. An entry may be a "module:attr" string: it is imported on its
first `get`, so listing or validating names never pays for heavy imports (vllm, torch), and a
module that registers its plugins by path does not import them (no import cycle back to it).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from factory.core.errors import FactoryError

T = TypeVar("T")


class Registry(Generic[T]):
    """name -> entry of one kind, in registration order; `get` loads a path entry once."""

    def __init__(self, kind: str, hint: str = "") -> None:
        """`kind` names an entry in messages ("reward"); `hint` ends the unknown-name error."""
        self.kind = kind
        self._hint = hint
        self._entries: dict[str, T | str] = {}  # a str is a "module:attr" path, not loaded yet
        self._help: dict[str, str | None] = {}

    def register(self, name: str, obj: T | str | None = None, *, help: str | None = None) -> Any:
        """Add `obj` (or a "module:attr" path) under `name`; without `obj`, a decorator that does.

        Without `help`, the entry's `description` attribute or the first paragraph of its docstring
        is shown. A later registration under the same name replaces the earlier one.
        """
        if obj is None:

            def decorator(fn: T) -> T:
                self.register(name, fn, help=help)
                return fn

            return decorator
        self._entries[name] = obj
        self._help[name] = help
        return obj

    def get(self, name: str) -> T:
        """The entry `name`, imported if it is a path; an unknown name is one FactoryError line."""
        try:
            obj = self._entries[name]
        except (KeyError, TypeError):  # TypeError: an unhashable name from YAML
            raise self.unknown(name) from None
        if isinstance(obj, str):
            obj = self._entries[name] = _load(obj)
        return obj

    def unknown(self, name: object) -> FactoryError:
        """The error for a name that is not registered, listing the ones that are."""
        shown = f"'{name}'" if isinstance(name, str) else repr(name)
        return FactoryError(f"unknown {self.kind} {shown}: the {self.kind}s are {', '.join(self._entries)}{self._hint}")

    def help(self, name: str) -> str:
        text = self._help.get(name)
        if text is None:
            obj = self.get(name)
            text = getattr(obj, "description", None) or obj.__doc__ or ""
        return " ".join(text.strip().split("\n\n")[0].split())  # a wrapped first paragraph as one line

    def names(self) -> list[str]:
        return list(self._entries)

    def items(self) -> list[tuple[str, str]]:
        """(name, help) of every entry, in registration order."""
        return [(name, self.help(name)) for name in self._entries]

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._entries
        except TypeError:
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)


def _load(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)

