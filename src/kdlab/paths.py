"""kdlab's files: where its Hydra configs are, which files are a run's records, and writing
any file safely.

Every file kdlab writes goes through `write_atomic`: a kill or a full disk leaves the old file
or the new one, never a torn one. A path a user names for an output (`--out`, `--csv`) is
checked first by `check_output`: a run's own records are refused (a run dir is what every
later command reads), and any other existing file is replaced only with `--force`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from kdlab.errors import KdlabError

# In a run dir: flock-ed by the one process writing the run (kdlab.runs.run_dir), holds its pid.
RUN_LOCK = ".kdlab.lock"


def config_dir() -> Path:
    """The `conf/` directory: shipped inside the wheel, or the checkout's top-level one."""
    packaged = Path(__file__).parent / "conf"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "conf"
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"kdlab's configs are missing: looked in {packaged} and {checkout}")


TEMP_SUFFIX = ".tmp"  # `.<name>.<random>.tmp`: a write in progress, or one a kill cut short

# What a run writes in its dir (besides checkpoints/ and .hydra/, see `run_record`).
RUN_FILES = ("summary.json", "metrics.jsonl", "confusion.csv", "confusion.png", RUN_LOCK)
RUN_FILE_PREFIXES = ("events.out.tfevents.",)  # TensorBoard's event files
RUN_FILE_SUFFIXES = (".log",)  # Hydra's job log
EXPORT_CHECKPOINT_SUFFIX = ".torchscript.pt"  # an export's name, not one of the run's checkpoints


# What a full disk, a quota or a file-size limit raise: the place is fine, the space is not.
NO_SPACE = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


def write_atomic(
    path: Path, write: Callable[[BinaryIO], None], option: str = "hydra.run.dir"
) -> None:
    """Write to a temp file in the same directory, fsync, then rename over `path`.

    A kill at any moment leaves either the old file or the new one, never a torn one; a
    failed write (disk full) removes its temp file and the dirs it made, keeps the old file
    and is a KdlabError naming `option`, the setting that picks another place.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
    existing = deepest_existing(path.parent.absolute())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("xb") as f:  # mode 0o666 less the umask, like any file the user writes
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(OSError):  # none made, or its dir is not one
            tmp.unlink()
        if existing != path.parent.absolute() and path.parent.is_dir():
            remove_new_dir(path.parent.absolute(), existing)
        cause = _os_error(error)
        if cause is None:
            raise
        fix = "free some disk space or pick" if cause.errno in NO_SPACE else "pick"
        raise KdlabError(
            f"cannot write {path} ({cause.strerror}): {fix} another {option} (nothing was "
            "overwritten)"
        ) from error
    _fsync_dir(path.parent)


def write_text_atomic(path: Path, text: str, option: str = "hydra.run.dir") -> None:
    write_atomic(path, lambda f: f.write(text.encode()), option)


def _os_error(error: BaseException) -> OSError | None:
    """The OS error behind a failed write; torch.save reports it as its RuntimeError's context."""
    for candidate in (error, error.__context__):
        if isinstance(candidate, OSError):
            return candidate
    return None


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable."""
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def is_run_dir(directory: Path) -> bool:
    """A dir a kdlab run wrote: it holds a summary, checkpoints or Hydra's record."""
    return (
        (directory / "summary.json").is_file()
        or (directory / "checkpoints").is_dir()
        or (directory / ".hydra").is_dir()
    )


def _is_checkpoint_name(name: str) -> bool:
    """last.pt, best.pt, <stage>.pt and their records (best.pt.json); not an export's name."""
    stem = name.removesuffix(".json")
    return stem.endswith(".pt") and not stem.endswith(EXPORT_CHECKPOINT_SUFFIX)


def is_run_output(name: str) -> bool:
    """Whether `name`, in a run dir, is one of the entries a run writes there."""
    return (
        name in (*RUN_FILES, ".hydra", "checkpoints")
        or name.startswith(RUN_FILE_PREFIXES)
        or name.endswith(RUN_FILE_SUFFIXES)
    )


def run_record(path: Path) -> Path | None:
    """The run dir whose records `path` names (None: it names none).

    A run's records are what the run wrote: its summary, metrics, log, event files, confusion
    matrix, lock, anything under .hydra/, and its checkpoints and their records (exports
    written beside them are not records).
    """
    path = path.expanduser().absolute()
    parent, name = path.parent, path.name
    if is_run_dir(parent) and is_run_output(name):
        return parent
    if parent.name == ".hydra" and is_run_dir(parent.parent):
        return parent.parent
    in_checkpoints = parent.name == "checkpoints" and is_run_dir(parent.parent)
    if in_checkpoints and (_is_checkpoint_name(name) or name.endswith(TEMP_SUFFIX)):
        return parent.parent
    return None


def checkpoint_in(path: str | Path) -> Path:
    """A checkpoint file as given, or a run dir's selected checkpoint (best.pt)."""
    path = Path(path).expanduser()
    if path.is_dir():
        return path / "checkpoints" / "best.pt"
    return path


def found_checkpoint(path: str | Path) -> Path:
    """The checkpoint file `checkpoint_in(path)`, which must exist (one line naming the fix)."""
    file = checkpoint_in(path)
    if not file.is_file():
        raise KdlabError(f"checkpoint not found: {file} (give a .pt file or a run dir)")
    return file


def selected_checkpoint(path: str | Path) -> Path:
    """The checkpoint file of a run dir (best.pt) or a .pt file, with a one-line error for a
    path that does not exist or a run that has not finished an epoch yet."""
    given = Path(path).expanduser()
    if not given.exists():
        raise KdlabError(
            f"no run dir or checkpoint at {given}: give a run dir (with checkpoints/best.pt) "
            "or a .pt file"
        )
    file = checkpoint_in(given)
    if given.is_dir() and not file.is_file():
        raise KdlabError(
            f"{given} has no finished checkpoint (no checkpoints/best.pt, written when a run's "
            "first epoch ends): give a run dir that trained an epoch, or a .pt file"
        )
    return file.resolve()


def sidecar_of(out: Path) -> Path:
    """The JSON written beside an exported file: its metadata and the check's result."""
    return out.with_name(out.name + ".json")


def check_output_dir(directory: Path, option: str) -> None:
    """A dir a command writes its files into (a report's, a study's): not a file, and not
    among a run's records (its checkpoints/ or .hydra/)."""
    run_dir = run_record(directory)
    if run_dir is not None:
        raise KdlabError(
            f"{option} {directory} holds the records of the run in {run_dir}: kdlab never "
            f"writes among them; pick another {option}"
        )
    if directory.exists() and not directory.is_dir():
        raise KdlabError(f"{option} {directory} is a file: give a dir, new or one of kdlab's")


def check_output(path: Path, *, force: bool, option: str) -> None:
    """Refuse an output path that names a run's records (always) or an existing file (unless
    `force`): a command writes over nothing it did not create for this output."""
    run_dir = run_record(path)
    if run_dir is not None:
        raise KdlabError(
            f"{option} {path} is one of the records of the run in {run_dir}: kdlab never "
            f"writes over them; pick another {option} (e.g. outside the run dir)"
        )
    if path.is_dir():
        raise KdlabError(f"{option} {path} is a directory: give a file name")
    above = deepest_existing(path.parent.absolute())
    if not above.is_dir():
        raise KdlabError(f"{option} {path} lies under {above}, a file: pick another {option}")
    if path.exists() and not force:
        raise KdlabError(
            f"{option} {path} exists: add --force to replace it, or pick another {option}"
        )


def deepest_existing(path: Path) -> Path:
    """`path` or its nearest ancestor that exists (what a command found before it wrote)."""
    return next(p for p in (path, *path.parents) if p.exists())


def remove_new_dir(directory: Path, existing: Path) -> None:
    """A dir a failed command created (with what it wrote there), and each parent that became
    empty, up to `existing`, the deepest dir that was there before (never removed)."""
    shutil.rmtree(directory)
    if existing not in directory.parents:
        return
    for parent in directory.parents:
        if parent == existing or any(parent.iterdir()):
            return
        parent.rmdir()


def shown_path(path: Path | str) -> str:
    """A path as UTF-8 text: bytes of a name that are not UTF-8 (Linux allows any) as \\xNN
    escapes, so printing it or writing it into a UTF-8 file cannot fail."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")
