"""Shared helpers: run the real `kdlab` CLI in a subprocess on tiny generated data."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

from catalogue import TINY, run_kdlab

# The tiny settings and the CLI runner live in catalogue (the bad-input catalogue uses
# them too); re-exported here for the test files.
__all__ = ["TINY", "kdlab", "read_summary", "run_kdlab"]


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture
def kdlab(tmp_path):
    """Call the CLI from a fresh working directory; asserts nothing by itself."""

    def call(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return run_kdlab(*args, cwd=tmp_path, timeout=timeout)

    return call


@pytest.fixture(scope="module")
def one_thread():
    """In-process forward passes on shared CPU cores: one thread avoids oversubscription."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
