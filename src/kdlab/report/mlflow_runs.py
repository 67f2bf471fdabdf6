"""`kdlab report mlflow:EXPERIMENT`: the runs an MLflow experiment holds (logger=[...,mlflow]),
as the same run records the run dirs give: the summary's fields from the run's final metrics
and `kdlab.` tags, the epoch records (for --curves) from its metric histories.

The store is MLFLOW_TRACKING_URI if set, else the local one runs log to (outputs/mlruns).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from kdlab.engine.trackers import mlflow_store
from kdlab.errors import KdlabError

PREFIX = "mlflow:"


def is_mlflow_ref(ref: str | Path) -> bool:
    return str(ref).startswith(PREFIX)


def run_summary(metrics: dict[str, float], tags: dict[str, str]) -> dict[str, Any]:
    """summary.json's fields: the final figures (metric names without a `/`, but `lr`),
    and the `kdlab.` tags (lists were stored as JSON)."""
    summary: dict[str, Any] = {k: v for k, v in metrics.items() if "/" not in k and k != "lr"}
    for key, text in tags.items():
        if key.startswith("kdlab."):
            name = key.removeprefix("kdlab.")
            summary[name] = json.loads(text) if text.startswith("[") else text
    for key in ("params", "macs", "epochs", "best_epoch", "seed", "num_classes"):
        if isinstance(summary.get(key), float):
            summary[key] = int(summary[key])
    return summary


def epoch_records(client: Any, run_id: str, keys: list[str]) -> list[dict[str, Any]]:
    """metrics.jsonl's records: every epoch-axis metric (`lr`, `train/...`, `val/...`)."""
    records: dict[int, dict[str, Any]] = {}
    for key in keys:
        if key == "lr" or ("/" in key and not key.startswith("train_step/")):
            for point in client.get_metric_history(run_id, key):
                records.setdefault(point.step, {"epoch": point.step})[key] = point.value
    return [records[epoch] for epoch in sorted(records)]


def local_dir(uri: str, run_id: str) -> Path:
    """The run's artifact dir where the store is local (it holds summary.json and
    confusion.csv), else a name for the run."""
    parsed = urlparse(uri)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(run_id)


def mlflow_runs(ref: str) -> list[tuple[Path, str, dict[str, Any], list[dict[str, Any]]]]:
    """(path, name, summary, epoch records) of each finished kdlab run in the experiment."""
    from mlflow.tracking import MlflowClient

    experiment_name = ref.removeprefix(PREFIX)
    uri = mlflow_store(None)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        names = ", ".join(e.name for e in client.search_experiments())
        raise KdlabError(
            f"no MLflow experiment '{experiment_name}' in {uri}: choose one of {names or 'none'}"
            " (or set MLFLOW_TRACKING_URI)"
        )
    found = []
    for run in client.search_runs([experiment.experiment_id], order_by=["start_time ASC"]):
        if "kdlab.status" not in run.data.tags:  # not (yet) finished
            continue
        summary = run_summary(run.data.metrics, run.data.tags)
        history = epoch_records(client, run.info.run_id, list(run.data.metrics))
        path = local_dir(run.info.artifact_uri, run.info.run_id)
        found.append((path, run.info.run_name or run.info.run_id, summary, history))
    if not found:
        raise KdlabError(f"MLflow experiment '{experiment_name}' holds no finished kdlab run")
    return found
