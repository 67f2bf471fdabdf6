"""The run record: what summary.json holds, assembled and written in one place.

Its fields are the run-dir contract (docs/outputs.md) that `kdlab report` and scripts read.
The parts only some runs have come from the stages and objectives that produced them: the
loss parts each stage logged, the fields a command's objective describes (`T`, `alpha`, the
teacher, FitNets' layers).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from kdlab.engine.checkpoint import data_facts
from kdlab.engine.distributed import is_main, world_size
from kdlab.engine.provenance import write_record
from kdlab.engine.run_logger import write_json_atomic
from kdlab.engine.stage import StageResult
from kdlab.engine.trainer import Trainer
from kdlab.models import count_macs, count_params, model_label, weights_megabytes
from kdlab.paths import write_text_atomic
from kdlab.runs.session import Session
from kdlab.version import __version__

log = logging.getLogger("kdlab")


def loss_parts(stages: list[StageResult]) -> dict[str, float]:
    """Each loss part's value at the end of the last stage that logged it (FitNets' stage-one
    `loss_fit` stays beside stage two's KD parts; `loss` is the final objective)."""
    parts: dict[str, float] = {}
    for stage in stages:
        for key, value in stage.last.items():
            if key.startswith("train/loss"):
                parts[key.removeprefix("train/")] = value
    return parts


def build_summary(
    session: Session,
    trainer: Trainer,
    stages: list[StageResult],
    test: dict[str, Any],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """summary.json's content: the selected (best) and last epochs of the final stage, the
    test figures of the selected checkpoint, the loss parts and `extra` (the method's)."""
    cfg, data = session.cfg, session.data
    final = stages[-1]
    train_time = sum(s.train_time_s for s in stages)
    train_images = sum(s.train_images for s in stages)
    summary: dict[str, Any] = {
        "status": "finished",  # "failed" (with "error") when a run fails during training
        "command": cfg.command,
        "model": model_label(cfg.model),
        "params": count_params(trainer.model),
        "weights_mb": weights_megabytes(trainer.model),
        "macs": count_macs(trainer.model, (data.in_channels, data.image_size, data.image_size)),
        "data": session.data.name,
        "num_classes": session.data.num_classes,
        "seed": cfg.seed,
        "epochs": sum(s.epochs for s in stages),
        "best_epoch": final.best_epoch,
        "train_acc": final.best.get("train/acc"),
        "val_acc": final.best.get("val/acc"),
        "test_acc": test.get("acc"),
        "test_acc5": test.get("acc5"),
        "test_loss": test.get("loss"),
        "last_train_acc": final.last.get("train/acc"),
        "last_val_acc": final.last.get("val/acc"),
        "last_test_acc": test.get("last_acc"),
        "wall_time_s": time.perf_counter() - session.started,
        "train_images_per_s": train_images / train_time if train_time > 0 else 0.0,
        "train_images_per_epoch": session.data.train_images - session.data.dropped,
        "dropped": session.data.dropped,
        "overrides": session.overrides,
        "run_dir": str(session.run_dir),
        "kdlab_version": __version__,
        "skipped_batches": trainer.skipped_batches,
        "world_size": world_size(),
        "precision": session.precision,
        **extra,
        **loss_parts(stages),
    }
    if len(stages) > 1:
        summary["stages"] = {s.name: stage_summary(s) for s in stages}
    summary["per_class_acc"] = per_class_accuracy(test["confusion"], session.data.class_names)
    return summary


def write_summary(
    session: Session,
    trainer: Trainer,
    stages: list[StageResult],
    test: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the run's closing files (rank 0), print the closing line, return the summary.

    Every rank builds the summary (its test figures cover the whole split); rank 0 writes.
    """
    summary = build_summary(session, trainer, stages, test, extra or {})
    if is_main():
        write_results(session, summary, test["confusion"])
    session.logger.close()
    log.info(closing_line(summary))
    return summary


def write_results(session: Session, summary: dict[str, Any], confusion: torch.Tensor) -> None:
    """The run's closing files: confusion.csv/png, summary.json, the TensorBoard entries and
    the trackers' final figures and artifacts."""
    from kdlab.report import write_confusion_png  # matplotlib: paid only by finished runs

    class_names = session.data.class_names
    csv_path = session.run_dir / "confusion.csv"
    write_confusion_csv(confusion, class_names, csv_path)
    png = write_confusion_png(
        confusion.tolist(), class_names, session.run_dir / "confusion.png", run_title(summary)
    )
    session.logger.image("test/confusion", png, summary["best_epoch"])
    best = session.run_dir / "checkpoints" / "best.pt"
    write_record(best, summary, asdict(session.cfg), data_facts(session.data))
    write_json_atomic(summary, session.run_dir / "summary.json")  # last: marks it finished
    session.logger.finish(summary, [png, csv_path, session.run_dir / "summary.json"])
    session.logger.hparams(
        run_hparams(summary),
        {f"hparam/{k}": summary[k] for k in ("val_acc", "test_acc", "train_acc")},
    )


def run_title(summary: dict[str, Any]) -> str:
    """confusion.png's title: what the run is and its test accuracy, as summary.json has it."""
    from kdlab.report.confusion import confusion_title

    what = f"{summary['model']} ({summary['command']}) on {summary['data']}"
    return confusion_title(what, summary["test_acc"])


def run_hparams(summary: dict[str, Any]) -> dict[str, Any]:
    """What tells this run apart in TensorBoard's hparams view: its overrides and model."""
    params: dict[str, Any] = {"command": summary["command"], "model": summary["model"]}
    for override in summary["overrides"]:
        key, _, value = override.lstrip("+~").partition("=")
        if not key.startswith("hydra"):
            params[key] = _scalar(value)
    return params


def _scalar(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def per_class_accuracy(confusion: torch.Tensor, class_names: list[str]) -> dict[str, float]:
    """Diagonal over row sums (rows = true class), in percent; classes absent from test: None."""
    totals = confusion.sum(dim=1).tolist()
    hits = confusion.diagonal().tolist()
    return {
        name: (100.0 * h / n if n else None)
        for name, h, n in zip(class_names, hits, totals, strict=True)
    }


def write_confusion_csv(confusion: torch.Tensor, class_names: list[str], path: Path) -> None:
    """Rows are true classes, columns predictions; class names head both."""
    rows = [",".join(["true/pred", *class_names])]
    rows += [
        ",".join([name, *map(str, row)])
        for name, row in zip(class_names, confusion.tolist(), strict=True)
    ]
    write_text_atomic(path, "\n".join(rows) + "\n")


def stage_summary(stage: StageResult) -> dict[str, Any]:
    return {
        "epochs": stage.epochs,
        "best_epoch": stage.best_epoch,
        "best": stage.best,
        "last": stage.last,
        "train_images_per_s": stage.images_per_s,
        **stage.extra,
    }


def closing_line(summary: dict[str, Any]) -> str:
    """One human line: best val acc, test acc, time, images/s, run dir."""

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}%"

    minutes, seconds = divmod(int(summary["wall_time_s"]), 60)
    return (
        f"done: best val acc {pct(summary['val_acc'])} (epoch {summary['best_epoch']}) | "
        f"test acc {pct(summary['test_acc'])} | {minutes}m{seconds:02d}s | "
        f"{summary['train_images_per_s']:.0f} img/s | {summary['run_dir']}"
    )
