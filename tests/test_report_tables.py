"""`kdlab report`'s comparison table: what a new user tripped on (issue "What a new user
trips on"): train figures of one epoch, the notes' row order and method names, a heading
of what was compared, short labels, Δ only within a data set, a sweep's swept columns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kdlab.cli.commands.report import main as report_main
from kdlab.errors import KdlabError
from kdlab.report.labels import label_runs
from kdlab.report.runs import find_runs
from test_report import make_run, make_study, read_csv


def best_record(run_dir: Path) -> dict[str, Any]:
    best = json.loads((run_dir / "summary.json").read_text())["best_epoch"]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return next(record for record in records if record["epoch"] == best)


def test_train_accuracy_and_losses_are_the_tested_epochs(tmp_path):
    """summary.json holds the best epoch's train acc but the last epoch's losses: the table
    shows both of the best (tested) epoch, and a cross-entropy comparable across runs."""
    runs = make_study(tmp_path)
    report_main([str(tmp_path), "--out", str(tmp_path)])
    rows = {row["run"]: row for row in read_csv(tmp_path / "report.csv")}
    for name, run_dir in runs.items():
        best, summary = best_record(run_dir), json.loads((run_dir / "summary.json").read_text())
        assert float(rows[name]["train_acc"]) == pytest.approx(best["train/acc"])
        assert float(rows[name]["train_loss"]) == pytest.approx(best["train/loss"])
        assert best["train/loss"] != pytest.approx(summary["loss"])  # the last epoch's
    student = best_record(runs["student"])
    assert float(rows["student"]["loss_soft"]) == pytest.approx(student["train/loss_soft"])
    assert float(rows["student"]["train_ce"]) == pytest.approx(student["train/loss_hard"])
    baseline = best_record(runs["baseline"])
    assert float(rows["baseline"]["train_ce"]) == pytest.approx(baseline["train/loss"])
    assert float(rows["student"]["train_loss"]) > 10 > float(rows["student"]["train_ce"])


def test_rows_in_the_notes_order_named_by_method_under_what_was_compared(tmp_path, capsys):
    make_study(tmp_path)  # by name: baseline, student, teacher
    report_main([str(tmp_path), "--out", str(tmp_path)])
    rows = read_csv(tmp_path / "report.csv")
    assert [(row["run"], row["method"]) for row in rows] == [
        ("teacher", "CE (teacher)"),
        ("baseline", "CE"),
        ("student", "KD (T=4, α=0.1)"),
    ]
    markdown = (tmp_path / "report.md").read_text()
    heading = markdown.split("## ")[0]
    for item in ("data: synthetic (10 classes)", "epochs: 4", "distillation: T=4, α=0.1"):
        assert f"- {item}\n" in heading
    assert "- seeds: 0\n" in heading and "- kdlab: 0.1.0" in heading
    assert "mean ± sample std" not in markdown  # no seeds were pooled
    assert "compared: data: synthetic (10 classes) | epochs: 4 |" in capsys.readouterr().out


def test_runs_are_labelled_by_their_dirs_not_timestamps(tmp_path, capsys):
    outputs = tmp_path / "outputs"
    teacher = make_run(outputs / "train/2026-12-01/09-39-04-402685", model="resnet_teacher")
    study = outputs / "study/note1/2026-12-01_10-00-00"
    for seed in (0, 1):
        make_run(study / f"baseline/seed{seed}", seed=seed)
    make_run(study / "kd/seed0", command="distill", teacher=teacher)
    report_main([str(outputs), "--out", str(tmp_path)])
    runs = [row["run"] for row in read_csv(tmp_path / "report.csv")]
    assert runs == ["train model=resnet_teacher", "baseline (seeds 0,1)", "kd"]
    labels = ["--label", f"teacher={teacher}", "--label", f"base={study}/baseline"]
    report_main([str(outputs), *labels])
    runs = [row["run"] for row in read_csv(outputs / "report.csv")]
    assert runs == ["teacher", "base (seeds 0,1)", "kd"]
    assert "2026" not in capsys.readouterr().out.split("wrote:")[0]
    with pytest.raises(KdlabError, match="--label takes NAME=RUN"):
        report_main([str(outputs), "--label", "teacher"])
    with pytest.raises(KdlabError, match="--label x names runs of different configs"):
        report_main([str(outputs), "--label", f"x={study}"])


def test_runs_in_default_dirs_are_labelled_by_what_they_are(tmp_path):
    """`outputs/COMMAND/DATE/TIME` says nothing: the label comes from summary.json (the
    command's variant, even when it was the default) and the overrides asked for."""
    stamp = iter(f"2026-12-06/03-17-{second:02d}-717589" for second in range(10))
    for stage2 in ("frozen", "finetune"):
        overrides = ["stage2=finetune"] if stage2 == "finetune" else []
        make_run(
            tmp_path / "fitnet" / next(stamp),
            command="fitnet",
            overrides=overrides,
            model="fitnet_student",
            stage2=stage2,
        )
    make_run(
        tmp_path / "distill" / next(stamp),
        command="distill",
        overrides=["loss=dkd", "T=2", "teacher.ckpt=/t/best.pt", "trainer.progress=false"],
        loss_name="dkd",
    )
    make_run(
        tmp_path / "train" / next(stamp), model="resnet_teacher", overrides=["model=resnet_teacher"]
    )
    for data in ("synthetic", "cifar10"):  # one label, two configs: told apart by the data
        make_run(tmp_path / "train" / next(stamp), data=data)
    labels = sorted(run.label for run in label_runs(find_runs([tmp_path])))
    assert labels == [
        "distill loss=dkd T=2",
        "fitnet stage2=finetune",
        "fitnet stage2=frozen",
        "train model=cnn_student (data=cifar10)",
        "train model=cnn_student (data=synthetic)",
        "train model=resnet_teacher",
    ]


def test_baseline_means_the_plain_run_of_the_students_model(tmp_path, capsys):
    """Outside a study no run is named `baseline`: the word means the plain cross-entropy
    run of the model that was distilled (not the teacher's, not another model's; `kdlab
    train` before `distill loss=ce`), as the README's first commands make them; a name
    that matches nothing gets every run listed, the likely baseline first."""
    stamp = iter(f"2026-12-06/03-17-{second:02d}" for second in range(9))
    teacher = make_run(tmp_path / "train" / next(stamp), model="resnet_teacher")
    make_run(tmp_path / "train" / next(stamp), model="fitnet_student", test_acc=90.0)
    make_run(tmp_path / "train" / next(stamp), test_acc=92.0)  # cnn_student: the baseline
    make_run(
        tmp_path / "distill" / next(stamp),
        command="distill",
        overrides=["loss=ce"],
        loss_name="ce",
        test_acc=91.0,
    )  # the same through distill: after `kdlab train`
    for seed, acc in ((0, 93.0), (1, 94.0)):
        make_run(
            tmp_path / "distill" / next(stamp),
            command="distill",
            seed=seed,
            overrides=["loss=kd"],
            loss_name="kd",
            test_acc=acc,
            teacher=teacher,
        )
    report_main([str(tmp_path), "--baseline", "baseline", "--out", str(tmp_path)])
    rows = {row["run"]: row for row in read_csv(tmp_path / "report.csv")}
    assert float(rows["distill loss=kd (seeds 0,1)"]["d_test_acc"]) == pytest.approx(1.5)
    assert float(rows["train model=cnn_student"]["d_test_acc"]) == 0
    assert "Δ = points against train model=cnn_student" in capsys.readouterr().out

    with pytest.raises(KdlabError) as error:
        report_main([str(tmp_path), "--baseline", "base"])
    message = str(error.value)
    assert "did you mean 'train model=cnn_student'?" in message
    assert "one of 5 runs: 'train model=cnn_student', " in message
    for label in rows:
        assert f"'{label.removesuffix(' (seeds 0,1)')}'" in message
    for num in range(25):  # more runs than an error lists: it says how many it left out
        make_run(tmp_path / "more" / f"run{num}")
    with pytest.raises(KdlabError, match=r"one of 30 runs: .* and 10 more \(`kdlab report"):
        report_main([str(tmp_path), "--baseline", "base"])


def test_delta_only_against_a_baseline_of_the_same_data_set(tmp_path, capsys):
    make_study(tmp_path / "synthetic")
    flowers = ["daisy", "rose", "tulip"]
    make_run(
        tmp_path / "flowers" / "cnn",
        data="imagefolder",
        classes=flowers,
        overrides=["data.root=/data/flowers"],
        weak="rose",
        test_acc=95.0,
    )
    report_main([str(tmp_path), "--baseline", "baseline", "--out", str(tmp_path)])
    rows = {row["run"]: row for row in read_csv(tmp_path / "report.csv")}
    cnn, student = rows["flowers/cnn"], rows["synthetic/student"]
    assert (cnn["data"], cnn["num_classes"]) == ("imagefolder:flowers", "3")
    assert cnn["d_test_acc"] == "" and cnn["d_val_acc"] == ""
    assert float(student["d_test_acc"]) == pytest.approx(93.05 - 92.29)
    assert cnn["section"] != student["section"]
    out = capsys.readouterr().out
    assert "== runs on imagefolder:flowers (3 classes) ==" in out
    assert (
        "no Δ: the baseline synthetic/baseline ran on synthetic (10 classes), not on "
        "imagefolder:flowers (3 classes)" in out
    )
    header = next(line for line in out.splitlines() if line.startswith("run "))
    assert " data " in header


def test_a_sweep_table_keeps_its_swept_columns(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("hydra:\n  mode: MULTIRUN\n")
    for num, (t, alpha) in enumerate([(1, 0.1), (4, 0.1), (1, 0.5), (4, 0.5)]):
        make_run(
            sweep / f"{num}_T={t},alpha={alpha}",
            command="distill",
            overrides=[f"T={t}", f"alpha={alpha}", "optim.lr=0.05"],
            T=float(t),
            alpha=alpha,
            val_acc=90.0 + num,
        )
    report_main([str(sweep), "--out", str(tmp_path)])
    out = capsys.readouterr().out
    lines = out.split(f"== sweep {sweep} on synthetic (10 classes) ==\n")[1].splitlines()
    assert lines[0].split()[:4] == ["run", "T", "alpha", "method"]
    assert lines[2].split()[:3] == ["1_T=4,alpha=0.1", "4", "0.1"]
    assert "shared by every job: optim.lr=0.05" in lines[5]
    rows = read_csv(tmp_path / "report.csv")
    assert [(row["T"], row["alpha"]) for row in rows] == [
        ("1", "0.1"),
        ("4", "0.1"),
        ("1", "0.5"),
        ("4", "0.5"),
    ]
    markdown = (tmp_path / "report.md").read_text()
    assert "| run | T | alpha | method |" in markdown
