"""The benchmarks' only calls into kdlab's run set-up (RunConfig, build_data, Trainer), one
function each, so a change of those APIs is adapted here and nowhere else."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from benchlib.timing import Plan
from kdlab.config import RunConfig
from kdlab.data import DataBundle, build_data
from kdlab.engine import Stage, Trainer
from kdlab.objectives import CrossEntropy
from kdlab.runlog import RunLogger

TEST_IMAGES = 100  # build_data needs a test split; nothing here evaluates it


def run_config(args: argparse.Namespace, plan: Plan, arch: str) -> DictConfig:
    """A full kdlab config, so the Trainer runs exactly as `kdlab train` would."""
    overrides = {
        "command": "bench",
        "model": {"arch": arch},  # replaced per model
        "data": {
            "name": "synthetic",
            "train_size": plan.train_images,
            "test_size": TEST_IMAGES,
            "val_split": 0.0,  # no evaluation inside the timed epochs
        },
        "trainer": {
            "device": args.device,
            "batch_size": args.batch_size,
            "precision": args.precision,
            "channels_last": args.channels_last,
            "num_threads": args.threads,
            "progress": "off",
        },
    }
    return OmegaConf.merge(OmegaConf.structured(RunConfig), overrides)


def synthetic_data(cfg: DictConfig, device: torch.device) -> DataBundle:
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
    cfg: DictConfig,
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
    trainer = Trainer(cfg, run_dir, data, model, device, logger, show_bars=False)
    stage = Stage(
        name="bench",
        objective=CrossEntropy(),
        param_groups=[{"params": list(model.parameters())}],
        epochs=1,
    )
    return lambda: trainer.fit(stage)
