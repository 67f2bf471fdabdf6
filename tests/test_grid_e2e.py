"""`kdlab study cifar100` end to end at a tiny budget: the synthetic data set (two tiny models,
three methods), then the dry run of the whole grid and one published cell on a generated
CIFAR-100 archive."""

from __future__ import annotations

import csv
import json
import re

import pytest

from harness import TINY, read_summary, run_kdlab
from kdlab.data.cifar_archive import write_cifar100
from kdlab.engine.provenance import HASH_SHOWN, sha256_file
from test_cli import assert_one_line_error

ONE_EPOCH = [*[a for a in TINY if not a.startswith("trainer.epochs")], "trainer.epochs=1"]
RUNS = ["baseline/resnet8/seed0", "resnet8-resnet8/at/seed0", "resnet8-resnet8/kd/seed0",
        "teacher/resnet8"]  # fmt: skip


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("grid")
    out = cwd / "grid"
    args = ["study", "cifar100", "pairs=resnet8-resnet8", "methods=baseline,kd,at", *ONE_EPOCH]
    proc = run_kdlab(*args, "--out", str(out), cwd=cwd)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    return out, proc, args


def test_every_run_of_the_grid_finished_with_both_epochs_tested(grid):
    out, _, _ = grid
    assert sorted(str(p.parent.relative_to(out)) for p in out.rglob("summary.json")) == RUNS
    kd = read_summary(out / "resnet8-resnet8/kd/seed0")
    assert kd["teacher"]["ckpt"] == str(out / "teacher/resnet8/checkpoints/best.pt")
    assert kd["loss_name"] == "kd" and kd["T"] == 4 and kd["alpha"] == 0.1
    assert kd["epochs"] == 1 and kd["last_test_acc"] == kd["test_acc"]  # one epoch: the same
    overrides = set(kd["overrides"])
    assert {"sched=multistep", "optim.nesterov=false", "data=synthetic"} <= overrides


def test_the_teacher_is_named_by_the_hash_of_its_checkpoint(grid):
    out, proc, _ = grid
    best = out / "teacher/resnet8/checkpoints/best.pt"
    record = json.loads(best.with_name("best.pt.json").read_text())
    assert record["sha256"] == sha256_file(best)
    assert record["test_acc"] == read_summary(out / "teacher/resnet8")["test_acc"]
    assert record["config"]["model"]["arch"] == "resnet8"
    assert "model=resnet8" in record["overrides"]
    short = record["sha256"][:HASH_SHOWN]
    kd = read_summary(out / "resnet8-resnet8/kd/seed0")["teacher"]
    assert kd["sha256"] == record["sha256"] and kd["intact"] is True
    logged = proc.stdout + proc.stderr
    assert f"teacher record: sha256 {short} (the file matches its record)" in logged
    report = (out / "grid.md").read_text()
    assert f"- teacher resnet8: sha256 {short} (the file matches its record)" in report


def test_the_report_holds_each_cells_runs(grid):
    out, proc, _ = grid
    with (out / "grid.csv").open() as f:
        rows = {row["method"]: row for row in csv.DictReader(f)}
    assert list(rows) == ["baseline", "kd", "at"]
    at = read_summary(out / "resnet8-resnet8/at/seed0")
    assert float(rows["at"]["best_mean"]) == pytest.approx(at["test_acc"], abs=1e-3)
    assert float(rows["at"]["last_mean"]) == pytest.approx(at["last_test_acc"], abs=1e-3)
    assert rows["kd"]["published"] == "" and rows["kd"]["delta"] == ""  # synthetic: none
    assert (out / "grid_delta.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| resnet8-resnet8 | kd | 1 |" in proc.stdout


def test_rerunning_the_grid_keeps_every_run(grid):
    out, _, args = grid
    before = (out / "teacher/resnet8/checkpoints/best.pt").read_bytes()
    proc = run_kdlab(*args, "--out", str(out), cwd=out.parent)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("finished already, kept") == 4
    assert (out / "teacher/resnet8/checkpoints/best.pt").read_bytes() == before


def test_the_whole_grid_plans_on_cifar100_and_a_cell_meets_its_published_figure(tmp_path):
    write_cifar100(tmp_path / "data", train=400)
    data = [
        "data.root=data",
        "data.verify_md5=false",
        "data.val_split=0.25",
        "data.train_size=100",
        "trainer.epochs=1",
    ]
    out = tmp_path / "grid"
    dry = run_kdlab("study", "cifar100", "--dry-run", *data, "--out", str(out), cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "CIFAR-100 grid: 208 cells, 1 seed(s)" in dry.stdout
    teacher = r"\nnew +1\.0 +0\.00\d  teacher/resnet32x4: kdlab train optim.lr=0.05"
    assert re.search(teacher, dry.stdout)
    assert "resnet56-resnet20/dkd/seed0: kdlab distill optim.lr=0.05 model=resnet20" in dry.stdout
    assert "loss=dkd loss.beta=2 teacher.ckpt=teacher/resnet56" in dry.stdout
    assert "student-epoch equivalents" in dry.stdout and not out.exists()
    args = ["study", "cifar100", "pairs=resnet56-resnet20", "methods=kd", *data]
    proc = run_kdlab(*args, "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    logged = proc.stdout + proc.stderr
    assert "below the published 72.34% for resnet56 on cifar100" in logged  # after 1 epoch
    with (out / "grid.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    kd = read_summary(out / "resnet56-resnet20/kd/seed0")
    assert (row["published"], row["protocol"]) == ("70.6600", "last")
    assert float(row["delta"]) == pytest.approx(kd["last_test_acc"] - 70.66, abs=1e-3)


def test_bad_grid_options_fail_before_running(kdlab, tmp_path):
    out = ["--out", str(tmp_path / "g")]
    assert_one_line_error(kdlab("study", "cifar100", "pairs=nosuch", *out), "pairs: 'nosuch'")
    assert_one_line_error(kdlab("study", "cifar100", "methods=kd,xx", *out), "unknown method 'xx'")
    assert_one_line_error(kdlab("study", "cifar100", "seed=3", *out), "set by the grid per run")
    proc = kdlab("study", "cifar100", "pairs=resnet8-resnet8", "trainer.epochs=0", *out)
    assert_one_line_error(proc, "trainer.epochs must be positive")
    assert not (tmp_path / "g").exists()
