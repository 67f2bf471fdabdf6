"""The catalogue of bad input (catalogue.py), end to end: each case is the real CLI in a
subprocess, one line on stderr, exit code 2, nothing of a finished run overwritten and no
run dir left behind (a failure before the first epoch removes what the command created).
Its own file, so the test runner can run it beside the kill/resume tests of
test_reliability.py."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest

from catalogue import CATALOGUE, RELIABILITY_TESTS, run_bad_input, with_metrics
from harness import FOLDER_RUN, Workspace, build_workspace, run_kdlab
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
    untouched = tmp_path.stat().st_mtime_ns  # a run dir made and removed in it changes it
    proc = run_bad_input(case, workspace, tmp_path / "run")
    assert_one_line_error(proc, *case.fragments)
    assert not (tmp_path / "run").exists(), "a failure before training left its run dir"
    assert files_under(workspace.teacher) == before, "the finished run's files were changed"
    if case.preflight:
        assert tmp_path.stat().st_mtime_ns == untouched, "the run dir was made, then removed"


def test_a_teacher_of_other_classes_leaves_a_users_run_dir_as_it_was(workspace, tmp_path):
    """The pre-flight refuses the teacher before Hydra writes into the user's own
    hydra.run.dir: no .hydra/, no log, no lock, not even a changed modification time."""
    mine = tmp_path / "mine"
    (mine / "notes").mkdir(parents=True)
    (mine / "notes" / "plan.txt").write_text("the user's own file\n")
    before, mtimes = files_under(mine), [mine.stat().st_mtime_ns, tmp_path.stat().st_mtime_ns]
    proc = run_kdlab(
        "distill",
        *FOLDER_RUN,
        f"data.root={workspace.ab}",
        f"teacher.ckpt={workspace.teacher}",
        f"hydra.run.dir={mine}",
        cwd=workspace.root,
    )
    assert_one_line_error(proc, "predicts 3 classes, the data has 2")
    assert files_under(mine) == before and sorted(os.listdir(mine)) == ["notes"]
    assert [mine.stat().st_mtime_ns, tmp_path.stat().st_mtime_ns] == mtimes


def test_predict_shows_a_file_name_that_is_not_utf8_with_escapes(workspace, tmp_path):
    """Linux file names are bytes: legitimate input, printed and written as \\xNN escapes
    (stdout here is strict UTF-8, as under PYTHONIOENCODING=utf-8:strict)."""
    image = Path(os.fsdecode(os.fsencode(tmp_path) + b"/img\xfe.png"))
    shutil.copy(workspace.abc / "test" / "a" / "0.png", image)
    shown = f"{tmp_path}/img\\xfe.png"
    printed = run_kdlab("predict", str(workspace.teacher), str(image), cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.startswith(f"{shown}  ")
    csv = tmp_path / "top.csv"
    written = run_kdlab(
        "predict", str(workspace.teacher), str(image), "--csv", str(csv), cwd=tmp_path
    )
    assert written.returncode == 0, written.stderr
    assert csv.read_text(encoding="utf-8").splitlines()[1].startswith(f"{shown},1,")


def test_a_torn_last_metrics_line_is_reported_past_with_a_warning(workspace, tmp_path, caplog):
    """A kill mid-write leaves a torn last line: the report's curves skip it and say so."""
    run = with_metrics(workspace, "torn_last_metrics", last='{"epoch": 2, "train/lo')
    with caplog.at_level(logging.WARNING, logger="kdlab"):
        proc = run_kdlab("report", str(run), "--curves", f"--out={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"{run / 'metrics.jsonl'}: skipped its last line 2, cut short" in caplog.text
    assert (tmp_path / "curves_acc.png").is_file()


def test_each_job_of_a_sweep_has_its_teacher_checked_before_the_sweep_dir(workspace, tmp_path):
    """A sweep whose second job's teacher predicts other classes refuses before its first job
    trains: no sweep dir, no job's dir."""
    teachers = f"teacher.ckpt={workspace.two_class_teacher},{workspace.teacher}"
    sweep = tmp_path / "sweep"
    proc = run_kdlab(
        "distill",
        "-m",
        *FOLDER_RUN,
        f"data.root={workspace.ab}",
        teachers,
        f"hydra.sweep.dir={sweep}",
        cwd=workspace.root,
    )
    assert_one_line_error(
        proc, f"teacher {workspace.teacher / 'checkpoints' / 'best.pt'} predicts 3"
    )
    assert not sweep.exists() and os.listdir(tmp_path) == []
