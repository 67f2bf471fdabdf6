"""Short run labels for tables and legends: `teacher`, `kd`, not `train/2026-12-01/09-39-04`.

A run's label is what `--label NAME=RUN` gives it, else the part of its name after the
last Hydra timestamp dir, without a trailing `seedN` dir (a study's `kd/seed1` is `kd`),
else `model (command)`. Seeds of one config share their label; a default label that two
configs would share falls back to the runs' full names.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from kdlab.errors import KdlabError
from kdlab.report.groups import config_key
from kdlab.report.runs import Run, resolve_run

# Hydra's dirs: 2026-12-01, 09-39-04(-402685), a study's 2026-12-01_09-39-04.
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}|^\d{2}-\d{2}-\d{2}")
SEED_DIR = re.compile(r"^seed\d+$")


def default_label(run: Run) -> str:
    """The run's name after its last timestamp dir, less a `seedN` leaf."""
    parts = list(Path(run.name).parts)
    stamps = [i for i, part in enumerate(parts) if TIMESTAMP.match(part)]
    if stamps:
        parts = parts[stamps[-1] + 1 :]
    if len(parts) > 1 and SEED_DIR.match(parts[-1]):
        parts.pop()
    return "/".join(parts) or f"{run.get('model')} ({run.get('command')})"


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
    return [
        dataclasses.replace(run, label=run.name)
        if chosen[run.path] in mixed and run.path not in explicit
        else dataclasses.replace(run, label=chosen[run.path])
        for run in runs
    ]
