"""`kdlab study` end to end: every run of a note's study, then its report and figures."""

from __future__ import annotations

import csv

import pytest

from harness import TINY, read_summary
from test_cli import assert_one_line_error

PNG = b"\x89PNG\r\n\x1a\n"
# A study of five runs: one batch of 64 training images each, one epoch.
STUDY = [*(a for a in TINY if not a.startswith(("data.train_size", "trainer.epochs"))),
         "data.train_size=64", "trainer.epochs=1"]  # fmt: skip


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from conftest import run_kdlab

    cwd = tmp_path_factory.mktemp("study")
    out = cwd / "note1"
    proc = run_kdlab(
        "study",
        "note1",
        *STUDY,
        "seeds=2",
        "--out",
        str(out),
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    return out, proc


def test_every_run_of_the_study_finished(study):
    out, _ = study
    expected = ["baseline/seed0", "baseline/seed1", "kd/seed0", "kd/seed1", "teacher"]
    assert sorted(str(p.parent.relative_to(out)) for p in out.rglob("summary.json")) == expected
    assert read_summary(out / "kd" / "seed1")["teacher"]["ckpt"].startswith(str(out / "teacher"))
    assert read_summary(out / "kd" / "seed1")["seed"] == 1


def test_the_report_table_holds_the_runs_numbers(study):
    out, proc = study
    with (out / "report.csv").open() as f:
        rows = list(csv.DictReader(f))
    by_name = {row["run"]: row for row in rows}
    teacher = read_summary(out / "teacher")
    row = next(r for name, r in by_name.items() if name.startswith("teacher"))
    assert float(row["test_acc"]) == pytest.approx(teacher["test_acc"], abs=0.01)
    kd = [read_summary(out / "kd" / f"seed{s}")["test_acc"] for s in (0, 1)]
    pooled = next(r for name, r in by_name.items() if name.startswith("kd"))
    assert float(pooled["test_acc"]) == pytest.approx(sum(kd) / 2, abs=0.01)
    assert "baseline" in proc.stdout and "Δ" in proc.stdout
    last = [read_summary(out / "kd" / f"seed{s}")["last_test_acc"] for s in (0, 1)]
    assert float(pooled["last_test_acc"]) == pytest.approx(sum(last) / 2, abs=0.01)
    assert "test@last" in proc.stdout and "train img/s" in proc.stdout


def test_the_study_writes_its_figures(study):
    out, _ = study
    for name in ("curves_loss.png", "curves_acc.png", "curves_loss_parts.png", "per_class.png"):
        assert (out / name).read_bytes()[:8] == PNG, name
    assert (out / "report.md").read_text().count("|") > 10


def test_rerunning_a_finished_study_keeps_every_run(study):
    from conftest import run_kdlab

    out, _ = study
    before = (out / "teacher" / "checkpoints" / "best.pt").read_bytes()
    proc = run_kdlab("study", "note1", *STUDY, "seeds=2", "--out", str(out), cwd=out.parent)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("finished already, kept") == 5
    assert (out / "teacher" / "checkpoints" / "best.pt").read_bytes() == before


def test_unknown_study_and_bad_overrides_fail_before_running(kdlab, tmp_path):
    assert_one_line_error(kdlab("study", "note9"), "unknown study 'note9'", "note1", "note2")
    for options_first in (False, True):
        out = ["--out", str(tmp_path / "s")]
        overrides = ["seeds=2", "trainer.epochs=0"]
        args = [*out, *overrides] if options_first else [*overrides, *out]
        proc = kdlab("study", "note1", *args)
        assert_one_line_error(proc, "trainer.epochs must be positive")
        assert not (tmp_path / "s").exists()


def test_a_plan_adds_a_runs_preset_args_only_under_that_preset(tmp_path):
    from kdlab.cli.commands.study import load_study, planned_jobs, with_preset

    _, runs = load_study("note1")
    for data, teacher_epochs in (("fashion_mnist", ["trainer.epochs=20"]), ("synthetic", [])):
        shared = with_preset([f"data={data}"])
        jobs = {job.sub: job.args for job in planned_jobs(runs, shared, 1, tmp_path, None)}
        assert [a for a in jobs["teacher"] if a.startswith("trainer.epochs")] == teacher_epochs
        assert not [a for a in jobs["kd"] if a.startswith("trainer.epochs")]
