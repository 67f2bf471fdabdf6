"""The benchmarks' only calls into kdlab's run set-up (compose_config, build_data, Trainer,
a method's objective), one function each, so a change of those APIs is adapted here and
nowhere else."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from benchlib.timing import Plan
from kdlab.data import DataBundle, build_data
from kdlab.engine.execution import resolve_precision
from kdlab.engine.objective import CrossEntropy, Objective
from kdlab.engine.run_logger import RunLogger
from kdlab.engine.stage import Stage
from kdlab.engine.trainer import RunPlace, Trainer
from kdlab.methods.registry import build_method
from kdlab.methods.teacher import FrozenTeacher
from kdlab.runs.preflight import compose_config
from kdlab.runs.schema import RunConfig

TEST_IMAGES = 100  # build_data needs a test split; nothing here evaluates it


def run_config(args: argparse.Namespace, plan: Plan, arch: str) -> RunConfig:
    """A full, checked kdlab config, so the Trainer runs exactly as `kdlab train` would."""
    threads = "null" if args.threads is None else args.threads
    return compose_config(
        "train",
        [
            f"model={arch}",  # replaced per model
            "data=synthetic",
            f"data.train_size={plan.train_images}",
            f"data.test_size={TEST_IMAGES}",
            "data.val_split=0",  # no evaluation inside the timed epochs
            f"trainer.device={args.device}",
            f"trainer.batch_size={args.batch_size}",
            f"trainer.precision={args.precision}",
            f"trainer.channels_last={args.channels_last}",
            f"trainer.num_threads={threads}",
            "trainer.progress=off",
        ],
    )


def synthetic_data(cfg: RunConfig, device: torch.device) -> DataBundle:
    """The synthetic data set of `cfg`, served on `device` as a kdlab run serves it."""
    return build_data(
        cfg.data,
        batch_size=cfg.trainer.batch_size,
        eval_batch_size=cfg.trainer.eval_batch_size,
        device=device,
        seed=cfg.seed,
        channels_last=cfg.trainer.channels_last,
    )


def one_epoch_fit(
    cfg: RunConfig,
    run_dir: Path,
    data: DataBundle,
    model: nn.Module,
    device: torch.device,
    closing: ExitStack,
) -> Callable[[], object]:
    """A call of a real 1-epoch `Trainer.fit` (optimizer set-up, the epoch, its logging and
    checkpoints) into `run_dir`; its logger is closed with `closing`."""
    run_dir.mkdir()
    logger = RunLogger(run_dir)
    closing.callback(logger.close)
    precision = resolve_precision(cfg.trainer.precision, device)
    place = RunPlace(run_dir, device, precision, logger, False, asdict(cfg))
    trainer = Trainer(model, data, cfg.trainer, cfg.optim, cfg.sched, place)
    stage = Stage(
        name="bench",
        objective=CrossEntropy(),
        param_groups=[{"params": list(model.parameters())}],
        epochs=1,
    )
    return lambda: trainer.fit(stage)


def method_objective(
    name: str, teacher: FrozenTeacher, student: nn.Module, image_size: int
) -> Objective:
    """`loss=NAME`'s objective with its reference defaults, as `kdlab distill` builds it."""
    cfg = compose_config("distill", [f"loss={name}", "data=synthetic", "trainer.progress=off"])
    return build_method(cfg, teacher, student, image_size)


def folder_data(
    root: Path,
    image_size: int,
    batch_size: int,
    device: torch.device,
    in_memory: bool,
    decode: str = "host",
) -> DataBundle:
    """The image folder under `root` as `kdlab train data=imagefolder data.augment=imagenet`
    serves it: decoded into memory first (`in_memory`) or streamed from the files, decoded
    in the workers or (`decode="device"`) on the training device."""
    cfg = compose_config(
        "train",
        [
            "model=resnet8",  # unused: build_data needs only the data settings
            "data=imagefolder",
            f"data.root={root}",
            f"data.image_size={image_size}",
            "data.augment=imagenet",
            "data.val_split=0",
            f"data.in_memory_max_mb={4096 if in_memory else 0}",
            f"data.decode={decode}",
            f"trainer.device={device.type}",
        ],
    )
    return build_data(
        cfg.data, batch_size=batch_size, eval_batch_size=batch_size, device=device, seed=0
    )


def streamed_workers(data: DataBundle) -> int:
    """How many DataLoader workers kdlab's stream loader runs (data.num_workers=auto)."""
    return data.train._loader.num_workers  # type: ignore[attr-defined]
