"""What every training command does the same way: open a run dir, set up, summarise.

Commands stay thin: `open_session` validates (before any expensive work), guards the run
dir, seeds and loads data; `finish` tests the selected checkpoint and writes summary.json.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from kdlab import __version__
from kdlab.checkpoint import load_checkpoint
from kdlab.config import validate
from kdlab.data import DataBundle, build_data
from kdlab.engine import StageResult, Trainer
from kdlab.errors import KdlabError
from kdlab.models import build_model, count_params
from kdlab.report import write_confusion_png
from kdlab.runlog import RunLogger, bars_enabled, write_json_atomic
from kdlab.runtime import seed_everything, setup_runtime

log = logging.getLogger("kdlab")


@dataclass
class Session:
    """A run in progress: its config, directory, device, data and logger."""

    cfg: DictConfig
    run_dir: Path
    device: torch.device
    data: DataBundle
    logger: RunLogger
    show_bars: bool
    resume_state: dict[str, Any] | None
    overrides: list[str]
    started: float

    def trainer(self, model: nn.Module) -> Trainer:
        return Trainer(
            self.cfg, self.run_dir, self.data, model, self.device, self.logger, self.show_bars
        )


def hydra_run_info() -> tuple[Path, list[str], bool]:
    """The run dir, the task overrides and whether this job is part of a multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    return Path(hc.runtime.output_dir), list(hc.overrides.task), hc.mode == RunMode.MULTIRUN


def guard_run_dir(run_dir: Path, resume: bool) -> dict[str, Any] | None:
    """Never train over a finished or started run unless resuming it; return its last state."""
    last = run_dir / "checkpoints" / "last.pt"
    if resume:
        if not last.is_file():
            raise KdlabError(
                f"resume=true but {last} does not exist: point hydra.run.dir= at the run to resume"
            )
        return load_checkpoint(last)
    if last.is_file() or (run_dir / "summary.json").is_file():
        raise KdlabError(
            f"{run_dir} already holds a run: add resume=true to continue it, or pick another "
            "hydra.run.dir"
        )
    return None


def open_session(cfg: DictConfig) -> Session:
    """Validate, guard the run dir, set up the runtime and load the data."""
    validate(cfg)
    run_dir, overrides, multirun = hydra_run_info()
    resume_state = guard_run_dir(run_dir, cfg.resume)
    device = setup_runtime(cfg.trainer, cfg.seed)
    t = cfg.trainer
    data = build_data(
        cfg.data,
        batch_size=t.batch_size,
        eval_batch_size=t.eval_batch_size,
        device=device,
        seed=cfg.seed,
        channels_last=t.channels_last,
    )
    resume_epoch = resume_state["epoch"] if resume_state else 0
    logger = RunLogger(run_dir, resume_epoch=resume_epoch)
    log.info(
        "%s on %s: %s (%d classes), %d train / %s val / %d test images, device %s",
        cfg.command,
        run_dir,
        data.name,
        data.num_classes,
        data.train.num_samples,
        data.val.num_samples if data.val is not None else 0,
        data.test.num_samples,
        device,
    )
    return Session(
        cfg=cfg,
        run_dir=run_dir,
        device=device,
        data=data,
        logger=logger,
        show_bars=bars_enabled(t.progress, multirun),
        resume_state=resume_state,
        overrides=overrides,
        started=time.perf_counter(),
    )


def build_student(session: Session) -> nn.Module:
    """The model to train, from `model=` (seeded, on the device, channels_last if asked)."""
    cfg = session.cfg
    seed_everything(cfg.seed)  # the same init whatever was built before (e.g. a teacher)
    kwargs = {k: v for k, v in cfg.model.items() if k != "arch"}
    model = build_model(cfg.model.arch, session.data.num_classes, **kwargs)
    model = model.to(session.device)
    if cfg.trainer.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def model_label(model_cfg: DictConfig) -> str:
    """`resnet_teacher`, or `torchvision:resnet18` for torchvision models."""
    if model_cfg.arch == "torchvision":
        return f"torchvision:{model_cfg.name}"
    return str(model_cfg.arch)


def finish(
    session: Session,
    trainer: Trainer,
    model: nn.Module,
    stages: list[StageResult],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Test the selected checkpoint, write summary.json and print the closing line."""
    cfg = session.cfg
    best_state = load_checkpoint(session.run_dir / "checkpoints" / "best.pt", session.device)
    test = trainer.test(best_state)
    final = stages[-1]
    train_time = sum(s.train_time_s for s in stages)
    train_images = sum(s.train_images for s in stages)
    confusion = test.pop("confusion")
    summary: dict[str, Any] = {
        "command": cfg.command,
        "model": model_label(cfg.model),
        "params": count_params(model),
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
        "wall_time_s": time.perf_counter() - session.started,
        "train_images_per_s": train_images / train_time if train_time > 0 else 0.0,
        "overrides": session.overrides,
        "run_dir": str(session.run_dir),
        "kdlab_version": __version__,
        "skipped_batches": trainer.skipped_batches,
        **(extra or {}),
    }
    for key, value in final.last.items():
        if key.startswith("train/loss"):
            summary[key.removeprefix("train/")] = value
    if len(stages) > 1:
        summary["stages"] = {s.name: stage_summary(s) for s in stages}
        for s in stages:
            if "train/loss_fit" in s.last:
                summary["loss_fit"] = s.last["train/loss_fit"]
    summary["per_class_acc"] = per_class_accuracy(confusion, session.data.class_names)
    write_confusion_csv(confusion, session.data.class_names, session.run_dir / "confusion.csv")
    png = write_confusion_png(
        confusion.tolist(),
        session.data.class_names,
        session.run_dir / "confusion.png",
        f"{summary['model']} ({cfg.command}) on {session.data.name} test: "
        f"{summary['test_acc']:.2f}%",
    )
    session.logger.image("test/confusion", png, final.best_epoch)
    write_json_atomic(summary, session.run_dir / "summary.json")
    session.logger.hparams(
        run_hparams(summary),
        {f"hparam/{k}": summary[k] for k in ("val_acc", "test_acc", "train_acc")},
    )
    session.logger.close()
    log.info(closing_line(summary))
    return summary


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
    path.write_text("\n".join(rows) + "\n")


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
