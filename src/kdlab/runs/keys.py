"""The rules on an override's key that come before its value's checks: where the key lands in
a command's typed config, the keys an override adds (`+KEY=V`) or deletes (`~KEY`), and a
config group given a mapping. Each is applied by the pre-flight on the composed config and by
the CLI's torch-free screen where it is sure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from typing import Any

from kdlab.errors import KdlabError
from kdlab.runs.suggest import added_key_hint


def typed_key(typed: Any, key: str) -> str:
    """Where the dotted `key` lands in the typed config: 'field' (a dataclass field),
    'owned' (inside a mapping or list, whose owner checks its keys: a model's options) or
    'unknown'."""
    node = typed
    for part in key.split("."):
        if isinstance(node, Mapping | list | tuple):
            return "owned"
        if not is_dataclass(node) or part not in {f.name for f in fields(node)}:
            return "unknown"
        node = getattr(node, part)
    return "field"


def judged_by_hydra(key: str) -> bool:
    """Hydra's own keys (`hydra.*`) and nested config groups (`+hydra/launcher=...`)."""
    return key.startswith("hydra") or "/" in key


def check_added_or_deleted(command: str, override: Any, typed: Any, groups: set[str]) -> None:
    """`+KEY=V` for a key the typed config does not have would be saved and never read;
    `~KEY` of a setting or group is silently refilled with its defaults (`~trainer`: 30
    epochs). `override`: Hydra's parsed override; an added config group (`+experiment=X`, a
    key of `groups`) is Hydra's to judge."""
    key = override.key_or_group
    added = override.is_add() or override.is_force_add()
    if added and key not in groups and typed_key(typed, key) == "unknown":
        raise KdlabError(added_key_hint(command, key, override.get_value_element_as_str()))
    if override.is_delete() and typed_key(typed, key) == "field":
        raise KdlabError(
            f"~{key} deletes kdlab's {key} settings, which are then silently refilled with "
            f"their defaults: drop ~{key} and set the values you mean instead "
            f"(`kdlab {command} --cfg job` lists them)"
        )


def check_group_mapping(command: str, override: Any) -> None:
    """A config group (`override`'s key) takes an option's name: Hydra would merge a mapping
    (`model={a:1}`) into the group's node and refuse its first key as not in struct."""
    if isinstance(override.value(), dict):
        group, shown = override.key_or_group, override.get_value_element_as_str()
        raise KdlabError(
            f"{group}= takes an option's name, not {shown}: set one of its settings with "
            f"{group}.KEY=VALUE (`kdlab {command} --help` lists the options, `kdlab {command} "
            "--cfg job` the settings)"
        )
