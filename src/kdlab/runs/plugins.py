"""Plugins: modules from outside kdlab that register methods, models and data sets on import.

Two ways to name them: the environment variable KDLAB_PLUGINS (module names separated by
commas, importable from the working directory or PYTHONPATH), and the entry points of
installed packages in the groups below. A plugin's module calls
`kdlab.methods.register`, `kdlab.models.register_model` or `kdlab.data.register_dataset`
when imported; its names are then choices like the built-in ones. `load_plugins()` imports
them all once per process, before the config groups are made and any command runs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import cache, partial
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any

from kdlab.errors import KdlabError

ENV_VAR = "KDLAB_PLUGINS"
ENTRY_POINT_GROUPS = ("kdlab.methods", "kdlab.models", "kdlab.datasets")


def env_plugins() -> list[str]:
    """The module names in KDLAB_PLUGINS, in order."""
    return [name.strip() for name in os.environ.get(ENV_VAR, "").split(",") if name.strip()]


def load_plugin(name: str, where: str, fix: str, load: Callable[[], Any]) -> None:
    """Import one plugin; any failure becomes one line naming it, where it was named and how
    to get rid of it."""
    try:
        load()
    except KdlabError as error:  # e.g. a name it registers is taken: already one line
        raise KdlabError(f"plugin '{name}' ({where}): {error}") from error
    except Exception as error:
        reason = " ".join(str(error).split())
        raise KdlabError(
            f"plugin '{name}' ({where}) failed to import: {type(error).__name__}: {reason}: {fix}"
        ) from error


@cache
def load_plugins() -> None:
    """Import every plugin named in KDLAB_PLUGINS (with the working directory on sys.path
    meanwhile) and every entry point in ENTRY_POINT_GROUPS; once per process."""
    cwd = os.getcwd()
    sys.path.insert(0, cwd)
    try:
        fix = f"fix or remove it from {ENV_VAR}"
        for name in env_plugins():
            load_plugin(name, ENV_VAR, fix, partial(import_module, name))
    finally:
        sys.path.remove(cwd)
    installed = entry_points()  # one scan of the installed packages for all groups
    for group in ENTRY_POINT_GROUPS:
        for point in installed.select(group=group):
            fix = f"fix or uninstall the package that declares it (entry point {point.value})"
            load_plugin(point.name, f"entry point group {group}", fix, point.load)
