"""The config groups made from the registries, beside the typed schemas of the training
commands (kdlab.runs.schema, torch-free), and the composed config turned into them.

Every default is stated once, in a dataclass: the `model=`, `data=`, `optim=`, `sched=`,
`loss=`, `stage2=` and `logger=` groups are generated here from the registries, so no YAML
file mirrors them. A composed config is checked once (`kdlab.runs.validation`) and turned
into these typed objects once (`typed_config`); the engine, data and optimiser take their
parts.
"""

from __future__ import annotations

from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from kdlab.data.registry import group_options as data_options
from kdlab.engine.settings import OPTIMIZERS, SCHEDULES
from kdlab.engine.trackers import group_options as logger_options
from kdlab.errors import KdlabError
from kdlab.methods.registry import group_options as loss_options
from kdlab.models import group_options as model_options
from kdlab.runs.distill_settings import STAGE2_MODES, Stage2Config
from kdlab.runs.plugins import load_plugins
from kdlab.runs.schema import DistillConfig, FitnetRunConfig, RunConfig


def _the_store_itself(store: ConfigStore, memo: dict[int, Any]) -> ConfigStore:
    return store


# What register_configs stored, by (group, name): the option and the store's node made of it.
_STORED: dict[tuple[str | None, str], tuple[Any, Any]] = {}


def _store(store: ConfigStore, name: str, node: Any, group: str | None = None) -> None:
    """`store.store`, unless the store still holds the node made of an equal option: turning
    the ~100 schemas into config nodes again took 0.1 s of every composition (two a command)."""
    option, made = _STORED.get((group, name), (None, None))
    if made is not None and _group(store, group).get(f"{name}.yaml") is made and option == node:
        return
    store.store(group=group, name=name, node=node)
    _STORED[group, name] = node, _group(store, group)[f"{name}.yaml"]


def _group(store: ConfigStore, group: str | None) -> dict[str, Any]:
    """The store's entries of `group` (the top level for None), by file name."""
    held = store.repo
    for part in group.split("/") if group else []:
        held = held.get(part, {})
    return held


def register_configs() -> None:
    """The schemas the primary configs start from, and the generated config groups (the
    plugins' methods, models and data sets among them).

    Hydra deep-copies its config repository, and with it the whole ConfigStore, each time it
    loads a config or lists a group (14 times per command): with every method's, model's and
    data set's schema stored, that took 0.5 s of CPU per command on the 2-core kind. The copy
    guards the repository's list of sources, not the store, which the copied source reads as
    the singleton anyway: the store is shared instead of copied."""
    ConfigStore.__deepcopy__ = _the_store_itself  # type: ignore[attr-defined]
    load_plugins()
    store = ConfigStore.instance()
    _store(store, "kdlab_run", RunConfig)
    _store(store, "kdlab_distill", DistillConfig)
    _store(store, "kdlab_fitnet", FitnetRunConfig)
    groups: dict[str, dict[str, Any]] = {
        "model": model_options(),
        "data": data_options(),
        "optim": OPTIMIZERS,
        "sched": SCHEDULES,
        "loss": loss_options(),
        "stage2": {mode: Stage2Config(mode=mode) for mode in STAGE2_MODES},
        "logger": logger_options(),
    }
    for group, options in groups.items():
        for name, node in options.items():
            _store(store, name, node, group)


def typed_config(cfg: DictConfig) -> RunConfig:
    """The composed config as its dataclasses (RunConfig or a subclass), once per run."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise KdlabError(f"{missing[0]} has no value: set {missing[0]}=VALUE")
    typed = OmegaConf.to_object(cfg)
    assert isinstance(typed, RunConfig)
    return typed
