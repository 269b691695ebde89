"""Lazy public names for a package's ``__init__``: a name is imported from its module on first use (PEP 562).

A layer's ``__init__`` states its API as ``{module: [names]}``; importing the layer costs nothing until one of its
names is used, so ``python -m tsamlib --help`` and worker processes stay quick::

    __all__, __getattr__, __dir__ = lazy_exports(__name__, {".shift": ["temporal_shift", "TemporalShift"]})

A value written as ``"name=attr"`` exports the module's ``attr`` under ``name`` (an alias).
"""
from __future__ import annotations

import sys
from importlib import import_module
from typing import Any, Callable

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: dict[str, list[str]]) -> tuple[list[str], Callable[[str], Any],
                                                                       Callable[[], list[str]]]:
    """``(__all__, __getattr__, __dir__)`` for ``package``, whose public names live in the modules of ``exports``
    (relative module names, each with its names)."""
    where: dict[str, tuple[str, str]] = {}
    for module, names in exports.items():
        for entry in names:
            name, _, attr = entry.partition("=")
            where[name] = (module, attr or name)

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, attr = where[name]
        value = getattr(import_module(module, package), attr)
        setattr(sys.modules[package], name, value)   # once imported, a plain attribute
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(where))

    return list(where), __getattr__, __dir__
