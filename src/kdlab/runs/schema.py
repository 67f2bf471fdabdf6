"""The typed config schemas of the training commands, and their typed defaults as far as they
are known without the registries (torch-free: the CLI's first look at the overrides and the
did-you-mean hints use them).

Each package owns the schema of its own settings (`data.DataConfig` and each data set's
subclass; kdlab.engine.settings: trainer, optim, sched; kdlab.engine.trackers: logger;
kdlab.methods.settings: loss; kdlab.runs.distill_settings: teacher, stage2, fitnet); this
module puts them together per command. kdlab.runs.config generates the config groups from the
registries and turns a composed config into these dataclasses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, make_dataclass
from typing import Any

from omegaconf import MISSING

from kdlab.data.names import OWN_SETTINGS
from kdlab.data.settings import DataConfig
from kdlab.engine.settings import OPTIMIZERS, SCHEDULES, OptimConfig, SchedConfig, TrainerConfig
from kdlab.engine.trackers import SETTINGS as TRACKERS
from kdlab.engine.trackers import LoggerConfig
from kdlab.methods.settings import LossConfig
from kdlab.paths import config_dir
from kdlab.runs.distill_settings import FitnetConfig, Stage2Config, TeacherConfig


@dataclass
class RunConfig:
    """`kdlab train`: one model, cross-entropy."""

    command: str = MISSING
    seed: int = 0
    resume: bool = False
    debug: bool = False
    model: Any = MISSING  # {"arch": NAME, **options}: see kdlab.models.registry
    data: DataConfig = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sched: SchedConfig = field(default_factory=SchedConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)  # logger=[tensorboard,mlflow]


@dataclass
class DistillConfig(RunConfig):
    """`kdlab distill`: loss=kd is L = (1 - alpha) * T^2 * L_soft + alpha * L_hard (alpha:
    hard term); every other method is one `loss=` option (kdlab.methods.registry)."""

    loss: LossConfig = field(default_factory=LossConfig)  # each method's own subclass
    T: float = 4.0
    alpha: float = 0.1  # weight of the hard (label) term
    teacher: TeacherConfig = field(default_factory=TeacherConfig)


@dataclass
class FitnetRunConfig(DistillConfig):
    """`kdlab fitnet`: FitNets' hint stage, then KD (stage2=frozen|finetune)."""

    stage2: Stage2Config = field(default_factory=Stage2Config)
    fitnet: FitnetConfig = field(default_factory=FitnetConfig)


SCHEMAS: dict[str, type[RunConfig]] = {
    "train": RunConfig,
    "distill": DistillConfig,
    "fitnet": FitnetRunConfig,
}
# The settings of the methods that are a command's default (loss=kd), beyond LossConfig's
# name: tests/test_screen.py checks the default config's keys against the composed one.
METHOD_SETTINGS: dict[str, tuple[str, ...]] = {"kd": ("standardize", "ce_weight", "kd_weight")}


def command_defaults(command: str) -> dict[str, Any]:
    """The config groups of `kdlab COMMAND` (conf/COMMAND.yaml's defaults list) and their
    default options, in the list's order."""
    from omegaconf import OmegaConf

    listed = OmegaConf.to_container(OmegaConf.load(config_dir() / f"{command}.yaml").defaults)
    assert isinstance(listed, list)
    return {k: v for entry in listed if isinstance(entry, dict) for k, v in entry.items()}


def with_keys(base: type, name: str, keys: tuple[str, ...]) -> type:
    """`base` with the settings `keys` (any type, null) added: the keys of an option whose
    own schema lives with its registry."""
    return make_dataclass(name, [(key, Any, None) for key in keys], bases=(base,)) if keys else base


def typed_options(command: str, chosen: Mapping[str, Any]) -> RunConfig:
    """`kdlab COMMAND`'s typed config with the config groups' `chosen` options (a built-in
    data set, a method of METHOD_SETTINGS or any other, whose node then holds its name only)
    and every setting at its default; model's node holds its arch."""
    data = with_keys(DataConfig, "BuiltInData", OWN_SETTINGS[chosen["data"]])
    trackers = {name: TRACKERS[name]() for name in chosen["logger"]}
    parts: dict[str, Any] = {
        "model": {"arch": chosen["model"]},
        "data": data(name=chosen["data"]),
        "optim": OPTIMIZERS[chosen["optim"]],
        "sched": SCHEDULES[chosen["sched"]],
        "logger": LoggerConfig(**trackers),
    }
    if "loss" in chosen:
        keys = METHOD_SETTINGS.get(chosen["loss"], ())
        parts["loss"] = with_keys(LossConfig, "MethodSettings", keys)(name=chosen["loss"])
    if "stage2" in chosen:
        parts["stage2"] = Stage2Config(mode=chosen["stage2"])
    return SCHEMAS[command](command=command, **parts)
