"""Fixtures shared by the test files: the CLI in a fresh working directory, one CPU thread."""

from __future__ import annotations

import subprocess

import pytest
import torch

from harness import TINY, read_summary, run_kdlab

# The methods' tests import these from here; the others from harness.
__all__ = ["TINY", "kdlab", "read_summary", "run_kdlab"]


@pytest.fixture
def kdlab(tmp_path):
    """Call the CLI from a fresh working directory; asserts nothing by itself."""

    def call(*args: str, fresh_process: bool = False) -> subprocess.CompletedProcess:
        return run_kdlab(*args, cwd=tmp_path, fresh_process=fresh_process)

    return call


@pytest.fixture(scope="module")
def one_thread():
    """In-process forward passes on shared CPU cores: one thread avoids oversubscription."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
