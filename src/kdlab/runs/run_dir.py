"""Guards of a run dir: never train over a finished or started run unless resuming it, never
resume it with other settings, and never let two processes write one run.

Used twice on purpose: by the CLI's pre-flight (before Hydra writes its record into the dir)
and by the session when the run starts. Imports no engine, so the pre-flight stays cheap.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kdlab.engine.checkpoint import Checkpoint, checkpoint_in, remove_stale_temp_files
from kdlab.engine.distributed import is_main
from kdlab.engine.provenance import HASH_SHOWN, sha256_file
from kdlab.engine.run_logger import read_metrics
from kdlab.errors import KdlabError
from kdlab.paths import RUN_LOCK
from kdlab.runs.schema import RunConfig

log = logging.getLogger("kdlab")


# The settings a resumed run may change: where and how it runs and reports, not what it
# trains. Every other key of the resolved config must equal the run's (Checkpoint.config).
# trainer.epochs may only grow: the lr schedule is a function of the step and the total
# steps (optim.lr_factor), not stored, so an extended run continues at its step on the
# schedule of the new total (cosine: the curve of the longer run, so the lr rises again
# to where that curve is at this step; multistep: milestones at fractions of the new total).
MAY_CHANGE_ON_RESUME = (
    "resume",
    "debug",
    "trainer.epochs",  # extend only (see above)
    "trainer.device",
    "trainer.eval_batch_size",
    "trainer.log_every",
    "trainer.progress",
    "trainer.num_threads",
    "data.root",  # the same data set, moved
    "data.num_workers",
    "data.in_memory_max_mb",
    "teacher.cache",  # the cache is exact: the same logits either way
    "teacher.cache_dir",
    "teacher.allow_modified",  # a permission, not a setting: the pin below still holds
    "logger",  # the trackers (and their settings): every logger.* key
)
# How a run finds its teacher: free on resume once its checkpoints pin the teacher by its
# sha256 (Checkpoint.teacher), which a resume then checks (kdlab.runs.teacher).
FOUND_BY = ("teacher.ckpt", "teacher.search_dir")
# Run dirs this process holds the lock of: path -> the open lock file (closing unlocks).
_HELD: dict[Path, int] = {}


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


def flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a.b": leaf} of a nested dict (lists are leaves)."""
    leaves: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            leaves.update(flat(value, f"{prefix}{key}."))
        else:
            leaves[f"{prefix}{key}"] = value
    return leaves


def shown(value: Any) -> str:
    return "null" if value is None else str(value)


def may_change(key: str, free: tuple[str, ...]) -> bool:
    """Whether a resume may change `key` (named in `free`, or below a name there)."""
    return any(key == k or key.startswith(f"{k}.") for k in free)


def changed_settings(
    ours: dict[str, Any], run: dict[str, Any], teacher_pinned: bool = False
) -> list[str]:
    """`key (ours vs theirs in the run)` for each setting a resume may not change; keys one
    side lacks (another kdlab version's) are not compared."""
    mine, theirs = flat(ours), flat(run)
    free = (*MAY_CHANGE_ON_RESUME, *(FOUND_BY if teacher_pinned else ()))
    changes = [
        f"{key} changed ({shown(mine[key])} vs {shown(theirs[key])} in the run)"
        for key in mine
        if key in theirs and not may_change(key, free) and mine[key] != theirs[key]
    ]
    epochs, run_epochs = select(ours, "trainer.epochs"), select(run, "trainer.epochs")
    if isinstance(run_epochs, int) and epochs < run_epochs:
        changes.append(f"trainer.epochs shrank ({epochs} vs {run_epochs} in the run)")
    if ours.get("command") == "fitnet" and isinstance(run_epochs, int):
        changes += fitnet_stage_change(ours, run_epochs)
    return changes


def fitnet_stage_change(ours: dict[str, Any], run_epochs: int) -> list[str]:
    """With fitnet.stage1_epochs=null the hint stage is an eighth of trainer.epochs: extending
    the run must not move the stage boundary the run already trained by."""
    if select(ours, "fitnet.stage1_epochs") is not None:
        return []
    epochs = select(ours, "trainer.epochs")
    if -(-epochs // 8) == -(-run_epochs // 8):
        return []
    return [f"the hint stage's length (fitnet.stage1_epochs=null: an eighth of {epochs} epochs)"]


def check_run_dir_early(run_dir: Path, cfg: RunConfig) -> list[Path] | None:
    """The run dir checks, before Hydra writes its record (.hydra/) into the dir; a resumed
    run must have the run's settings, but for MAY_CHANGE_ON_RESUME. Returns a resume's own
    teachers (empty: none pinned), None for a new run."""
    check_run_dir(run_dir, cfg.resume)
    if not cfg.resume:
        return None
    saved = Checkpoint.read(run_dir / "checkpoints" / "last.pt")
    read_metrics(run_dir / "metrics.jsonl")  # a damaged line is named before Hydra writes
    teacher = getattr(cfg, "teacher", None)
    pinned: list[Path] = []
    if saved.teacher and teacher is not None:
        pinned = pinned_teacher_paths(teacher.checkpoints(), saved.teacher)
    changes = changed_settings(asdict(cfg), saved.config, bool(saved.teacher))
    if changes:
        raise KdlabError(
            f"resume=true but {', '.join(changes)} in {run_dir}: resume with the run's own "
            f"settings ({run_dir / '.hydra' / 'overrides.yaml'}) or start a new run"
        )
    return pinned


def pinned_teacher_paths(ckpts: list[str], pin: dict[str, Any]) -> list[Path]:
    """A resumed run's own teachers, in order, each as `pinned_teacher_path` finds it: the
    pin is one teacher's {"path", "sha256"} or several's {"teachers": [...]} (Teachers.pin)."""
    pinned = pin.get("teachers") or [pin]
    if ckpts and len(ckpts) != len(pinned):
        raise KdlabError(
            f"resume=true but teacher.ckpt names {len(ckpts)} teacher(s), this run started with "
            f"{len(pinned)}: resume with the run's own teachers, or start a new run"
        )
    given: list[str | None] = list(ckpts) or [None] * len(pinned)
    return [pinned_teacher_path(c, p) for c, p in zip(given, pinned, strict=True)]


def pinned_teacher_path(ckpt: str | None, pin: dict[str, Any]) -> Path:
    """A resumed run's own teacher: the file it started with (or `ckpt`, teacher.ckpt given
    now, relative or not), refused unless its bytes are those the run started with."""
    pinned, sha256 = Path(pin["path"]), str(pin["sha256"])
    path = checkpoint_in(Path(ckpt).expanduser().resolve()) if ckpt else pinned
    if not path.is_file():
        raise KdlabError(
            f"resume=true but the teacher this run started with, {path}, is gone: restore it "
            f"(sha256 {sha256[:HASH_SHOWN]}) to resume, or start a new run"
        )
    now = sha256_file(path)
    if now != sha256:
        raise KdlabError(
            f"resume=true but teacher {path} is not the one this run started with (sha256 "
            f"{sha256[:HASH_SHOWN]} then, {now[:HASH_SHOWN]} now): restore {pinned} to resume, "
            "or start a new run"
        )
    return path


def lock_run_dir(run_dir: Path, create: bool = True) -> None:
    """Hold the run dir for this process's life: a second run into it fails in one line.

    An flock, which the kernel drops when the process ends however it ends, so a killed run
    leaves no stale lock. Only rank 0 writes, so only rank 0 locks; again in one process it
    only records the pid. With `create=False` a dir without a lock file is left untouched
    (the pre-flight's first look, before the dir is checked) and nothing is written.
    """
    key, path = run_dir.absolute(), run_dir.absolute() / RUN_LOCK
    if not is_main() or (not create and not path.is_file()):
        return
    if key not in _HELD:
        key.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise KdlabError(
                f"{run_dir} is in use by another kdlab run (pid {holder}): wait for it to end, "
                "or pick another hydra.run.dir"
            ) from None
        _HELD[key] = fd
    if create:
        os.ftruncate(_HELD[key], 0)
        os.pwrite(_HELD[key], f"{os.getpid()}\n".encode(), 0)


def release_run_dir(run_dir: Path) -> None:
    """Let go of the run dir's lock (before what this process created there is removed)."""
    fd = _HELD.pop(run_dir.absolute(), None)
    if fd is not None:
        os.close(fd)


def guard_run_dir(run_dir: Path, resume: bool) -> Checkpoint | None:
    """Check the run dir, clear what killed checkpoint writes left; return the state to resume.

    The temp files of writes a kill cut short are removed before training goes on; the dir is
    locked first (the pre-flight already did for a hydra.run.dir=, not for a sweep's jobs).
    """
    lock_run_dir(run_dir)
    check_run_dir(run_dir, resume)
    checkpoints = run_dir / "checkpoints"
    for stale in remove_stale_temp_files(checkpoints):
        log.info("removed %s, a checkpoint write the last run did not finish", stale.name)
    return Checkpoint.read(checkpoints / "last.pt") if resume else None


def raise_symlink_loop(path: Path) -> None:
    """ELOOP, where `path` goes through a symlink loop (Path.exists() just says False)."""
    try:
        os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise


def check_writable(directory: Path, key: str) -> None:
    """Fail in one line before Hydra creates `directory` (and crashes) if it cannot be written.

    Probes the nearest existing ancestor with a real file, not permission bits, which do not
    stop root (a read-only file system or a regular file in the path does).
    """
    try:
        existing = directory.absolute()
        while not existing.exists():
            raise_symlink_loop(existing)
            existing = existing.parent
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{existing} is a file")
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as error:
        raise KdlabError(
            f"cannot write to {directory} ({error.strerror}): pick another {key}"
        ) from error
