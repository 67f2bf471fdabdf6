"""What every training command does the same way: open a run dir, set up, summarise.

Commands stay thin: `open_session` validates (before any expensive work), guards the run
dir, seeds and loads data; `finish` tests the selected checkpoint and writes summary.json.
Under torchrun every rank runs both (loading its shard, testing its part of the split); only
rank 0 writes.
"""

from __future__ import annotations

import errno
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from kdlab import __version__
from kdlab.checkpoint import load_checkpoint, remove_stale_temp_files
from kdlab.config import validate
from kdlab.data import DataBundle, build_data
from kdlab.distributed import is_main, rank, world_size
from kdlab.engine import StageResult, Trainer
from kdlab.errors import KdlabError
from kdlab.models import build_model, count_params
from kdlab.runlog import NullLogger, RunLogger, bars_enabled, write_json_atomic
from kdlab.runtime import resolve_precision, seed_everything, setup_runtime

log = logging.getLogger("kdlab")


@dataclass
class Session:
    """A run in progress: its config, directory, device, data and logger."""

    cfg: DictConfig
    run_dir: Path
    device: torch.device
    precision: str  # trainer.precision resolved for the device (`auto` -> bf16 or 32)
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


def check_run_dir(run_dir: Path, resume: bool) -> None:
    """Never train over a finished or started run unless resuming it (checked before Hydra
    writes its record into the dir, and again by `guard_run_dir`)."""
    last = run_dir / "checkpoints" / "last.pt"
    if resume and not last.is_file():
        raise KdlabError(
            f"resume=true but {last} does not exist: point hydra.run.dir= at the run to resume "
            "(a run stopped before its first epoch ended: drop resume=true to start it again)"
        )
    if not resume and (last.is_file() or (run_dir / "summary.json").is_file()):
        raise KdlabError(
            f"{run_dir} already holds a run: add resume=true to continue it, or pick another "
            "hydra.run.dir"
        )


# What a resumed run rebuilds from its config before loading its state into it.
REBUILT_ON_RESUME = ("command", "model", "data.name", "optim.name", "stage2", "fitnet.regressor")


def check_run_dir_early(run_dir: Path, cfg: DictConfig) -> None:
    """The run dir checks, before Hydra writes its record (.hydra/) into the dir; a resumed
    run must rebuild what it saved (else loading its state fails with a traceback)."""
    check_run_dir(run_dir, cfg.resume)
    if not cfg.resume:
        return
    saved = OmegaConf.create(load_checkpoint(run_dir / "checkpoints" / "last.pt")["config"])
    for key in REBUILT_ON_RESUME:
        ours, theirs = OmegaConf.select(cfg, key), OmegaConf.select(saved, key)
        if ours != theirs:
            raise KdlabError(
                f"resume=true but {key} is {_shown(ours)}, the run in {run_dir} has "
                f"{_shown(theirs)}: resume with the run's own settings (.hydra/overrides.yaml)"
            )


def _shown(value: Any) -> str:
    return str(OmegaConf.to_container(value) if isinstance(value, DictConfig) else value)


def guard_run_dir(run_dir: Path, resume: bool) -> dict[str, Any] | None:
    """Check the run dir, clear what killed checkpoint writes left; return the state to resume.

    The temp files of writes a kill cut short are removed before training goes on.
    """
    check_run_dir(run_dir, resume)
    checkpoints = run_dir / "checkpoints"
    for stale in remove_stale_temp_files(checkpoints):
        log.info("removed %s, a checkpoint write the last run did not finish", stale.name)
    return load_checkpoint(checkpoints / "last.pt") if resume else None


def check_writable(directory: Path, key: str) -> None:
    """Fail in one line before Hydra creates `directory` (and crashes) if it cannot be written.

    Probes the nearest existing ancestor with a real file, not permission bits, which do not
    stop root (a read-only file system or a regular file in the path does).
    """
    try:
        existing = directory.absolute()
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{existing} is a file")
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as error:
        raise KdlabError(
            f"cannot write to {directory} ({error.strerror}): pick another {key}"
        ) from error


def open_session(cfg: DictConfig) -> Session:
    """Validate, guard the run dir, set up the runtime and load the data."""
    validate(cfg)
    run_dir, overrides, multirun = hydra_run_info()
    resume_state = guard_run_dir(run_dir, cfg.resume)
    device = setup_runtime(cfg.trainer, cfg.seed)
    precision = resolve_precision(cfg.trainer.precision, device)
    t = cfg.trainer
    data = build_data(
        cfg.data,
        batch_size=t.batch_size // world_size(),  # trainer.batch_size is the global batch
        eval_batch_size=t.eval_batch_size,
        device=device,
        seed=cfg.seed,
        channels_last=t.channels_last,
        rank=rank(),
        world_size=world_size(),
    )
    resume_epoch = resume_state["epoch"] if resume_state else 0
    logger = RunLogger(run_dir, resume_epoch=resume_epoch) if is_main() else NullLogger()
    log.info(
        "%s on %s: %s (%d classes), %d train / %s val / %d test images%s, device %s, precision %s",
        cfg.command,
        run_dir,
        data.name,
        data.num_classes,
        data.train.num_samples,
        data.val.num_samples if data.val is not None else 0,
        data.test.num_samples,
        f" per rank ({world_size()} ranks)" if world_size() > 1 else "",
        device,
        precision,
    )
    return Session(
        cfg=cfg,
        run_dir=run_dir,
        device=device,
        precision=precision,
        data=data,
        logger=logger,
        show_bars=is_main() and bars_enabled(t.progress, multirun),
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
    """Test the selected checkpoint, write summary.json and print the closing line.

    Every rank tests (its shard) and returns the summary; rank 0 writes the files.
    """
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
        "world_size": world_size(),
        "precision": trainer.precision,
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
    if is_main():
        write_results(session, summary, confusion)
    session.logger.close()
    log.info(closing_line(summary))
    return summary


def write_results(session: Session, summary: dict[str, Any], confusion: torch.Tensor) -> None:
    """The run's closing files: confusion.csv/png, summary.json, the TensorBoard entries."""
    from kdlab.report import write_confusion_png  # matplotlib: paid only by finished runs

    class_names = session.data.class_names
    write_confusion_csv(confusion, class_names, session.run_dir / "confusion.csv")
    png = write_confusion_png(
        confusion.tolist(),
        class_names,
        session.run_dir / "confusion.png",
        f"{summary['model']} ({summary['command']}) on {summary['data']} test: "
        f"{summary['test_acc']:.2f}%",
    )
    session.logger.image("test/confusion", png, summary["best_epoch"])
    write_json_atomic(summary, session.run_dir / "summary.json")
    session.logger.hparams(
        run_hparams(summary),
        {f"hparam/{k}": summary[k] for k in ("val_acc", "test_acc", "train_acc")},
    )


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
