"""A package's public names imported on first use (PEP 562), each from the module it lives
in: importing the package costs nothing, so its torch-free modules (kdlab.models.names,
kdlab.data.names, kdlab.methods.names) are read without torch."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from importlib import import_module
from typing import Any


def names_on_first_use(
    package: str, exported: Sequence[str], homes: Mapping[str, tuple[str, ...]]
) -> Callable[[str], Any]:
    """The package's `__getattr__` for its `__all__` (`exported`): `homes` maps each of its
    modules to the names it holds, and must name each exported name once."""
    where = {name: module for module, names in homes.items() for name in names}
    if sorted(where) != sorted(exported):
        raise ImportError(f"{package}: __all__ and the modules its names live in differ")

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module '{package}' has no attribute '{name}'")
        return getattr(import_module(f"{package}.{where[name]}"), name)

    return __getattr__
