"""Setting a run up: the run dir guarded, the runtime configured, the data loaded.

Commands stay thin: `open_session` guards the run dir, seeds and loads data (the config was
checked once before Hydra started); `build_model_to_train` makes the model `model=` names;
`test_selected` measures the selected checkpoint on the test split. Under torchrun every rank
runs all of them (loading its shard, testing its part of the split); only rank 0 writes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdlab.data import DataBundle, build_data
from kdlab.data.choices import imagenet_inputs
from kdlab.engine.checkpoint import Checkpoint
from kdlab.engine.distributed import is_main, rank, world_size
from kdlab.engine.execution import resolve_precision, seed_everything, setup_runtime
from kdlab.engine.run_logger import NullLogger, RunLogger, bars_enabled
from kdlab.engine.trackers import open_trackers
from kdlab.engine.trainer import RunPlace, Trainer
from kdlab.models import build_model, build_options
from kdlab.runs.run_dir import flat, guard_run_dir
from kdlab.runs.schema import RunConfig

log = logging.getLogger("kdlab")


@dataclass
class Session:
    """A run in progress: its config, directory, device, data and logger."""

    cfg: RunConfig
    run_dir: Path
    device: torch.device
    precision: str  # trainer.precision resolved for the device (`auto` -> bf16 or 32)
    data: DataBundle
    logger: RunLogger
    show_bars: bool
    resume_state: Checkpoint | None
    overrides: list[str]
    started: float

    def trainer(self, model: nn.Module, teacher: dict[str, Any] | None = None) -> Trainer:
        """The trainer of `model`; `teacher` (path, sha256) is kept in every checkpoint."""
        place = RunPlace(
            self.run_dir,
            self.device,
            self.precision,
            self.logger,
            self.show_bars,
            asdict(self.cfg),
            teacher or {},
        )
        return Trainer(model, self.data, self.cfg.trainer, self.cfg.optim, self.cfg.sched, place)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, error_type: type[BaseException] | None, *_: object) -> None:
        """A run that stops on an error closes its record and marks its trackers' runs
        failed (an MLflow run is not left RUNNING); a finished one closed at its summary."""
        self.logger.close(failed=error_type is not None)


def hydra_run_info() -> tuple[Path, list[str], bool]:
    """The run dir, the task overrides and whether this job is part of a multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    return Path(hc.runtime.output_dir), list(hc.overrides.task), hc.mode == RunMode.MULTIRUN


def open_session(cfg: RunConfig, teacher_config: dict[str, Any] | None = None) -> Session:
    """Guard the run dir, set up the runtime and load the data. `data.normalize=auto` gives
    ImageNet statistics to a pretrained model, and a student its teacher's normalisation
    (`teacher_config`: the teacher run's resolved config)."""
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
        pretrained=imagenet_inputs(cfg.model, teacher_config),
    )
    log.info("data: augment %s, normalisation %s", data.augment, data.normalization)
    resume_epoch = resume_state.epoch if resume_state else 0
    logger: RunLogger = NullLogger()
    if is_main():
        trackers = open_trackers(cfg.logger, run_dir, flat(asdict(cfg)), resume_epoch)
        logger = RunLogger(run_dir, resume_epoch=resume_epoch, trackers=trackers)
    log.info(
        "%s on %s: %s (%d classes), %d train%s / %s val / %d test images%s, device %s, "
        "precision %s",
        cfg.command,
        run_dir,
        data.name,
        data.num_classes,
        data.train.num_samples,
        dropped_note(data, t.batch_size),
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


def dropped_note(data: DataBundle, batch_size: int) -> str:
    """What the first log line says when the last partial batch is left out of each epoch."""
    if not data.dropped:
        return ""
    return (
        f" (of {data.train_images}: each epoch leaves out a different {data.dropped}, the last "
        f"partial batch; a multiple of trainer.batch_size={batch_size} trains on all)"
    )


def build_model_to_train(session: Session) -> nn.Module:
    """The model `model=` names (seeded, on the device, channels_last if asked): the teacher
    of `kdlab train model=resnet_teacher`, the student of distill and fitnet."""
    cfg = session.cfg
    seed_everything(cfg.seed)  # the same init whatever was built before (e.g. a teacher)
    # A resumed run's weights come from its checkpoint: no pretrained weights read (or fetched)
    options = build_options(cfg.model, pretrained=session.resume_state is None)
    data = session.data
    model = build_model(cfg.model["arch"], data.num_classes, data.in_channels, **options)
    model = model.to(session.device)
    if cfg.trainer.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def test_selected(session: Session, trainer: Trainer) -> dict[str, Any]:
    """The test split's figures (loss, acc, acc5, confusion) of the selected checkpoint,
    best.pt, plus `last_acc` of the last epoch's (last.pt): measured once, at the end, never
    used for selection. Both, because published tables differ in which epoch they report."""
    ckpts = session.run_dir / "checkpoints"
    last = Checkpoint.read(ckpts / "last.pt", session.device)
    best = Checkpoint.read(ckpts / "best.pt", session.device)
    if (best.stage, best.epoch) == (last.stage, last.epoch):  # the last epoch was the best
        test = trainer.test_accuracy(best.model)
        return test | {"last_acc": test["acc"]}
    last_acc = trainer.test_accuracy(last.model)["acc"]
    return trainer.test_accuracy(best.model) | {"last_acc": last_acc}
