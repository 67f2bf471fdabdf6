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

# The longest test files (seconds each took alone on the 2-core CI kind, December 2026),
# longest first. pytest-xdist hands the files to its two workers in collection order, so
# these go first and the short files fill in at the end: both workers then finish together
# (by test count, xdist's own order, the four-test launcher file came last: ~40 s of one idle
# worker). The other files follow in name order; a stale list costs speed, never a result.
LONGEST_FIRST = (
    "test_reliability.py",  # 123 s
    "test_distill_e2e.py",  # 71
    "test_methods_e2e.py",  # 56
    "test_launchers.py",  # 55
    "test_distributed.py",  # 49
    "test_api.py",  # 45
    "test_method_registry.py",  # 45
    "test_study_e2e.py",  # 30
    "test_pretrained.py",  # 29
    "test_bad_input.py",  # 26
    "test_grid_e2e.py",  # 24
    "test_logit_cache.py",  # 24
    "test_cli.py",  # 19
    "test_train_e2e.py",  # 16
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files of LONGEST_FIRST first, in its order (a stable sort: each file's own order
    and the other files' are kept)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


# The methods' tests import these from here; the others from harness.
__all__ = ["TINY", "kdlab", "read_summary", "run_kdlab"]


@pytest.fixture
def kdlab(tmp_path):
    """Call the CLI from a fresh working directory; asserts nothing by itself."""

    def call(*args: str, fresh_process: bool = False) -> subprocess.CompletedProcess:
        return run_kdlab(*args, cwd=tmp_path, fresh_process=fresh_process)

    return call
