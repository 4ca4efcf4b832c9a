"""A package's public names imported on first use (PEP 562), so importing the package, or
one light module of it, loads nothing heavy."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_names(
    package: str, names: dict[str, str], namespace: dict[str, Any]
) -> Callable[[str], Any]:
    """The `__getattr__` of `package`: name -> getattr(import of `names[name]`, name), kept
    in the package's `namespace` once read."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return __getattr__


def lazy_dir(names: dict[str, str], namespace: dict[str, Any]) -> Callable[[], list[str]]:
    """The `__dir__` of a package whose `names` load on first use: those names beside the
    ones already in its `namespace`, so that `dir(package)` and a notebook's completion
    list the API before any of it is read."""

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names))

    return __dir__
