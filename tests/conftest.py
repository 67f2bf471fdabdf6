"""Fixtures shared by the test files: the CLI in a fresh working directory; the worker's share of
the CPU cores for torch."""

from __future__ import annotations

import os
import subprocess

import pytest
import torch

from harness import THREADS, TINY, read_summary, run_kdlab
from kdlab.runs.config import register_configs

# The in-process tensors of every test, as the commands', and every interpreter a test starts
# (a resumed run must run with the thread count of the run it is compared with, bit for bit).
torch.set_num_threads(THREADS)
os.environ["OMP_NUM_THREADS"] = str(THREADS)
# The built-in schemas in Hydra's ConfigStore once, as a process running several commands (a
# sweep, a study's launcher worker) holds them: each in-process command puts the store's
# groups back as it found them (harness.restored_hydra), dropping only a plugin's options.
register_configs()

# The methods' tests import these from here; the others from harness.
__all__ = ["TINY", "kdlab", "read_summary", "run_kdlab"]


@pytest.fixture
def kdlab(tmp_path):
    """Call the CLI from a fresh working directory; asserts nothing by itself."""

    def call(*args: str, fresh_process: bool = False) -> subprocess.CompletedProcess:
        return run_kdlab(*args, cwd=tmp_path, fresh_process=fresh_process)

    return call
