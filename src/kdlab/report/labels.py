"""Short run labels for tables and legends: `teacher`, `kd`, not `train/2026-12-01/09-39-04`.

A run's label is what `--label NAME=RUN` gives it, else the part of its name after the
last Hydra timestamp dir, without a trailing `seedN` dir (a study's `kd/seed1` is `kd`),
else (a run in a default dir, `outputs/fitnet/2026-12-06/03-17-39`) what the run is, from
its summary.json: `fitnet stage2=frozen`, `distill loss=dkd T=2`. Seeds of one config share
their label; a default label that two configs would share gets the settings that tell them
apart: `kd (data=cifar10)`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from kdlab.errors import KdlabError
from kdlab.report.groups import IGNORED_KEYS, config_key, override_items
from kdlab.report.runs import Run, resolve_run

# Hydra's dirs: 2026-12-01, 09-39-04(-402685), a study's 2026-12-01_09-39-04.
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}|^\d{2}-\d{2}-\d{2}")
SEED_DIR = re.compile(r"^seed\d+$")
# Per command, the summary.json field that says which variant ran, as its override key.
VARIANT = {
    "train": ("model", "model"),
    "distill": ("loss", "loss_name"),
    "fitnet": ("stage2", "stage2"),
}
# Override keys that say where or how a run ran, not what it is (data has its own sections).
UNDESCRIBED = IGNORED_KEYS | {"data", "teacher.ckpt"}


def settings(run: Run) -> dict[str, str]:
    """Every setting that makes the run's config (config_key): command, model, data, and
    the overrides that change what is trained."""
    items = {"command": str(run.get("command")), "model": str(run.get("model"))}
    items["data"] = str(run.get("data"))
    overrides = override_items(run.get("overrides") or [])
    return items | {k: v for k, v in overrides.items() if k not in IGNORED_KEYS}


def described(run: Run) -> str:
    """What the run is, as it was asked for: the command, its variant (the model trained,
    the loss distilled with, FitNets' stage two), then the overrides (`distill loss=dkd T=2`)."""
    command = str(run.get("command"))
    items: dict[str, str] = {}
    if command in VARIANT:
        key, field = VARIANT[command]
        items[key] = str(run.get(field))
    overrides = override_items(run.get("overrides") or [])
    items |= {
        k: v for k, v in overrides.items() if k not in UNDESCRIBED and not k.startswith("hydra.")
    }
    return " ".join([command, *(f"{k}={v}" for k, v in items.items())])


def default_label(run: Run) -> str:
    """The run's name after its last timestamp dir, less a `seedN` leaf; what the run is if
    that leaves nothing (a run in a default dir)."""
    parts = list(Path(run.name).parts)
    stamps = [i for i, part in enumerate(parts) if TIMESTAMP.match(part)]
    if stamps:
        parts = parts[stamps[-1] + 1 :]
    if len(parts) > 1 and SEED_DIR.match(parts[-1]):
        parts.pop()
    return "/".join(parts) or described(run)


def parse_label(text: str) -> tuple[str, str]:
    """`NAME=RUN` (RUN may hold `=`, as sweep job dirs do) -> (RUN, NAME)."""
    name, sep, ref = text.partition("=")
    if not sep or not name or not ref:
        raise KdlabError(f"--label takes NAME=RUN (e.g. --label kd=outputs/study/kd), got '{text}'")
    return ref, name


def _labelled_by(ref: str, runs: Sequence[Run]) -> list[Run]:
    """The runs a `--label` names: a run dir or a dir above runs (all below it), or a name."""
    path = Path(ref).expanduser().resolve()
    below = [run for run in runs if run.path == path or path in run.path.parents]
    if below:
        return below
    run = resolve_run(ref, runs)
    if run not in runs:
        raise KdlabError(f"--label names {ref}, which is not a reported run: add it to RUNS")
    return [run]


def _mixed(runs: Sequence[Run], labels: Mapping[Path, str]) -> set[str]:
    """The labels that runs of two configs or more would share."""
    configs: dict[str, set[tuple[object, ...]]] = {}
    for run in runs:
        configs.setdefault(labels[run.path], set()).add(config_key(run))
    return {label for label, keys in configs.items() if len(keys) > 1}


def disambiguated(label: str, run: Run, sharing: Sequence[Run]) -> str:
    """`label (key=value, ...)`: the run's settings that differ among the runs `sharing` the
    label (runs of other configs: some setting differs)."""
    items = [settings(other) for other in sharing]
    keys = dict.fromkeys(key for item in items for key in item)
    differing = [key for key in keys if len({item.get(key) for item in items}) > 1]
    own = settings(run)
    return f"{label} ({', '.join(f'{k}={own[k]}' for k in differing if k in own)})"


def label_runs(runs: Sequence[Run], labels: Mapping[str, str] | None = None) -> list[Run]:
    """`runs` with their labels set; `labels` maps a RUN (run dir, dir above runs, or run
    name) to the label of every run it names."""
    explicit: dict[Path, str] = {}
    for ref, name in (labels or {}).items():
        explicit.update(dict.fromkeys((run.path for run in _labelled_by(ref, runs)), name))
    mixed = _mixed([run for run in runs if run.path in explicit], explicit)
    if mixed:
        raise KdlabError(
            f"--label {min(mixed)} names runs of different configs: give each its own label"
        )
    chosen = {run.path: explicit.get(run.path) or default_label(run) for run in runs}
    mixed = _mixed(runs, chosen)
    sharing = {label: [run for run in runs if chosen[run.path] == label] for label in mixed}
    for run in runs:
        label = chosen[run.path]
        if label in mixed and run.path not in explicit:
            chosen[run.path] = disambiguated(label, run, sharing[label])
    return [dataclasses.replace(run, label=chosen[run.path]) for run in runs]
