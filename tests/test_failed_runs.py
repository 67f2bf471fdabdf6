"""What a failed command leaves: no dir when it failed before training, else a dir marked
failed that `kdlab report` lists as failed."""

from __future__ import annotations

import os

from harness import BLOW_UP, FAST, read_summary
from test_cli import assert_one_line_error


def test_failures_before_training_leave_no_run_dir(kdlab, tmp_path):
    no_teacher = kdlab("distill", *FAST)
    no_cifar = kdlab("train", "model=cnn_student", "data.root=none", "data.download=false")
    assert_one_line_error(no_teacher, "no finished resnet_teacher teacher run")
    assert_one_line_error(no_cifar, "CIFAR-10 not found")
    assert not (tmp_path / "outputs").exists()


def test_a_dir_that_existed_before_is_never_removed(kdlab, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    empty = tmp_path / "empty"
    empty.mkdir()
    for run_dir in (mine, empty):
        assert_one_line_error(kdlab("distill", *FAST, f"hydra.run.dir={run_dir}"))
    assert (mine / "notes.txt").read_text() == "mine"
    assert sorted(os.listdir(mine)) == ["notes.txt"], "its .hydra/, log or lock was left"
    assert empty.is_dir() and os.listdir(empty) == []


def test_a_run_failing_during_training_is_marked_failed_and_reported(kdlab, tmp_path):
    run = tmp_path / "outputs" / "blown"
    args = [*FAST, *BLOW_UP, "sched.milestones=[0.5]", f"hydra.run.dir={run}"]
    assert_one_line_error(kdlab("train", *args), "non-finite")
    summary = read_summary(run)
    assert summary["status"] == "failed" and "non-finite" in summary["error"]
    assert (summary["command"], summary["model"]) == ("train", "resnet8")
    ok = tmp_path / "outputs" / "ok"
    assert kdlab("train", *FAST, "trainer.epochs=1", f"hydra.run.dir={ok}").returncode == 0
    assert read_summary(ok)["status"] == "finished"
    report = kdlab("report")
    assert report.returncode == 0, report.stderr
    assert "failed run blown (train resnet8): loss became non-finite" in report.stdout
    table = report.stdout.split("== ", 1)[1]
    assert "ok " in table and "blown" not in table
