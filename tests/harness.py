"""The CLI test harness: the real `kdlab` in a subprocess on tiny generated data.

The tiny settings (TINY, FAST, FOLDER_RUN), the runner (`run_kdlab`, `succeeded`), one-epoch
runs to resume, and the `Workspace` the bad-input catalogue (catalogue.py) refers to: image
folders (kdlab's own tiny-copy writer), a finished teacher run, damaged and crafted
checkpoints, built by really running kdlab once.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from kdlab.data.imagefolder import write_image_folder

# Small enough for seconds on 2 CPU cores, big enough for every split to have full batches.
TINY = [
    "data=synthetic",
    "data.train_size=320",
    "data.test_size=100",
    "data.val_split=0.01",  # of the full 10,000 synthetic train images: 100 val images
    "trainer.batch_size=32",
    "trainer.eval_batch_size=100",
    "trainer.epochs=2",
    "trainer.log_every=2",
]
FAST = ["model=cnn_student", *TINY, "trainer.deterministic=true"]
# From the milestone on, the lr is multiplied by 1e30: the weights blow up at that step.
BLOW_UP = ["sched=multistep", "sched.gamma=1e30"]
FOLDER_RUN = [
    "data=imagefolder",
    "data.image_size=16",
    "data.val_split=0",
    "trainer.batch_size=4",
    "trainer.epochs=1",
    "model=resnet8",
]


def run_kdlab(
    *args: str, cwd: Path, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`python -m kdlab ARGS` in `cwd`, as a user would run it (`env`: extra variables)."""
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0", **(env or {})}
    environment.pop("KDLAB_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "kdlab", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def succeeded(proc: subprocess.CompletedProcess) -> None:
    """A set-up run must succeed: anything else is a bug, shown with kdlab's stderr."""
    if proc.returncode != 0:
        command = " ".join(proc.args[3:])
        raise RuntimeError(f"kdlab {command} exited {proc.returncode}: {proc.stderr}")


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def train_one_epoch(cwd: Path) -> Path:
    """A finished 1-epoch run of FAST in cwd/run."""
    proc = run_kdlab("train", *FAST, "trainer.epochs=1", "hydra.run.dir=run", cwd=cwd)
    succeeded(proc)
    return cwd / "run"


def resume_one_more_epoch(
    run: Path, file_size_limit: int | None = None
) -> subprocess.CompletedProcess:
    """Continue a 1-epoch run for a second epoch, optionally under RLIMIT_FSIZE."""

    def limit_file_size() -> None:
        # Python ignores SIGXFSZ, so a write past the limit fails with EFBIG (an OSError).
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run(
        [sys.executable, "-m", "kdlab", "train", *FAST, "resume=true", f"hydra.run.dir={run}"],
        cwd=run.parent,
        capture_output=True,
        text=True,
        preexec_fn=limit_file_size if file_size_limit else None,
    )


class RunsCode:
    """Unpickling this runs a shell command: what a crafted checkpoint would do to its user."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return (os.system, (self.command,))


@dataclass(frozen=True)
class Workspace:
    """What the bad inputs refer to, built once in `root` (every run's working dir)."""

    root: Path
    abc: Path  # image folder, classes a, b, c
    ab: Path  # classes a, b
    abd: Path  # classes a, b, d
    broken: Path  # classes a, b; one train "image" is not one
    empty: Path  # an existing, empty directory
    teacher: Path  # a finished resnet8 run on `abc`
    truncated: Path  # the first KiB of the teacher's checkpoint
    crafted: Path  # a "checkpoint" whose unpickling would create root/MARKER
    regular_file: Path
    one_class: Path  # an image folder of class a only
    bad_summary: Path  # a run dir whose summary.json has test_acc "high"


def build_workspace(root: Path) -> Workspace:
    """The files every bad input refers to, and the finished teacher run (one tiny training)."""
    ws = Workspace(
        root=root,
        abc=write_image_folder(root / "abc", ("a", "b", "c")),
        ab=write_image_folder(root / "ab", ("a", "b")),
        abd=write_image_folder(root / "abd", ("a", "b", "d")),
        broken=write_image_folder(root / "broken", ("a", "b")),
        empty=root / "empty",
        teacher=root / "teacher",
        truncated=root / "truncated.pt",
        crafted=root / "crafted.pt",
        regular_file=root / "a_file",
        one_class=write_image_folder(root / "one_class", ("a",)),
        bad_summary=root / "bad_summary",
    )
    ws.bad_summary.mkdir()
    (ws.bad_summary / "summary.json").write_text('{"command": "train", "test_acc": "high"}\n')
    torch.save({"model": RunsCode(f"touch {root / 'MARKER'}"), "config": {}}, ws.crafted)
    (ws.broken / "train" / "b" / "5.png").write_bytes(b"not a png")
    ws.empty.mkdir()
    ws.regular_file.write_text("not a directory\n")
    proc = run_kdlab(
        "train", *FOLDER_RUN, f"data.root={ws.abc}", f"hydra.run.dir={ws.teacher}", cwd=root
    )
    succeeded(proc)
    ws.truncated.write_bytes((ws.teacher / "checkpoints" / "best.pt").read_bytes()[:1024])
    return ws
