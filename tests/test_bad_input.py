"""The catalogue of bad input (catalogue.py), end to end: each case is the real CLI in a
subprocess, one line on stderr, exit code 2, nothing of a finished run overwritten and no
run dir left behind (a failure before the first epoch removes what the command created).
Its own file, so the test runner can run it beside the kill/resume tests of
test_reliability.py."""

from __future__ import annotations

import pytest

from catalogue import CATALOGUE, RELIABILITY_TESTS, run_bad_input
from harness import Workspace, build_workspace
from test_cli import assert_one_line_error
from test_reliability import files_under


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    return build_workspace(tmp_path_factory.mktemp("workspace"))


@pytest.mark.parametrize(
    "case",
    [c for c in CATALOGUE if c.tested_in == RELIABILITY_TESTS],
    ids=lambda c: c.shown.strip("`"),
)
def test_bad_input_is_one_line_exit_2_and_overwrites_nothing(workspace, tmp_path, case):
    before = files_under(workspace.teacher)
    proc = run_bad_input(case, workspace, tmp_path / "run")
    assert_one_line_error(proc, *case.fragments)
    assert not (tmp_path / "run").exists(), "a failure before training left its run dir"
    assert files_under(workspace.teacher) == before, "the finished run's files were changed"
