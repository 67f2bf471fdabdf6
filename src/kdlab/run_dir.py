"""Guards of a run dir: never train over a finished or started run unless resuming it.

Used twice on purpose: by the CLI's pre-flight (before Hydra writes its record into the dir)
and by the session when the run starts. Imports no engine, so the pre-flight stays cheap.
"""

from __future__ import annotations

import errno
import logging
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kdlab.checkpoint import Checkpoint, remove_stale_temp_files
from kdlab.config import RunConfig
from kdlab.errors import KdlabError

log = logging.getLogger("kdlab")

# What a resumed run rebuilds from its config before loading its state into it.
REBUILT_ON_RESUME = ("command", "model", "data.name", "optim.name", "stage2", "fitnet.regressor")


def check_run_dir(run_dir: Path, resume: bool) -> None:
    """A new run needs a dir without a run in it; a resumed one needs its last.pt."""
    last = run_dir / "checkpoints" / "last.pt"
    if resume and not last.is_file():
        raise KdlabError(
            f"resume=true but {last} does not exist: point hydra.run.dir= at the run to resume "
            "(a run stopped before its first epoch ended: drop resume=true to start it again)"
        )
    if not resume and (last.is_file() or (run_dir / "summary.json").is_file()):
        raise KdlabError(
            f"{run_dir} already holds a run: add resume=true to continue it, or pick another "
            "hydra.run.dir"
        )


def select(tree: dict[str, Any], dotted: str) -> Any:
    """`tree["a"]["b"]` for "a.b"; None where a part is missing."""
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def check_run_dir_early(run_dir: Path, cfg: RunConfig) -> None:
    """The run dir checks, before Hydra writes its record (.hydra/) into the dir; a resumed
    run must rebuild what it saved (else loading its state fails with a traceback)."""
    check_run_dir(run_dir, cfg.resume)
    if not cfg.resume:
        return
    saved = Checkpoint.read(run_dir / "checkpoints" / "last.pt").config
    ours_tree = asdict(cfg)
    for key in REBUILT_ON_RESUME:
        ours, theirs = select(ours_tree, key), select(saved, key)
        if ours != theirs:
            raise KdlabError(
                f"resume=true but {key} is {ours}, the run in {run_dir} has "
                f"{theirs}: resume with the run's own settings (.hydra/overrides.yaml)"
            )


def guard_run_dir(run_dir: Path, resume: bool) -> Checkpoint | None:
    """Check the run dir, clear what killed checkpoint writes left; return the state to resume.

    The temp files of writes a kill cut short are removed before training goes on.
    """
    check_run_dir(run_dir, resume)
    checkpoints = run_dir / "checkpoints"
    for stale in remove_stale_temp_files(checkpoints):
        log.info("removed %s, a checkpoint write the last run did not finish", stale.name)
    return Checkpoint.read(checkpoints / "last.pt") if resume else None


def check_writable(directory: Path, key: str) -> None:
    """Fail in one line before Hydra creates `directory` (and crashes) if it cannot be written.

    Probes the nearest existing ancestor with a real file, not permission bits, which do not
    stop root (a read-only file system or a regular file in the path does).
    """
    try:
        existing = directory.absolute()
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{existing} is a file")
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as error:
        raise KdlabError(
            f"cannot write to {directory} ({error.strerror}): pick another {key}"
        ) from error
