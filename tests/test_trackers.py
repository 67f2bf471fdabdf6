"""logger=[tensorboard,mlflow,wandb,csv]: each tracker, read back through its own client or
files, holds what TensorBoard and the run dir hold; a resumed run continues the same run."""

from __future__ import annotations

import csv
import json
import struct
import sys
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from harness import BLOW_UP, FAST, read_summary, run_kdlab
from kdlab.errors import KdlabError
from kdlab.runs.preflight import compose_config

TRACKED = ["logger=[tensorboard,mlflow,wandb,csv]", "logger.wandb.mode=offline"]
ARTIFACTS = {"confusion.png", "confusion.csv", "summary.json"}


def tensorboard_curves(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar TensorBoard holds, but its hparams view's entries."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)]
        for tag in events.Tags()["scalars"]
        if not tag.startswith("hparam/")
    }


def same_points(ours: list[tuple[int, float]], theirs: list[tuple[int, float]]) -> bool:
    """Equal steps and values (TensorBoard stores float32)."""
    return [s for s, _ in ours] == [s for s, _ in theirs] and all(
        v == pytest.approx(w, rel=1e-6, abs=1e-6)
        for (_, v), (_, w) in zip(ours, theirs, strict=True)
    )


def config_leaves(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix.removesuffix("."): tree}
    return {
        k: v for key, sub in tree.items() for k, v in config_leaves(sub, f"{prefix}{key}.").items()
    }


def wandb_records(path: Path) -> list[Any]:
    """The records of a W&B offline file: the LevelDB log format W&B writes (a 7-byte
    header, 32 KiB blocks of chunks each headed by crc32, length, type), decoded with W&B's
    own protobuf schema (its SDK no longer ships a reader)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert struct.unpack("<4sHB", data[:7])[:2] == (b":W&B", 0xBEE1)
    records, chunks, pos = [], b"", 7
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if left < 7 or (length, kind) == (0, 0):  # block padding
            pos += left
            continue
        chunks += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            records.append(record)
            chunks = b""
    return records


def items(update: Any) -> dict[str, Any]:
    """A W&B record's items (`train/acc` is stored as the nested key [train, acc])."""
    return {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in update}


def wandb_run(run_dir: Path) -> dict[str, Any]:
    """What the run's offline W&B files hold: ids, config, history rows, summary, artifacts."""
    held: dict[str, Any] = {"ids": set(), "config": {}, "history": [], "summary": {}}
    held["artifacts"] = set()
    for path in sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb")):
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                held["ids"].add(record.run.run_id)
                held["config"] |= {
                    i.key: json.loads(i.value_json) for i in record.run.config.update
                }
            elif kind == "history":
                held["history"].append(items(record.history.item))
            elif kind == "summary":
                held["summary"] |= items(record.summary.update)
            elif kind == "artifact":
                held["artifacts"] |= {m.path for m in record.artifact.manifest.contents}
    return held


def wandb_curves(rows: list[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """Per metric, (x, value) with x its W&B step metric: global_step or epoch."""
    curves: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        x = row["global_step"] if "global_step" in row else row["epoch"]
        for key, value in row.items():
            if not key.startswith("_") and key not in ("global_step", "epoch"):
                curves.setdefault(key, []).append((x, value))
    return curves


def csv_rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory) -> Path:
    """One epoch with every tracker, then resume=true to two (the MLflow store in cwd)."""
    cwd = tmp_path_factory.mktemp("tracked")
    first = run_kdlab("train", *FAST, *TRACKED, "trainer.epochs=1", "hydra.run.dir=run", cwd=cwd)
    assert first.returncode == 0, first.stderr
    (cwd / "after_one_epoch.json").write_text((cwd / "run/checkpoints/trackers.json").read_text())
    second = run_kdlab("train", *FAST, *TRACKED, "resume=true", "hydra.run.dir=run", cwd=cwd)
    assert second.returncode == 0, second.stderr
    return cwd / "run"


@pytest.fixture(scope="module")
def mlflow_client(resumed_run):
    from mlflow.tracking import MlflowClient

    from kdlab.engine.trackers import mlflow_store

    return MlflowClient(mlflow_store(str(resumed_run.parent / "outputs/mlruns")))


def test_mlflow_holds_one_run_with_the_config_curves_summary_and_files(resumed_run, mlflow_client):
    client = mlflow_client
    experiment = client.get_experiment_by_name("train")
    (run,) = client.search_runs([experiment.experiment_id])  # the resume continued it
    ids = json.loads((resumed_run / "checkpoints/trackers.json").read_text())
    first_ids = json.loads((resumed_run.parent / "after_one_epoch.json").read_text())
    assert run.info.run_id == ids["mlflow"] == first_ids["mlflow"]
    assert run.info.status == "FINISHED"

    config = OmegaConf.to_container(OmegaConf.load(resumed_run / ".hydra/config.yaml"))
    params, tags = run.data.params, run.data.tags
    for key, value in config_leaves(config).items():
        if not isinstance(value, dict):  # empty nodes (logger.tensorboard) have no leaf
            assert params[key] == str(value) or tags[f"resumed.{key}"] == str(value), key
    assert params["trainer.epochs"] == "1" and tags["resumed.trainer.epochs"] == "2"

    for tag, points in tensorboard_curves(resumed_run).items():
        history = client.get_metric_history(run.info.run_id, tag)
        assert same_points([(m.step, m.value) for m in history], points), tag
    epochs = [r["epoch"] for r in map(json.loads, (resumed_run / "metrics.jsonl").open())]
    assert epochs == [1, 2]

    summary = read_summary(resumed_run)
    for key in ("test_acc", "val_acc", "train_acc", "test_loss", "last_test_acc", "best_epoch"):
        assert run.data.metrics[key] == pytest.approx(summary[key]), key
    assert tags["kdlab.status"] == "finished" and tags["kdlab.model"] == summary["model"]
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == ARTIFACTS


def test_wandb_offline_files_hold_one_run_with_the_same_figures(resumed_run):
    held = wandb_run(resumed_run)
    ids = json.loads((resumed_run / "checkpoints/trackers.json").read_text())
    assert held["ids"] == {ids["wandb"]}  # both sessions wrote the same run
    assert held["config"]["trainer.batch_size"] == 32
    assert held["config"]["trainer.epochs"] == 2  # the resume's value (allow_val_change)
    curves = wandb_curves(held["history"])
    for tag, points in tensorboard_curves(resumed_run).items():
        assert same_points(curves[tag], points), tag
    summary = read_summary(resumed_run)
    for key in ("test_acc", "val_acc", "train_acc", "test_loss", "best_epoch"):
        assert held["summary"][key] == pytest.approx(summary[key]), key
    assert held["artifacts"] == ARTIFACTS


def test_csv_holds_the_tensorboard_curves_and_the_final_figures(resumed_run):
    rows = csv_rows(resumed_run)
    curves: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        if row["axis"] != "final":
            curves.setdefault(row["metric"], []).append((int(row["step"]), float(row["value"])))
    tensorboard = tensorboard_curves(resumed_run)
    assert curves.keys() == tensorboard.keys()
    for tag, points in tensorboard.items():
        assert same_points(curves[tag], points), tag
    final = {row["metric"]: float(row["value"]) for row in rows if row["axis"] == "final"}
    summary = read_summary(resumed_run)
    assert final["test_acc"] == pytest.approx(summary["test_acc"])
    assert final["best_epoch"] == summary["best_epoch"]


def test_a_tracker_without_its_package_fails_in_the_preflight(monkeypatch):
    """find_spec finds nothing once site-packages is off the path (and not yet imported)."""
    compose_config("train", ["logger=[tensorboard,wandb]"])  # Hydra's modules imported
    for name in ("mlflow", "wandb"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if "site-packages" not in p])
    with pytest.raises(
        KdlabError, match=r"logger=wandb needs the wandb package: pip install 'kdlab\[track\]'"
    ):
        compose_config("train", ["logger=[tensorboard,wandb]"])


def test_an_unknown_tracker_is_one_line_listing_the_trackers(tmp_path):
    proc = run_kdlab("train", *FAST, "logger=[tensorboard,neptune]", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "kdlab: error: unknown logger 'neptune': choose one of csv, mlflow, tensorboard, wandb "
        "(logger=[NAME,...])"
    )
    assert not (tmp_path / "outputs").exists()


def test_report_tables_an_mlflow_experiment_as_it_tables_the_run_dir(resumed_run, monkeypatch):
    from kdlab.report.runs import find_runs

    store = resumed_run.parent / "outputs/mlruns"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", str(store))
    (tracked,) = find_runs(["mlflow:train"])
    (on_disk,) = find_runs([resumed_run])
    for key in ("command", "model", "data", "overrides", "status", "best_epoch", "epochs"):
        assert tracked.get(key) == on_disk.get(key), key
    for key in ("test_acc", "val_acc", "train_acc", "test_loss", "params", "wall_time_s"):
        assert tracked.get(key) == pytest.approx(on_disk.get(key)), key
    ours, theirs = tracked.metrics(), on_disk.metrics()
    assert [r["epoch"] for r in ours] == [r["epoch"] for r in theirs] == [1, 2]
    for mine, record in zip(ours, theirs, strict=True):
        assert mine.keys() <= record.keys()
        assert {k for k, v in record.items() if "/" in k and isinstance(v, float)} <= mine.keys()
        for key, value in mine.items():
            assert value == pytest.approx(record[key]), key

    out = resumed_run.parent / "report"
    env = {"MLFLOW_TRACKING_URI": str(store)}
    proc = run_kdlab(
        "report", "mlflow:train", "--curves", "--out", str(out), cwd=out.parent, env=env
    )
    assert proc.returncode == 0, proc.stderr
    with (out / "report.csv").open(newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["test_acc"]) == pytest.approx(read_summary(resumed_run)["test_acc"])
    assert any(out.glob("curves*.png"))


def test_a_run_that_fails_ends_its_tracker_runs_as_failed(tmp_path):
    """A run that stops on an error marks its MLflow run FAILED (not left RUNNING) and ends
    its W&B run with exit code 1, as its summary says failed."""
    from mlflow.tracking import MlflowClient

    from kdlab.engine.trackers import mlflow_store

    args = ["train", *FAST, *TRACKED, *BLOW_UP, "sched.milestones=[0.5]", "hydra.run.dir=run"]
    proc = run_kdlab(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert read_summary(tmp_path / "run")["status"] == "failed"
    client = MlflowClient(mlflow_store(str(tmp_path / "outputs/mlruns")))
    (run,) = client.search_runs([client.get_experiment_by_name("train").experiment_id])
    assert run.info.status == "FAILED"
    files = sorted((tmp_path / "run").glob("wandb/offline-run-*/run-*.wandb"))
    exits = [
        record.exit.exit_code
        for path in files
        for record in wandb_records(path)
        if record.WhichOneof("record_type") == "exit"
    ]
    assert exits == [1]
