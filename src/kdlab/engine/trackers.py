"""Experiment trackers beside TensorBoard (`logger=[tensorboard,mlflow,wandb,csv]`).

RunLogger always writes TensorBoard events and metrics.jsonl (the run-dir contract); each
tracker `logger=` adds gets the same figures: the resolved config as parameters, the step
scalars at global steps, the epoch scalars at x = epoch, the summary's final figures and the
run dir's closing files as artifacts. Each imports its package on first use, so `import kdlab`
and the pre-flight stay cheap. A tracker's run id is kept in checkpoints/trackers.json, so a
resumed run (`resume=true`) continues the same tracker run.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kdlab.errors import KdlabError

RUN_IDS = Path("checkpoints") / "trackers.json"
WANDB_MODES = ("online", "offline", "disabled")
# The local MLflow store when logger.mlflow.tracking_uri is null (relative to the cwd, as
# outputs/ is): `mlflow ui --backend-store-uri outputs/mlruns` shows it.
DEFAULT_MLFLOW_STORE = "outputs/mlruns"


@dataclass
class TensorboardSettings:
    """TensorBoard events are always written (the run-dir contract): nothing to set."""


@dataclass
class MlflowSettings:
    tracking_uri: str | None = None  # null = MLFLOW_TRACKING_URI if set, else outputs/mlruns
    experiment: str | None = None  # null = the command (train, distill, fitnet)
    run_name: str | None = None  # null = the run dir's name


@dataclass
class WandbSettings:
    project: str = "kdlab"
    entity: str | None = None  # null = the account's default
    name: str | None = None  # null = the run dir's name
    mode: str = "online"  # online | offline (no network; `wandb sync` later) | disabled


@dataclass
class CsvSettings:
    """metrics.csv in the run dir: one row per logged scalar (axis, step, metric, value)."""


@dataclass
class LoggerConfig:
    """The trackers `logger=[...]` chose: a node per chosen one, null for the others."""

    tensorboard: TensorboardSettings | None = None
    mlflow: MlflowSettings | None = None
    wandb: WandbSettings | None = None
    csv: CsvSettings | None = None


SETTINGS: dict[str, type] = {
    "tensorboard": TensorboardSettings,
    "mlflow": MlflowSettings,
    "wandb": WandbSettings,
    "csv": CsvSettings,
}
PACKAGES = {"mlflow": "mlflow", "wandb": "wandb"}  # tracker -> the module it imports


def group_options() -> dict[str, dict[str, Any]]:
    """The `logger` config group: one option per tracker, each its own settings node."""
    return {name: {name: settings()} for name, settings in SETTINGS.items()}


def chosen(settings: LoggerConfig) -> list[str]:
    return [name for name in SETTINGS if getattr(settings, name) is not None]


def check_trackers(settings: LoggerConfig) -> None:
    """The chosen trackers' packages are installed and their settings valid (no import)."""
    for name in chosen(settings):
        package = PACKAGES.get(name)
        if package and importlib.util.find_spec(package) is None:
            raise KdlabError(
                f"logger={name} needs the {package} package: pip install 'kdlab[track]'"
            )
    if settings.wandb is not None and settings.wandb.mode not in WANDB_MODES:
        raise KdlabError(
            f"unknown logger.wandb.mode '{settings.wandb.mode}': choose one of "
            f"{', '.join(WANDB_MODES)}"
        )


def final_figures(summary: dict[str, Any]) -> dict[str, float]:
    """summary.json's top-level numbers (test_acc, val_acc, loss parts, ...)."""
    return {
        k: float(v)
        for k, v in summary.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


class Tracker(Protocol):
    """One tracker's run: what RunLogger fans out to (`run_id`: what reopens it on resume,
    None for a tracker that keeps nothing outside the run dir)."""

    run_id: str | None

    def step(self, global_step: int, scalars: dict[str, float]) -> None: ...

    def epoch(self, epoch: int, scalars: dict[str, float]) -> None: ...

    def summary(self, summary: dict[str, Any]) -> None: ...

    def artifacts(self, paths: list[Path]) -> None: ...

    def close(self, failed: bool) -> None:
        """End the tracker's run; `failed`: the run stopped on an error (marked so, not left
        running)."""


def mlflow_store(tracking_uri: str | None) -> str:
    """The tracking URI a run logs to (and `kdlab report mlflow:` reads). A local path is
    MLflow's file store, which MLflow 3 opens only with MLFLOW_ALLOW_FILE_STORE set."""
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_MLFLOW_STORE
    if "://" not in uri or uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        if "://" not in uri:
            uri = Path(uri).resolve().as_uri()
    return uri


class MlflowTracker:
    """An MLflow run through MlflowClient (no global active run: one per job of a sweep)."""

    def __init__(
        self, settings: MlflowSettings, run_name: str, params: dict[str, Any], run_id: str | None
    ) -> None:
        from mlflow.tracking import MlflowClient

        self.tracking_uri = mlflow_store(settings.tracking_uri)
        self.client = MlflowClient(self.tracking_uri)
        if run_id is not None:
            self.run_id = run_id
            self.client.update_run(run_id, status="RUNNING")
            self._resumed_params(params)
            return
        name = settings.experiment or str(params["command"])
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = (
            experiment.experiment_id if experiment else self.client.create_experiment(name)
        )
        run = self.client.create_run(experiment_id, run_name=settings.run_name or run_name)
        self.run_id = run.info.run_id
        self._log_params(params)

    def _log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def _resumed_params(self, params: dict[str, Any]) -> None:
        """MLflow params cannot change: new keys are added, changed values (resume, a longer
        trainer.epochs) become tags `resumed.KEY`."""
        logged = self.client.get_run(self.run_id).data.params
        self._log_params({k: v for k, v in params.items() if k not in logged})
        for key, value in params.items():
            if key in logged and logged[key] != str(value):
                self.client.set_tag(self.run_id, f"resumed.{key}", str(value))

    def _metrics(self, scalars: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step) for k, v in scalars.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def step(self, global_step: int, scalars: dict[str, float]) -> None:
        self._metrics(scalars, global_step)

    def epoch(self, epoch: int, scalars: dict[str, float]) -> None:
        self._metrics(scalars, epoch)

    def summary(self, summary: dict[str, Any]) -> None:
        """The final figures as metrics (at step = epochs), the strings and lists (e.g. the
        overrides, as JSON) as `kdlab.` tags: what `kdlab report mlflow:` reads back."""
        self._metrics(final_figures(summary), int(summary.get("epochs", 0)))
        for key, value in summary.items():
            if isinstance(value, str | list):
                text = value if isinstance(value, str) else json.dumps(value)
                self.client.set_tag(self.run_id, f"kdlab.{key}", text)

    def artifacts(self, paths: list[Path]) -> None:
        for path in paths:
            self.client.log_artifact(self.run_id, str(path))

    def close(self, failed: bool) -> None:
        self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")


class WandbTracker:
    """A W&B run; step scalars plot against `global_step`, epoch scalars against `epoch`."""

    def __init__(
        self,
        settings: WandbSettings,
        run_dir: Path,
        run_name: str,
        params: dict[str, Any],
        run_id: str | None,
    ) -> None:
        import wandb

        self.run = wandb.init(
            project=settings.project,
            entity=settings.entity,
            name=settings.name or run_name,
            mode=settings.mode,  # type: ignore[arg-type]
            dir=str(run_dir),  # wandb/ inside the run dir: the run carries its W&B files
            config=params,
            id=run_id,
            resume="must" if run_id is not None and settings.mode == "online" else "allow",
            allow_val_change=True,  # a resumed run's resume=true, longer trainer.epochs
            reinit="create_new",  # one W&B run per job of a sweep in this process
        )
        self.run_id = self.run.id
        self.run.define_metric("global_step")
        self.run.define_metric("epoch")
        self.run.define_metric("train_step/*", step_metric="global_step")
        self._epoch_keys: set[str] = set()

    def step(self, global_step: int, scalars: dict[str, float]) -> None:
        self.run.log({"global_step": global_step, **scalars})

    def epoch(self, epoch: int, scalars: dict[str, float]) -> None:
        for key in scalars.keys() - self._epoch_keys:
            self.run.define_metric(key, step_metric="epoch")
            self._epoch_keys.add(key)
        self.run.log({"epoch": epoch, **scalars})

    def summary(self, summary: dict[str, Any]) -> None:
        self.run.summary.update(final_figures(summary))

    def artifacts(self, paths: list[Path]) -> None:
        import wandb

        artifact = wandb.Artifact(f"run-{self.run_id}-files", type="run-files")
        for path in paths:
            artifact.add_file(str(path))
        self.run.log_artifact(artifact)

    def close(self, failed: bool) -> None:
        self.run.finish(exit_code=1 if failed else 0)


class CsvTracker:
    """metrics.csv: rows (axis, step, metric, value), axis = global_step | epoch | final.
    The run dir already holds the config (.hydra/) and the figures, so only metrics go here."""

    HEADER = ("axis", "step", "metric", "value")

    def __init__(self, run_dir: Path, resume_epoch: int) -> None:
        self.path = run_dir / "metrics.csv"
        self.run_id = None
        kept = self._rows_until(resume_epoch) if resume_epoch else []
        with self.path.open("w", newline="") as f:
            csv.writer(f).writerows([list(self.HEADER), *kept])

    def _rows_until(self, epoch: int) -> list[list[str]]:
        """The rows a resumed run keeps: up to its checkpoint's epoch record (rows are in
        time order, each epoch's step rows before its record)."""
        if not self.path.is_file():
            return []
        with self.path.open(newline="") as f:
            rows = list(csv.reader(f))[1:]
        ends = [i for i, r in enumerate(rows) if r[0] == "epoch" and int(r[1]) <= epoch]
        return rows[: ends[-1] + 1] if ends else []

    def _write(self, axis: str, step: int, scalars: dict[str, float]) -> None:
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerows([axis, step, k, v] for k, v in scalars.items())

    def step(self, global_step: int, scalars: dict[str, float]) -> None:
        self._write("global_step", global_step, scalars)

    def epoch(self, epoch: int, scalars: dict[str, float]) -> None:
        self._write("epoch", epoch, scalars)

    def summary(self, summary: dict[str, Any]) -> None:
        self._write("final", int(summary.get("epochs", 0)), final_figures(summary))

    def artifacts(self, paths: list[Path]) -> None:
        pass  # already in the run dir

    def close(self, failed: bool) -> None:
        pass  # every write is closed at once


def open_trackers(
    settings: LoggerConfig, run_dir: Path, params: dict[str, Any], resume_epoch: int
) -> dict[str, Tracker]:
    """The chosen trackers' runs by name (TensorBoard is RunLogger's own), each given `params`
    (the resolved config, dotted keys); a resumed run reopens the runs named in
    checkpoints/trackers.json (RunLogger writes it)."""
    ids_path = run_dir / RUN_IDS
    previous = json.loads(ids_path.read_text()) if resume_epoch and ids_path.is_file() else {}
    run_name = run_dir.name
    trackers: dict[str, Tracker] = {}
    if settings.mlflow is not None:
        trackers["mlflow"] = MlflowTracker(
            settings.mlflow, run_name, params, previous.get("mlflow")
        )
    if settings.wandb is not None:
        trackers["wandb"] = WandbTracker(
            settings.wandb, run_dir, run_name, params, previous.get("wandb")
        )
    if settings.csv is not None:
        trackers["csv"] = CsvTracker(run_dir, resume_epoch)
    return trackers
