"""Which Hydra launcher runs a sweep or a study: the `hydra/launcher=` and `hydra.launcher.*`
overrides, and a one-line refusal when the named plugin is not installed (before Hydra
composes a config group it cannot find). Light to import: no Hydra, no torch."""

from __future__ import annotations

from collections.abc import Sequence
from importlib.util import find_spec

from kdlab.errors import KdlabError

# The launchers of the `cluster` extra and the plugin module that brings each.
PLUGIN_MODULES = {
    "joblib": "hydra_plugins.hydra_joblib_launcher",
    "submitit_local": "hydra_plugins.hydra_submitit_launcher",
    "submitit_slurm": "hydra_plugins.hydra_submitit_launcher",
}


def is_launcher_override(override: str) -> bool:
    key = override.split("=", 1)[0].lstrip("+~")
    return key == "hydra/launcher" or key.startswith("hydra.launcher.")


def split_launcher_args(overrides: Sequence[str]) -> tuple[list[str], list[str]]:
    """(the launcher's overrides, the runs' overrides)."""
    launcher = [o for o in overrides if is_launcher_override(o)]
    return launcher, [o for o in overrides if not is_launcher_override(o)]


def plugin_installed(module: str) -> bool:
    try:
        return find_spec(module) is not None
    except ModuleNotFoundError:  # the namespace package hydra_plugins is absent
        return False


def check_launcher(overrides: Sequence[str]) -> None:
    """Refuse a `hydra/launcher=` of the `cluster` extra that is not installed."""
    for override in overrides:
        if override.split("=", 1)[0].lstrip("+~") != "hydra/launcher":
            continue
        name = override.split("=", 1)[1]
        module = PLUGIN_MODULES.get(name)
        if module and not plugin_installed(module):
            raise KdlabError(
                f"hydra/launcher={name} needs Hydra's {name.split('_')[0]} launcher plugin: "
                "pip install 'kdlab[cluster]'"
            )
