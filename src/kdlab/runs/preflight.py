"""The pre-flight: every job's config composed, typed and checked once, before Hydra writes
anything, so a typo fails in a second with one line and exit code 2 instead of a Hydra
traceback (or an hour into a sweep); so does a teacher that does not fit the run's data.

The typed configs are kept by content, so a job Hydra then starts takes its checked config
from here (`checked_config`) instead of being checked again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

from kdlab.errors import KdlabError
from kdlab.paths import config_dir
from kdlab.runs.config import register_configs, typed_config
from kdlab.runs.failed_run import Launch
from kdlab.runs.keys import check_added_or_deleted, check_group_mapping, judged_by_hydra
from kdlab.runs.run_dir import check_run_dir, check_run_dir_early, check_writable, lock_run_dir
from kdlab.runs.schema import DistillConfig, RunConfig
from kdlab.runs.suggest import unknown_key_hint, unknown_option
from kdlab.runs.teacher_files import check_teachers_early
from kdlab.runs.validation import validate

if TYPE_CHECKING:
    from hydra.core.override_parser.types import Override

# Hydra's words for `+KEY=V` where KEY has a value (`+trainer.epochs=3`, or `+KEY` twice).
_TAKEN = re.compile(r"Could not append to config\. An item is already at '([^']+)'")
# The typed config of every job the pre-flight checked, by its composed content.
_CHECKED: dict[str, RunConfig] = {}


def composition_message(error: Exception) -> str:
    """Squeeze a Hydra/OmegaConf composition error into one line."""
    from hydra.core.config_store import ConfigStore
    from hydra.errors import MissingConfigException

    if isinstance(error, MissingConfigException) and error.missing_cfg_file:
        group, _, name = error.missing_cfg_file.rpartition("/")
        options = error.options
        if group == "logger":  # a list-valued choice fails without the options: look them up
            options = [o.removesuffix(".yaml") for o in ConfigStore.instance().list(group)]
        if options:
            return unknown_option(group, name, sorted(options))
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    taken = _TAKEN.match(first)
    if taken:
        key = taken.group(1)
        return (
            f"+{key} adds a key, but {key} already has a value (its default, or an earlier "
            f"+{key}): set it once, with {key}=VALUE"
        )
    cause = error.__cause__
    if cause is not None and str(cause).strip():
        first = f"{first.rstrip('.')}: {str(cause).strip().splitlines()[0]}"
    return first


def content_key(cfg: DictConfig) -> str:
    return json.dumps(OmegaConf.to_container(cfg, resolve=True), sort_keys=True, default=str)


def compose_job(command: str, overrides: Sequence[str]) -> tuple[DictConfig, RunConfig]:
    """One job's config as Hydra composes it, and its typed, checked form."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register_configs()
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
        with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
            groups = config_groups(parsed)
            check_group_values(command, parsed, groups)
            cfg = compose(config_name=command, overrides=list(overrides))
        typed = typed_config(cfg)
    except (HydraException, OmegaConfBaseException, ValueError) as error:
        message = unknown_key_hint(command, composition_message(error), overrides)
        raise KdlabError(message) from None
    check_added_and_deleted(command, parsed, typed, groups)
    validate(typed)
    _CHECKED[content_key(cfg)] = typed
    return cfg, typed


def config_groups(parsed: Sequence[Override]) -> set[str]:
    """Which of the overrides' keys are config groups (`+experiment=X` adds a group option),
    asked of the Hydra instance the job was composed in."""
    from hydra.core.global_hydra import GlobalHydra

    loader = GlobalHydra.instance().config_loader()
    keys = {o.key_or_group for o in parsed}
    return {key for key in keys if loader.get_group_options(key)}


def check_group_values(command: str, parsed: Sequence[Override], groups: set[str]) -> None:
    """A config group takes option names: a list of numbers (`sched=[1,2]`) would reach
    Hydra's defaults tree as ints, which it cannot handle (a TypeError); nor a mapping."""
    from hydra.core.global_hydra import GlobalHydra

    loader = GlobalHydra.instance().config_loader()
    for override in parsed:
        if override.key_or_group not in groups:
            continue
        check_group_mapping(command, override)
        value = override.value()
        if isinstance(value, list) and not all(isinstance(v, str) for v in value):
            group = override.key_or_group
            options = sorted(loader.get_group_options(group))
            raise KdlabError(unknown_option(group, override.get_value_element_as_str(), options))


def check_added_and_deleted(
    command: str, parsed: Sequence[Override], typed: RunConfig, groups: set[str]
) -> None:
    """The rule for added and deleted keys (kdlab.runs.keys) on each override but Hydra's."""
    for override in parsed:
        if not judged_by_hydra(override.key_or_group):
            check_added_or_deleted(command, override, typed, groups)


def compose_config(command: str, overrides: Sequence[str] = ()) -> RunConfig:
    """The typed, checked config of `kdlab COMMAND OVERRIDES...`, for code (tests, scripts,
    notebooks) that runs kdlab's parts without the CLI."""
    return compose_job(command, overrides)[1]


@dataclass(frozen=True)
class Checked:
    """What the pre-flight found: the swept keys (to name the jobs' dirs), and for a
    hydra.run.dir= what existed before it locked that dir (what a failure may remove)."""

    swept: set[str]
    launch: Launch | None


def check_overrides(
    command: str, overrides: list[str], multirun: bool, *, teachers: bool = True
) -> Checked:
    """Compose and check the config of every job the overrides describe, the run dir and
    (unless not `teachers`: a study's, trained by the study) each job's teachers."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as error:
        raise KdlabError(f"cannot parse the overrides: {composition_message(error)}") from None
    sweeps = [o.input_line for o in parsed if o.is_sweep_override()]
    if sweeps and not multirun:
        raise KdlabError(f"'{sweeps[0]}' is a sweep: add -m (--multirun) to run one job per value")
    task = [o for o in parsed if not o.get_key_element().lstrip("+~").startswith("hydra")]
    try:  # a single run composes its overrides as given (the sweeper's split merges a key
        # given twice, which Hydra's own composition refuses for `+KEY` twice)
        jobs = (
            BasicSweeper.split_arguments(task, None)[0]
            if multirun
            else [[str(o.input_line) for o in task]]
        )
    except (HydraException, ValueError) as error:
        raise KdlabError(composition_message(error)) from None
    typed = [compose_job(command, job)[1] for job in jobs]
    out_key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    out_dirs = [Path(str(o.value())) for o in parsed if o.get_key_element().lstrip("+~") == out_key]
    check_writable(out_dirs[-1] if out_dirs else Path("outputs"), out_key)
    # A run dir named with an interpolation (${now:...}) is known once Hydra resolves it
    run_dir = out_dirs[-1] if out_dirs and not multirun and "${" not in str(out_dirs[-1]) else None
    launch, pinned = None, None
    if run_dir is not None:  # before Hydra writes its record (.hydra/) into the dir
        lock_run_dir(run_dir, create=False)  # a run in progress is named first
        pinned = check_run_dir_early(run_dir, typed[-1])
    if teachers:
        for job, cfg in zip(jobs, typed, strict=True):
            if isinstance(cfg, DistillConfig):
                check_teachers_early(cfg, job, pinned)
    if run_dir is not None:
        launch = Launch.before(run_dir)
        lock_run_dir(run_dir)  # held through the Hydra task, which runs in this process
        check_run_dir(run_dir, typed[-1].resume)  # a run that ended while we checked
    swept = {o.get_key_element().lstrip("+~") for o in parsed if o.is_sweep_override()}
    return Checked(swept, launch)


def checked_config(cfg: DictConfig) -> RunConfig:
    """The typed config of a job Hydra started: the pre-flight's, else typed and checked now
    (when the pre-flight did not run, e.g. with --config-dir)."""
    typed = _CHECKED.get(content_key(cfg))
    if typed is None:
        typed = typed_config(cfg)
        validate(typed)
    return typed
