"""`kdlab train` end to end (the run the tests share in a fresh interpreter, as a user runs it):
every file of the run-dir contract."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from harness import TINY, read_summary
from kdlab.engine.checkpoint import load_checkpoint, model_from_checkpoint
from kdlab.engine.execution import resolve_precision

SUMMARY_KEYS = {
    "command",
    "model",
    "params",
    "epochs",
    "best_epoch",
    "train_acc",
    "val_acc",
    "test_acc",
    "wall_time_s",
    "train_images_per_s",
    "loss",
    "per_class_acc",
}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from conftest import run_kdlab

    cwd = tmp_path_factory.mktemp("train")
    run_dir = cwd / "run"
    args = ["train", "model=resnet8", *TINY, f"hydra.run.dir={run_dir}"]
    proc = run_kdlab(*args, cwd=cwd, fresh_process=True)
    assert proc.returncode == 0, proc.stderr
    return run_dir, proc


def test_run_dir_holds_every_contract_file(trained_run):
    run_dir, _ = trained_run
    for name in (
        ".hydra/config.yaml",
        ".hydra/overrides.yaml",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
        "metrics.jsonl",
        "summary.json",
        "confusion.csv",
    ):
        assert (run_dir / name).is_file(), name
    assert list(run_dir.glob("events.out.tfevents.*"))
    assert not list(run_dir.rglob("*.tmp")), "no temp files left behind"


def test_summary_has_the_contract_keys(trained_run):
    run_dir, _ = trained_run
    summary = read_summary(run_dir)
    assert summary.keys() >= SUMMARY_KEYS
    assert summary["command"] == "train"
    assert summary["model"] == "resnet8"
    assert summary["epochs"] == 2
    assert summary["precision"] == resolve_precision("auto", torch.device("cpu"))  # the default
    assert 1 <= summary["best_epoch"] <= 2
    for key in ("train_acc", "val_acc", "test_acc"):
        assert 0.0 <= summary[key] <= 100.0
    assert summary["params"] == sum(
        p.numel()
        for p in model_from_checkpoint(
            load_checkpoint(run_dir / "checkpoints" / "best.pt")
        ).parameters()
    )


def test_metrics_jsonl_has_one_record_per_epoch(trained_run):
    run_dir, _ = trained_run
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    for r in records:
        assert {"train/loss", "train/acc", "val/loss", "val/acc", "val/acc5", "lr"} <= r.keys()


def test_tensorboard_has_the_contract_tags(trained_run):
    run_dir, _ = trained_run
    events = EventAccumulator(str(run_dir))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "lr"} <= tags
    assert "train_step/loss" in tags
    assert [e.step for e in events.Scalars("val/acc")] == [1, 2]
    (image,) = events.Images("test/confusion")  # the run's confusion.png, at its best epoch
    assert image.encoded_image_string == (run_dir / "confusion.png").read_bytes()
    assert image.step == read_summary(run_dir)["best_epoch"]
    with Image.open(run_dir / "confusion.png") as png:
        assert (image.width, image.height) == png.size


def test_checkpoint_alone_rebuilds_the_model_and_its_test_accuracy(trained_run):
    """The best checkpoint's config is enough to rebuild the model and reproduce test_acc."""
    from omegaconf import OmegaConf

    from kdlab.data import build_data

    run_dir, _ = trained_run
    state = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    model = model_from_checkpoint(state).eval()
    cfg = OmegaConf.create(state["config"])
    data = build_data(
        cfg.data, batch_size=32, eval_batch_size=100, device=torch.device("cpu"), seed=cfg.seed
    )
    correct = total = 0
    with torch.inference_mode():
        for x, y in data.test:
            correct += (model(x).argmax(1) == y).sum().item()
            total += y.numel()
    assert 100.0 * correct / total == pytest.approx(read_summary(run_dir)["test_acc"], abs=1e-6)


def test_confusion_rows_sum_to_the_test_counts(trained_run):
    run_dir, _ = trained_run
    lines = (run_dir / "confusion.csv").read_text().splitlines()
    header = lines[0].split(",")
    rows = [line.split(",") for line in lines[1:]]
    assert header[1:] == [r[0] for r in rows]
    counts = [[int(c) for c in r[1:]] for r in rows]
    assert sum(map(sum, counts)) == 100
    per_class = read_summary(run_dir)["per_class_acc"]
    for r, row in zip(rows, counts, strict=True):
        assert per_class[r[0]] == pytest.approx(100.0 * row[header.index(r[0]) - 1] / sum(row))


def test_closing_line_names_the_run_dir(trained_run):
    run_dir, proc = trained_run
    out = proc.stdout + proc.stderr
    assert "best val acc" in out and "test acc" in out and str(run_dir) in out


def test_a_run_dir_named_by_an_interpolation_is_the_only_dir_made(kdlab, tmp_path):
    """The pre-flight cannot know hydra.run.dir=runs/${now:...} before Hydra resolves it: it
    locks and checks no dir of the unresolved name (which it used to leave behind)."""
    one_epoch = [a for a in TINY if not a.startswith("trainer.epochs")]
    args = ["model=resnet8", *one_epoch, "trainer.epochs=1", "hydra.run.dir=runs/${now:%f}"]
    assert kdlab("train", *args).returncode == 0
    (made,) = (tmp_path / "runs").iterdir()
    assert made.name.isdigit() and read_summary(made)["status"] == "finished"


def test_rerunning_into_a_finished_run_dir_is_refused(trained_run, kdlab):
    run_dir, _ = trained_run
    before = (run_dir / "checkpoints" / "best.pt").read_bytes()
    proc = kdlab("train", "model=resnet8", *TINY, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 2
    assert "already holds a run" in proc.stderr
    assert (run_dir / "checkpoints" / "best.pt").read_bytes() == before


def test_resume_of_a_finished_run_adds_no_epochs(trained_run, kdlab):
    run_dir, _ = trained_run
    proc = kdlab("train", "model=resnet8", *TINY, f"hydra.run.dir={run_dir}", "resume=true")
    assert proc.returncode == 0, proc.stderr
    records = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(records) == 2


def test_multirun_writes_one_dir_per_job(kdlab, tmp_path):
    sweep = tmp_path / "sweep"
    proc = kdlab(
        "train",
        "-m",
        "model=resnet8",
        *TINY,
        "trainer.epochs=1",
        "seed=0,1",
        f"hydra.sweep.dir={sweep}",
    )
    assert proc.returncode == 0, proc.stderr
    runs = sorted(p.parent for p in sweep.glob("*/summary.json"))
    assert [p.name for p in runs] == ["0_seed=0", "1_seed=1"]
    assert [read_summary(p)["seed"] for p in runs] == [0, 1]
    assert (sweep / "summary.csv").is_file() and (sweep / "summary.md").is_file()
    assert "seed" in (sweep / "summary.md").read_text()
