"""Packages whose public names load on first use (SPEC 1, through ``lazy_loader``).

A package's ``__init__`` lists which submodule holds each public name; nothing is imported until a name is asked
for, so ``lensaudit --help`` and a light command do not pay for torch, pandas or astropy they never use.
"""

from __future__ import annotations

import importlib

import lazy_loader


def attach(package: str, submod_attrs: dict[str, list[str]], reexports: dict[str, list[str]] | None = None):
    """``(__getattr__, __dir__, __all__)`` for ``package``: ``submod_attrs`` maps its submodules (relative names) to
    the names each provides; ``reexports`` maps other modules (absolute names) to names the package re-exports."""
    getattr_, _, names = lazy_loader.attach(package, submod_attrs=submod_attrs)
    other = {name: module for module, attrs in (reexports or {}).items() for name in attrs}
    names = sorted([*names, *other])

    def __getattr__(name: str):
        if name in other:
            return getattr(importlib.import_module(other[name]), name)
        return getattr_(name)

    def __dir__():
        return list(names)

    return __getattr__, __dir__, names
