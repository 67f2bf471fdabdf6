"""Where an override's key lands in a command's typed config, and the rule for the keys an
override adds (`+KEY=V`) or deletes (`~KEY`): one rule, applied by the pre-flight on the
composed config and by the CLI's torch-free screen where its typed defaults are sure.
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
