"""Finding finished runs on disk: run dirs, sweep dirs, or any dir holding them.

A run counts once it has written summary.json; everything the report shows comes from the
run dirs alone, so it works long after the runs ended (and after a failed sweep).
"""

from __future__ import annotations

import glob
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from kdlab.engine.run_logger import read_metrics
from kdlab.errors import KdlabError
from kdlab.report.mlflow_runs import is_mlflow_ref, mlflow_runs

SUMMARY = "summary.json"
# The figures of summary.json the report computes with: numbers (or null), nothing else.
NUMERIC = (
    "params",
    "weights_mb",
    "macs",
    "epochs",
    "best_epoch",
    "train_acc",
    "val_acc",
    "test_acc",
    "test_acc5",
    "test_loss",
    "last_train_acc",
    "last_val_acc",
    "last_test_acc",
    "wall_time_s",
    "train_images_per_s",
)
SWEEP_MARKER = "multirun.yaml"
DEFAULT_SEARCH = "outputs"
LISTED = 20  # the most run labels an error lists (it says how many it left out)


@dataclass(frozen=True)
class Run:
    """One finished run: its dir (which identifies it), its name (the dir relative to the
    dir holding all the runs: unique), its summary.json, and the short label that tables and
    figures show (seeds of one config share it; see report.labels)."""

    path: Path
    name: str = field(compare=False)
    summary: dict[str, Any] = field(compare=False, repr=False)
    label: str = field(default="", compare=False)
    # The epoch records of a run read from a tracker (kdlab report mlflow:), not metrics.jsonl
    history: tuple[dict[str, Any], ...] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.name)

    def get(self, key: str) -> Any:
        return self.summary.get(key)

    @property
    def sweep_dir(self) -> Path | None:
        """The Hydra sweep dir this run is a job of, if any."""
        return self.path.parent if (self.path.parent / SWEEP_MARKER).is_file() else None

    def metrics(self) -> list[dict[str, Any]]:
        """The per-epoch records of metrics.jsonl (empty if the run has none)."""
        if self.history is not None:
            return list(self.history)
        return read_metrics(self.path / "metrics.jsonl")

    def best_record(self) -> dict[str, Any] | None:
        """The epoch record of the selected checkpoint (best_epoch) from metrics.jsonl."""
        best = self.get("best_epoch")
        return next((r for r in reversed(self.metrics()) if r.get("epoch") == best), None)


def natural_key(text: str) -> list[Any]:
    """Sort `10_x` after `9_x`: digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def display_path(path: Path) -> str:
    """A path relative to the working directory when it lies below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def read_summary(path: Path) -> dict[str, Any]:
    try:
        summary = json.loads((path / SUMMARY).read_text())
    except (OSError, ValueError) as error:  # ValueError: not UTF-8, or not JSON
        raise KdlabError(
            f"cannot read {display_path(path / SUMMARY)} ({error}): fix or delete that run dir"
        ) from error
    if not isinstance(summary, dict):
        raise KdlabError(f"{display_path(path / SUMMARY)} is not a JSON object: fix or delete it")
    for key in NUMERIC:
        value = summary.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise KdlabError(
                f"{display_path(path / SUMMARY)} has {key}={json.dumps(value)}, not a number: "
                "fix or delete that run dir"
            )
    return summary


def common_parent(dirs: Iterable[Path]) -> Path:
    """The deepest dir holding all `dirs` (each run is named relative to it); cwd if none."""
    parent = Path(os.path.commonpath([str(d.parent) for d in dirs]))
    return Path.cwd() if parent == Path(parent.anchor) else parent


def _expand(item: str | Path) -> list[Path]:
    pattern = os.path.expanduser(str(item))
    if glob.has_magic(pattern):
        return [Path(p) for p in sorted(glob.glob(pattern, recursive=True), key=natural_key)]
    return [Path(pattern)] if os.path.exists(pattern) else []


def _run_dirs_in(path: Path) -> list[Path]:
    """`path` itself if it is a run dir, else every run dir below it."""
    if path.name == SUMMARY:
        return [path.parent]
    if (path / SUMMARY).is_file():
        return [path]
    if not path.is_dir():
        return []
    found = [p.parent for p in path.rglob(SUMMARY)]
    return sorted(found, key=lambda d: natural_key(str(d)))


def find_runs(paths_or_globs: Sequence[str | Path] = (DEFAULT_SEARCH,)) -> list[Run]:
    """Every finished run in the given run dirs, sweep dirs, globs or dirs searched below,
    and in the MLflow experiments named `mlflow:EXPERIMENT`."""
    tracked = [item for item in paths_or_globs if is_mlflow_ref(item)]
    paths_or_globs = [item for item in paths_or_globs if not is_mlflow_ref(item)]
    from_mlflow = [
        Run(path, name, summary, history=tuple(records))
        for ref in tracked
        for path, name, summary, records in mlflow_runs(str(ref))
    ]
    if not paths_or_globs:
        return from_mlflow
    dirs: dict[Path, None] = {}  # ordered and without duplicates
    for item in paths_or_globs:
        matches = _expand(item)
        if not matches:
            raise KdlabError(
                f"'{item}' matches no file or dir: give run dirs, sweep dirs or globs "
                f"(default {DEFAULT_SEARCH}/)"
            )
        for match in matches:
            dirs.update(dict.fromkeys(d.resolve() for d in _run_dirs_in(match)))
    if not dirs:
        searched = ", ".join(str(item) for item in paths_or_globs)
        raise KdlabError(
            f"no finished runs in {searched} (no {SUMMARY} below it): run kdlab train|distill|"
            "fitnet first, or pass the dirs that hold the runs"
        )
    parent = common_parent(dirs)
    return [Run(d, str(d.relative_to(parent)), read_summary(d)) for d in dirs] + from_mlflow


def resolve_run(ref: str, runs: Sequence[Run], likely: Sequence[Run] = ()) -> Run:
    """A run by its label (the first seed of a pooled one), its name or the end of its name,
    or any run dir on disk; if none or several match, the error lists them (or all runs),
    the `likely` ones and the closest label first."""
    path = Path(ref).expanduser()
    if (path / SUMMARY).is_file():
        resolved = path.resolve()
        known = [run for run in runs if run.path == resolved]
        return known[0] if known else Run(resolved, ref.rstrip("/"), read_summary(resolved))
    exact = [run for run in runs if run.name == ref]
    labelled = [run for run in runs if run.label == ref][:1]  # seeds of one config share it
    matches = exact or labelled or [run for run in runs if run.name.endswith(f"/{ref}")]
    if len(matches) == 1:
        return matches[0]
    if matches:
        names = ", ".join(f"'{run.name}'" for run in matches)
        raise KdlabError(f"'{ref}' is ambiguous: give a run dir or one of: {names}")
    labels = list(dict.fromkeys(run.label for run in runs))
    guesses = [*get_close_matches(ref, labels, n=1), *dict.fromkeys(run.label for run in likely)]
    guess = f"did you mean '{guesses[0]}'? " if guesses else ""
    shown = list(dict.fromkeys([*guesses, *labels]))
    listed = ", ".join(f"'{label}'" for label in shown[:LISTED])
    left_out = len(shown) - LISTED
    more = f" and {left_out} more (`kdlab report RUNS` lists all)" if left_out > 0 else ""
    raise KdlabError(
        f"'{ref}' is neither a run dir nor a run's label or name: {guess}"
        f"give a run dir or one of {len(shown)} runs: {listed}{more}"
    )
