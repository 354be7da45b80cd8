"""Package names that load their module on first use (PEP 562), so that a command imports only
what it runs: `aotcheck diff a.json b.json` never loads the modules that build reports."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any


class Exports:
    """A package's public names and the module each comes from."""

    def __init__(self, package: str, homes: Mapping[str, tuple[str, ...]]) -> None:
        self.package = package
        self.home_of = {name: f"{package}.{module}" for module, names in homes.items() for name in names}

    @property
    def names(self) -> list[str]:
        """Every name, sorted: a test holds the package's `__all__` to them."""
        return sorted(self.home_of)

    def load(self, name: str, namespace: dict[str, Any]) -> Any:
        """`name` from its module, kept in the package's namespace so later lookups skip this."""
        module = self.home_of.get(name)
        if module is None:
            raise AttributeError(f"module {self.package!r} has no attribute {name!r}")
        value = namespace[name] = getattr(importlib.import_module(module), name)
        return value
