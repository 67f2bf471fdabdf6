"""What every study's jobs share: the `seeds=N` argument and the child process of a run."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from kdlab.errors import KdlabError


def split_study_args(args: Sequence[str]) -> tuple[int, list[str]]:
    """`seeds=N` belongs to the study; every other key=value goes to every run."""
    seeds, rest = 1, []
    for arg in args:
        if arg.startswith("seeds="):
            value = arg.removeprefix("seeds=")
            if not value.isdigit() or int(value) < 1:
                raise KdlabError(f"seeds must be a positive integer, got '{value}' (seeds=3)")
            seeds = int(value)
        else:
            rest.append(arg)
    return seeds, rest


def job_command(command: str, args: Sequence[str], run_dir: Path) -> list[str]:
    """The child process of one study run, resumed where a stopped one left off."""
    resume = ["resume=true"] if (run_dir / "checkpoints" / "last.pt").is_file() else []
    return [sys.executable, "-m", "kdlab", command, *args, *resume, f"hydra.run.dir={run_dir}"]
