"""Shared helpers: run the real `kdlab` CLI in a subprocess on tiny generated data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Small enough for seconds on 2 CPU cores, big enough for every split to have full batches.
TINY = [
    "data=synthetic",
    "data.train_size=320",
    "data.test_size=100",
    "data.val_split=0.2",
    "trainer.batch_size=32",
    "trainer.eval_batch_size=100",
    "trainer.epochs=2",
    "trainer.log_every=2",
]


def run_kdlab(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m kdlab ARGS` in `cwd`, as a user would run it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    env.pop("KDLAB_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "kdlab", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture
def kdlab(tmp_path):
    """Call the CLI from a fresh working directory; asserts nothing by itself."""

    def call(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return run_kdlab(*args, cwd=tmp_path, timeout=timeout)

    return call
