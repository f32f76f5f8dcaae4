"""Lazy package exports (PEP 562): a package ``__init__`` names what it exports and where it lives; the module is
imported on first attribute access, so importing the package stays cheap and free of side effects."""

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], list[str]]:
    """``(__getattr__, __all__)`` for ``package``: ``exports`` maps each exported name to the module defining it."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}; it exports {sorted(exports)}")

    return __getattr__, sorted(exports)
