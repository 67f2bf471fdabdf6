"""What a failed command leaves behind: nothing when it failed before its first epoch ended,
else its run dir with a summary.json marked failed (so `kdlab report` lists it as failed).

Hydra creates the run dir (its `.hydra/` record and the log) before the task starts, so a
run that fails on what only its task can read (a data set's files, a teacher file that differs
from its record; the pre-flight refuses the rest before Hydra starts) would leave an empty dir
per try. Only what
this command created is removed: in a dir that existed before (a user's own dir) the run
entries it added (record, log, lock, metrics, events; never, say, a data set it downloaded
there), never one that was there, nor a parent that existed.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from kdlab.engine.distributed import is_main
from kdlab.engine.run_logger import write_json_atomic
from kdlab.paths import deepest_existing, is_run_output, remove_new_dir
from kdlab.runs.run_dir import release_run_dir

SUMMARY = "summary.json"


@dataclass(frozen=True)
class Launch:
    """Looked up before anything is written: the run dir, the deepest existing dir at or
    above it, and the names the run dir held then (if it existed)."""

    run_dir: Path  # as resolved then (a default `${now:...}` dir may differ by a second)
    existing: Path
    present: frozenset[str] = frozenset()

    @classmethod
    def before(cls, run_dir: Path) -> Launch:
        run_dir = run_dir.absolute()
        existing = deepest_existing(run_dir)
        present = frozenset(os.listdir(run_dir)) if existing == run_dir else frozenset()
        return cls(run_dir, existing, present)


def error_line(error: BaseException) -> str:
    """The one line a user reads: a KdlabError's message, else the exception's type too."""
    from kdlab.errors import KdlabError

    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return text if isinstance(error, KdlabError) else f"{type(error).__name__}: {text}".rstrip(": ")


def _trained(run_dir: Path) -> bool:
    """Whether an epoch ended here: a checkpoint, or an epoch's line in metrics.jsonl (the
    logger creates the file empty when training is set up)."""
    metrics = run_dir / "metrics.jsonl"
    return (run_dir / "checkpoints").exists() or (metrics.is_file() and metrics.stat().st_size > 0)


def discard_untrained(run_dir: Path, launch: Launch) -> None:
    """After a failure before the first epoch ended: remove what this command created."""
    if is_main() and run_dir.is_dir() and not _trained(run_dir):
        remove_created(run_dir.absolute(), launch)


def remove_created(run_dir: Path, launch: Launch) -> None:
    """What this command created: the run dir and each parent that became empty, up to the
    dir that existed before; in a dir that existed, only the run entries it did not hold."""
    release_run_dir(run_dir)
    if launch.existing == run_dir:  # a run's own entries: never e.g. a data set it fetched
        for name in {n for n in os.listdir(run_dir) if is_run_output(n)} - launch.present:
            entry = run_dir / name
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        return
    remove_new_dir(run_dir, launch.existing)


def failed_summary(cfg: Any, run_dir: Path, error: BaseException) -> dict[str, Any]:
    """summary.json of a run that failed during training: what it was and why it stopped."""
    from kdlab.version import __version__

    return {
        "status": "failed",
        "error": error_line(error),
        "command": OmegaConf.select(cfg, "command"),
        "model": OmegaConf.select(cfg, "model.arch"),
        "data": OmegaConf.select(cfg, "data.name"),
        "seed": OmegaConf.select(cfg, "seed"),
        "run_dir": str(run_dir),
        "kdlab_version": __version__,
    }


def _finished(run_dir: Path) -> bool:
    """Whether the dir holds the summary of a finished run (a failed one is rewritten)."""
    try:
        return json.loads((run_dir / SUMMARY).read_text()).get("status") != "failed"
    except (OSError, ValueError, AttributeError):
        return (run_dir / SUMMARY).exists()


def record_failure(cfg: Any, run_dir: Path, launch: Launch | None, error: BaseException) -> None:
    """Remove what a run that failed before its first epoch ended created, or mark the run
    failed in its dir."""
    if not is_main() or not run_dir.is_dir() or _finished(run_dir):
        return
    if not _trained(run_dir):
        if launch is not None:
            discard_untrained(run_dir, launch)
        return
    summary = failed_summary(cfg, run_dir, error)
    write_json_atomic(summary, run_dir / SUMMARY)
