"""`kdlab report` on run dirs written by hand: tables, seed pooling, sweeps, figures."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf
from PIL import Image

from kdlab.cli.commands.report import main as report_main
from kdlab.errors import KdlabError
from kdlab.report import (
    SweepSummary,
    aggregate_sweep,
    find_runs,
    plot_confusion,
    write_confusion_png,
)
from kdlab.report.curves import Curves

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def confusion_counts(accuracy: float, weak: str, classes: list[str] = CLASSES) -> list[list[int]]:
    """100 test images per class; `weak` is right 20 points less often than the others."""
    rows = []
    for i, name in enumerate(classes):
        hits = round(accuracy) - (20 if name == weak else 0)
        row = [0] * len(classes)
        row[i] = hits
        row[(i + 1) % len(classes)] = 100 - hits
        rows.append(row)
    return rows


def epoch_records(
    command: str, epochs: int, best_epoch: int, val_acc: float, T: float, alpha: float, plain: bool
) -> list[dict[str, Any]]:
    """metrics.jsonl as the engine writes it: a KD run's loss is its objective,
    (1-alpha)*T^2*soft + alpha*hard (~30), a plain run's the cross-entropy (~2); a FitNet
    run's first half is the hint stage (fit loss only, no accuracy)."""
    stage = {"train": "train", "distill": "distill"}.get(command, "stage2")
    records = []
    for epoch in range(1, epochs + 1):
        record: dict[str, Any] = {"epoch": epoch, "stage": stage, "lr": 0.1}
        if command == "fitnet" and epoch <= epochs // 2:
            record["stage"] = "stage1"
            for split, fit in (("train", 460.0 / epoch), ("val", 500.0 / epoch)):
                record[f"{split}/loss"] = record[f"{split}/loss_fit"] = fit
            records.append(record)
            continue
        val = val_acc - (0.2 if epoch > best_epoch else best_epoch - epoch)
        record.update({"train/acc": 60.0 + 8 * epoch, "val/acc": val})
        for split, hard, soft in (("train", 1.5 / epoch, 2.2 - epoch / 20), ("val", 1.6, 2.1)):
            if plain:
                record[f"{split}/loss"] = hard
                continue
            record[f"{split}/loss_hard"], record[f"{split}/loss_soft"] = hard, soft
            record[f"{split}/loss"] = (1 - alpha) * T * T * soft + alpha * hard
        records.append(record)
    return records


def make_run(
    run_dir: Path,
    command: str = "train",
    model: str = "cnn_student",
    seed: int = 0,
    overrides: list[str] | None = None,
    test_acc: float = 92.29,
    val_acc: float = 91.8,
    weak: str = "frog",
    epochs: int = 4,
    best_epoch: int = 3,
    teacher: Path | None = None,
    data: str = "synthetic",
    classes: list[str] = CLASSES,
    **extra: Any,
) -> Path:
    """A finished run dir as `kdlab train|distill|fitnet` leaves it: summary.json (train
    acc of the best epoch, losses of the last, as session.finish writes them),
    metrics.jsonl, confusion.csv."""
    run_dir.mkdir(parents=True)
    counts = confusion_counts(test_acc, weak, classes)
    params = {"cnn_student": 175_258, "resnet_teacher": 1_351_098, "fitnet_student": 306_122}
    T, alpha = extra.get("T", 4.0), extra.get("alpha", 0.1)
    plain = command == "train" or extra.get("loss_name") == "ce"
    records = epoch_records(command, epochs, best_epoch, val_acc, T, alpha, plain)
    best, last = records[best_epoch - 1], records[-1]
    summary = {
        "command": command,
        "model": model,
        "params": params[model],
        "data": data,
        "num_classes": len(classes),
        "seed": seed,
        "epochs": epochs,
        "best_epoch": best_epoch,
        "train_acc": best.get("train/acc"),
        "val_acc": val_acc,
        "test_acc": test_acc,
        "test_acc5": 99.1,
        "test_loss": 0.31,
        "last_train_acc": last.get("train/acc"),
        "last_val_acc": last.get("val/acc"),
        "wall_time_s": 754.2,
        "train_images_per_s": 5120.0,
        "overrides": [*(overrides or []), f"seed={seed}", f"data={data}"],
        "run_dir": str(run_dir),
        "kdlab_version": "0.1.0",
        "per_class_acc": {name: float(counts[i][i]) for i, name in enumerate(classes)},
    }
    summary |= {k.removeprefix("train/"): v for k, v in last.items() if k.startswith("train/loss")}
    if command == "distill":
        summary |= {"loss_name": "ce" if plain else "kd", "T": T, "alpha": alpha}
    if command == "fitnet":
        summary |= {"T": T, "alpha": alpha, "stage2": "frozen"}
        summary["loss_fit"] = records[epochs // 2 - 1]["train/loss_fit"]
    if teacher is not None:
        summary["teacher"] = {"ckpt": str(teacher / "checkpoints" / "best.pt"), "model": "x"}
    summary |= extra
    (run_dir / "summary.json").write_text(json.dumps(summary))
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    lines = [",".join(["true/pred", *classes])]
    lines += [",".join([name, *map(str, row)]) for name, row in zip(classes, counts, strict=True)]
    (run_dir / "confusion.csv").write_text("\n".join(lines) + "\n")
    return run_dir


def make_study(root: Path) -> dict[str, Path]:
    """Note 1's three runs: teacher, baseline and KD student."""
    return {
        "teacher": make_run(root / "teacher", model="resnet_teacher", test_acc=93.67, val_acc=93.1),
        "baseline": make_run(root / "baseline", test_acc=92.29, val_acc=91.8),
        "student": make_run(
            root / "student",
            command="distill",
            overrides=["T=4", "alpha=0.1"],
            test_acc=93.05,
            val_acc=92.4,
            weak="cat",
            teacher=root / "teacher",
        ),
    }


def make_sweep(root: Path) -> Path:
    """A distill sweep over T whose third job failed (no summary.json)."""
    sweep = root / "sweep"
    sweep.mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("hydra:\n  mode: MULTIRUN\n")
    for num, (t, val) in enumerate([(1, 90.5), (4, 92.4), (8, None), (2, 91.7)]):
        job = sweep / f"{num}_T={t},alpha=0.1"
        if val is None:
            (job / ".hydra").mkdir(parents=True)
            (job / ".hydra" / "overrides.yaml").write_text(f"- T={t}\n- alpha=0.1\n")
        else:
            make_run(
                job,
                command="distill",
                overrides=[f"T={t}", "alpha=0.1"],
                val_acc=val,
                test_acc=val + 0.5,
                loss_soft=0.3 + t / 100,  # summary.json's (the last epoch's), in the ledger
                T=float(t),
            )
    return sweep


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def assert_png(path: Path, min_side: int = 300) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.load()
        assert min(image.size) >= min_side, image.size


def test_report_numbers_are_the_summaries(tmp_path, capsys):
    runs = make_study(tmp_path / "outputs")
    report_main([str(tmp_path / "outputs"), "--out", str(tmp_path / "out")])
    rows = {row["run"]: row for row in read_csv(tmp_path / "out" / "report.csv")}
    assert set(rows) == set(runs)
    for name, run_dir in runs.items():
        summary = json.loads((run_dir / "summary.json").read_text())
        row = rows[name]
        for key in ("val_acc", "test_acc", "wall_time_s"):
            assert float(row[key]) == pytest.approx(summary[key])
        assert int(row["params"]) == summary["params"]
        assert row["best_epoch"] == str(summary["best_epoch"])
        assert (row["command"], row["model"]) == (summary["command"], summary["model"])
    assert rows["teacher"]["loss_soft"] == ""
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("run "))
    assert "soft" in header and "fit" not in header  # no run has a fit loss
    assert "1.35M" in out and "175K" in out and "93.67" in out
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "| teacher | CE (teacher) | synthetic | resnet_teacher | 1.35M |" in markdown


def test_seeds_are_pooled_into_mean_and_std(tmp_path):
    accs = [91.0, 92.0, 93.5]
    for seed, acc in enumerate(accs):
        make_run(tmp_path / f"baseline_s{seed}", seed=seed, test_acc=acc, val_acc=acc - 1)
    make_run(tmp_path / "other", overrides=["optim.lr=0.05"], test_acc=80.0)
    report_main([str(tmp_path), "--out", str(tmp_path)])
    rows = read_csv(tmp_path / "report.csv")
    assert len(rows) == 2
    pooled = next(row for row in rows if row["seeds"] == "0 1 2")
    assert pooled["run"] == "baseline_s0 (seeds 0,1,2)"
    assert float(pooled["test_acc"]) == pytest.approx(statistics.fmean(accs))
    assert float(pooled["test_acc_std"]) == pytest.approx(statistics.stdev(accs))
    assert float(pooled["val_acc"]) == pytest.approx(statistics.fmean(accs) - 1)
    single = next(row for row in rows if row["seeds"] == "0" and row is not pooled)
    assert single["test_acc_std"] == ""
    markdown = (tmp_path / "report.md").read_text()
    assert "92.17±1.26" in markdown and "a ± b = mean ± sample std over seeds" in markdown
    assert "- seeds: 0, 1, 2\n" in markdown


def test_delta_against_the_baseline(tmp_path, capsys):
    make_study(tmp_path)
    report_main([str(tmp_path), "--baseline", "baseline", "--sort", "test", "--out", str(tmp_path)])
    rows = read_csv(tmp_path / "report.csv")
    assert [row["run"] for row in rows] == ["teacher", "student", "baseline"]
    delta = {row["run"]: (float(row["d_val_acc"]), float(row["d_test_acc"])) for row in rows}
    assert delta["student"] == pytest.approx((92.4 - 91.8, 93.05 - 92.29))
    assert delta["baseline"] == (0.0, 0.0)
    out = capsys.readouterr().out
    assert "+0.76" in out and "Δ = points against baseline" in out


def test_sweep_summary_sorted_by_val_with_failed_job(tmp_path):
    sweep = make_sweep(tmp_path)
    rows = aggregate_sweep(sweep)
    assert [row["job"] for row in rows] == [
        "1_T=4,alpha=0.1",
        "3_T=2,alpha=0.1",
        "0_T=1,alpha=0.1",
        "2_T=8,alpha=0.1",
    ]
    assert [row["status"] for row in rows] == ["ok", "ok", "ok", "failed"]
    assert rows[-1]["T"] == "8" and rows[-1]["val_acc"] is None
    on_disk = read_csv(sweep / "summary.csv")
    assert [row["job"] for row in on_disk] == [row["job"] for row in rows]
    assert [row["T"] for row in on_disk] == ["4", "2", "1", "8"]
    assert float(on_disk[0]["val_acc"]) == 92.4 and float(on_disk[0]["test_acc"]) == 92.9
    assert on_disk[0]["seed"] == "0" and float(on_disk[0]["loss_soft"]) == pytest.approx(0.34)
    assert [row["alpha"] for row in on_disk] == ["0.1"] * 4  # the CSV keeps every override
    markdown = (sweep / "summary.md").read_text().splitlines()
    assert markdown[2] == "shared by every job: alpha=0.1"  # said once, not a column
    assert markdown[4].startswith("| job | status | T | seed | data | val acc % |")
    assert "| failed |" in markdown[-1]


def test_sweep_callback_and_cli_sections(tmp_path, capsys):
    sweep = make_sweep(tmp_path / "outputs")
    make_study(tmp_path / "outputs")
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    SweepSummary().on_multirun_end(config)
    assert "1_T=4,alpha=0.1" in capsys.readouterr().out
    (sweep / "summary.csv").unlink()
    report_main([str(tmp_path / "outputs"), "--baseline", "baseline"])
    out = capsys.readouterr().out
    on = "on synthetic (10 classes)"
    assert f"== runs {on} ==" in out and f"== sweep {sweep} {on} ==" in out
    assert "failed jobs: 2_T=8,alpha=0.1" in out
    assert (sweep / "summary.csv").is_file()
    rows = read_csv(tmp_path / "outputs" / "report.csv")  # default --out: the runs' parent
    sweep_rows = [row for row in rows if row["section"].startswith("sweep")]
    assert len(sweep_rows) == 3
    best = next(row for row in sweep_rows if row["run"] == "sweep/1_T=4,alpha=0.1")
    assert float(best["d_val_acc"]) == pytest.approx(92.4 - 91.8)


def test_figures_are_readable_pngs(tmp_path, capsys):
    runs = make_study(tmp_path)
    make_run(
        tmp_path / "fitnet",
        command="fitnet",
        model="fitnet_student",
        loss_fit=0.23,
        stage2="finetune",
        loss_soft=0.4,
        loss_hard=1.49,
    )
    out = tmp_path / "figures"
    report_main(
        [str(tmp_path), "--curves", "--per-class", "baseline", "student", "--out", str(out)]
    )
    for name in ("curves_loss", "curves_acc", "curves_loss_parts", "per_class"):
        assert_png(out / f"{name}.png")
    assert_png(out / "confusion_student.png")
    fitnet = Curves("fitnet", find_runs([tmp_path / "fitnet"])[0].metrics(), "tab:blue")
    assert fitnet.stage_starts() == [2.5]
    printed = capsys.readouterr().out
    assert "student: gains frog +21.00, " in printed and "losses cat -19.00" in printed
    per_class = {row["class"]: row for row in read_csv(out / "per_class.csv")}
    assert float(per_class["frog"]["Δ student"]) == pytest.approx(93.0 - 72.0)
    png = plot_confusion(runs["teacher"] / "confusion.csv", tmp_path / "teacher.png")
    assert_png(png)
    counts = [[50, 2], [7, 41]]
    assert_png(write_confusion_png(counts, ["cat", "dog"], tmp_path / "two.png", "cat vs dog"), 200)


def test_nothing_found_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs" / "empty").mkdir(parents=True)
    with pytest.raises(KdlabError, match=r"no finished runs in outputs"):
        find_runs()
    with pytest.raises(KdlabError, match="matches no file or dir"):
        report_main(["nowhere/*"])
    make_study(tmp_path / "outputs")
    with pytest.raises(KdlabError, match=r"'teachr' is neither .*: did you mean 'teacher'"):
        report_main(["--baseline", "teachr"])
    with pytest.raises(KdlabError, match="invalid choice"):
        report_main(["--sort", "loss"])
