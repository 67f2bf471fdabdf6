"""Did-you-mean hints for mistyped settings: the closest keys of the command's config.

Only reached on the error path; torch-free (the keys come from the run schemas, kdlab.runs.
schema), so the CLI's first look at the overrides gives the pre-flight's hint.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Sequence
from typing import Any

_UNKNOWN_KEY = re.compile(r"Could not override '([^']+)'")


def dotted_keys(node: Any, prefix: str = "") -> Iterator[str]:
    """Every dotted key of a nested dict, leaves and groups alike."""
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        path = f"{prefix}{key}"
        yield path
        yield from dotted_keys(value, f"{path}.")


def config_keys(command: str) -> list[str]:
    """The dotted keys of `kdlab COMMAND`'s default config, from its schema and default
    options: no registry (or torch) is imported."""
    from omegaconf import OmegaConf

    from kdlab.runs.schema import command_defaults, typed_options

    typed = typed_options(command, command_defaults(command))
    return list(dotted_keys(OmegaConf.to_container(OmegaConf.structured(typed), resolve=False)))


def closest_key(typed: str, keys: Sequence[str]) -> str | None:
    """The key the user most likely meant: same letters in another case, the same last part
    (`epochs` -> `trainer.epochs`), else the closest spelling of either."""
    lower = {k.lower(): k for k in keys}
    if typed.lower() in lower:
        return lower[typed.lower()]
    by_leaf: dict[str, list[str]] = {}
    for key in keys:
        by_leaf.setdefault(key.rsplit(".", 1)[-1].lower(), []).append(key)
    if len(by_leaf.get(typed.lower(), [])) == 1:
        return by_leaf[typed.lower()][0]
    close = difflib.get_close_matches(typed.lower(), list(lower), n=1, cutoff=0.75)
    if close:
        return lower[close[0]]
    leaf = difflib.get_close_matches(typed.lower(), list(by_leaf), n=1, cutoff=0.75)
    return by_leaf[leaf[0]][0] if leaf and len(by_leaf[leaf[0]]) == 1 else None


def unknown_key_hint(command: str, message: str, overrides: Sequence[str]) -> str:
    """`message` (Hydra's 'Could not override ...') with the likely key appended, if any."""
    found = _UNKNOWN_KEY.search(message)
    if found is None:
        return message
    typed = found.group(1)
    meant = closest_key(typed.lstrip("+~"), config_keys(command))
    if meant is None or meant == typed.lstrip("+~"):  # not the key: its value is the trouble
        return f"{message} (`kdlab {command} --cfg job` lists every setting)"
    value = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == typed), None)
    fix = meant if value is None else f"{meant}={value}"
    return f"unknown setting '{typed}': did you mean {fix}?"


def unknown_option(group: str, name: str, options: Sequence[str]) -> str:
    """The one line for a config group option that does not exist (`loss=nope`)."""
    usage = f"{group}=[NAME,...]" if group == "logger" else f"{group}=NAME"
    return f"unknown {group} '{name}': choose one of {', '.join(options)} ({usage})"


def added_key_hint(command: str, key: str, value: str) -> str:
    """The one line for `+KEY=VALUE` where KEY is no setting of the command's typed config:
    it would be written to config.yaml and never read."""
    meant = closest_key(key, config_keys(command))
    if meant is None:
        return (
            f"unknown setting '+{key}': kdlab's config has no such key, so nothing would read "
            f"it (`kdlab {command} --cfg job` lists every setting)"
        )
    return f"unknown setting '+{key}': did you mean {meant}={value}?"


def flag_hint(command: str, flag: str, value: str | None) -> str:
    """The one line for a `--name value` the user meant as a key=value override."""
    name, _, inline = flag.lstrip("-").partition("=")
    value = inline or value
    meant = closest_key(name, config_keys(command))
    if meant is None:
        return (
            f"kdlab takes key=value overrides, not {flag.split('=', 1)[0]}, e.g. "
            f"trainer.epochs=3 (`kdlab {command} --cfg job` lists every setting)"
        )
    return f"kdlab takes key=value overrides, e.g. {meant}={value or 'VALUE'}"
