"""What a failed command leaves behind: nothing when it failed before training started, else
its run dir with a summary.json marked failed (so `kdlab report` lists it as failed).

Hydra creates the run dir (its `.hydra/` record and the log) before the task starts, so a
run that fails on a missing teacher or data set would leave an empty dir per try. Only what
this run created is removed: never a dir that existed before Hydra started (a resumed run,
a user's dir), nor a parent that did.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from kdlab.engine.distributed import is_main
from kdlab.engine.run_logger import write_json_atomic
from kdlab.paths import RUN_LOCK

SUMMARY = "summary.json"


@dataclass(frozen=True)
class Launch:
    """The deepest existing dir at or above the run dir, looked up before Hydra started."""

    existing: Path

    @classmethod
    def before(cls, run_dir: Path) -> Launch:
        run_dir = run_dir.absolute()
        return cls(next(p for p in (run_dir, *run_dir.parents) if p.exists()))


def error_line(error: BaseException) -> str:
    """The one line a user reads: a KdlabError's message, else the exception's type too."""
    from kdlab.errors import KdlabError

    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return text if isinstance(error, KdlabError) else f"{type(error).__name__}: {text}".rstrip(": ")


def _only_hydras_record(run_dir: Path, command: str) -> bool:
    return {p.name for p in run_dir.iterdir()} <= {".hydra", f"{command}.log", RUN_LOCK}


def _trained(run_dir: Path) -> bool:
    """Whether a run wrote its own output here (its logger opens when training is set up)."""
    outputs = ("checkpoints", "metrics.jsonl")
    return any((run_dir / name).exists() for name in outputs) or any(
        run_dir.glob("events.out.tfevents.*")
    )


def _remove_created(run_dir: Path, launch: Launch) -> None:
    """The run dir, then each parent that became empty, up to the dir that existed before."""
    shutil.rmtree(run_dir)
    if launch.existing not in run_dir.parents:
        return
    for parent in run_dir.parents:
        if parent == launch.existing or any(parent.iterdir()):
            return
        parent.rmdir()


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
    """Remove the dir of a run that failed before training, or mark the run failed in it."""
    if not is_main() or not run_dir.is_dir() or _finished(run_dir):
        return
    if not _trained(run_dir):
        created = launch is not None and launch.existing != run_dir.absolute()
        if created and _only_hydras_record(run_dir, str(OmegaConf.select(cfg, "command"))):
            _remove_created(run_dir.absolute(), launch)
        return
    summary = failed_summary(cfg, run_dir, error)
    write_json_atomic(summary, run_dir / SUMMARY)
