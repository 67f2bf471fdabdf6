"""What every measurement shares: settings, device, synthetic data, the staged batch and the
reference loader, opened once per script run."""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from benchlib.core import run_config, synthetic_data
from benchlib.reference import reference_loader
from benchlib.timing import Measurement, Plan, Work, measure_together, note, repeated
from kdlab.data import DataBundle
from kdlab.data.device_loader import DeviceLoader
from kdlab.engine.execution import resolve_precision, seed_everything, setup_runtime
from kdlab.engine.optim import build_optimizer
from kdlab.models import build_model
from kdlab.runs.schema import RunConfig

TEACHER = "resnet_teacher"

Batch = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class Bench:
    """What every measurement shares: settings, device, data and the staged batch."""

    cfg: RunConfig
    plan: Plan
    device: torch.device
    data: DataBundle
    batch: Batch  # one normalised training batch already on the device
    reference_loader: DataLoader
    run_root: Path  # throwaway run dirs of the kdlab fits

    @property
    def batch_size(self) -> int:
        return int(self.cfg.trainer.batch_size)

    @property
    def precision(self) -> str:
        """trainer.precision as the Trainer resolves it (auto -> bf16 or 32)."""
        return resolve_precision(self.cfg.trainer.precision, self.device)

    def block(self, name: str, step: Callable[[], object]) -> Work:
        """`block_steps` calls of a step on the staged batch, as one work."""
        return repeated(name, step, self.plan.block_steps, self.batch_size)

    def measure(self, works: Sequence[Work]) -> dict[str, Measurement]:
        """The works timed together, in this plan's rounds."""
        return measure_together(works, self.plan.rounds, self.device)


def open_bench(args: argparse.Namespace, plan: Plan, run_root: Path) -> Bench:
    """Settings, device, synthetic data and the staged batch every measurement shares."""
    cfg = run_config(args, plan, TEACHER)
    device = setup_runtime(cfg.trainer, cfg.seed)
    note(f"generating {plan.train_images:,} synthetic images")
    data = synthetic_data(cfg, device)
    assert isinstance(data.train, DeviceLoader)  # synthetic data is always device-resident
    return Bench(
        cfg=cfg,
        plan=plan,
        device=device,
        data=data,
        batch=next(iter(data.train)),
        reference_loader=reference_loader(data.train, args.batch_size, device),
        run_root=run_root,
    )


@contextmanager
def opened_bench(args: argparse.Namespace, plan: Plan, prefix: str) -> Iterator[Bench]:
    """A bench whose kdlab run dirs live in a temporary directory removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield open_bench(args, plan, Path(tmp))


def new_model(name: str, bench: Bench, channels_last: bool) -> nn.Module:
    """A freshly initialised model on the device, so no measurement inherits another's state."""
    seed_everything(int(bench.cfg.seed))
    model = build_model(name, bench.data.num_classes).to(bench.device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def kdlab_model(name: str, bench: Bench) -> nn.Module:
    return new_model(name, bench, bool(bench.cfg.trainer.channels_last))


def kdlab_optimizer(model: nn.Module, bench: Bench) -> torch.optim.Optimizer:
    """kdlab's own optimizer (SGD nesterov, foreach on CPU, fused on CUDA)."""
    return build_optimizer([{"params": list(model.parameters())}], bench.cfg.optim, bench.device)
