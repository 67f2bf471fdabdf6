"""bench.py's measurements of one model: the raw step, a kdlab epoch, the reference loop, the
KD step (online and on cached teacher logits) and the teacher's forward, timed together."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from benchlib.core import one_epoch_fit
from benchlib.reference import reference_epoch
from benchlib.timing import Measurement, Work, note
from benchlib.workbench import Bench, kdlab_model, kdlab_optimizer, new_model
from kdlab.engine.execution import autocast
from kdlab.engine.objective import CrossEntropy, Objective, StepOutput
from kdlab.methods.base import MethodContext
from kdlab.methods.kd import KD
from kdlab.methods.teacher import FrozenTeacher

KD_T, KD_ALPHA = 4.0, 0.1


@dataclass(frozen=True)
class Row:
    """One model's figures; the KD ones are None for the teacher itself."""

    model: str
    raw: Measurement
    kdlab: Measurement
    reference: Measurement
    kd: Measurement | None = None
    kd_cost_ratio: float | None = None  # KD time / (student step + teacher forward) time
    kd_cached: Measurement | None = None  # KD with the teacher's logits from the cache

    @property
    def kd_cached_ratio(self) -> float | None:
        """Cached KD step time / student step time: 1.00 means KD costs a student step."""
        if self.kd_cached is None:
            return None
        return self.kd_cached.seconds_per_image / self.raw.seconds_per_image


def optimizer_step(
    forward: Callable[[], StepOutput], optimizer: torch.optim.Optimizer
) -> Callable[[], None]:
    """A training step around `forward`: its loss backward, then the optimizer's step."""

    def step() -> None:
        out = forward()
        optimizer.zero_grad(set_to_none=True)
        out.losses["loss"].backward()
        optimizer.step()

    return step


def training_step(
    model: nn.Module,
    objective: Objective,
    optimizer: torch.optim.Optimizer,
    batch: tuple[Tensor, ...],
    device: torch.device,
    precision: str,
) -> Callable[[], None]:
    """One step as kdlab's engine takes it (autocast forward, backward, step), on a fixed batch
    (x, y[, teacher logits])."""
    model.train()

    def forward() -> StepOutput:
        with autocast(device, precision):
            return objective(model, *batch)

    return optimizer_step(forward, optimizer)


def step_work(
    label: str, name: str, objective: Objective, bench: Bench, batch: tuple[Tensor, ...]
) -> Work:
    """A freshly built model's kdlab training step on the staged batch."""
    model = kdlab_model(name, bench)
    optimizer = kdlab_optimizer(model, bench)
    step = training_step(model, objective, optimizer, batch, bench.device, bench.precision)
    return bench.block(label, step)


def kdlab_work(name: str, bench: Bench, closing: ExitStack) -> Work:
    """A real 1-epoch `Trainer.fit`: optimizer set-up, the epoch, its logging and checkpoints."""
    model = kdlab_model(name, bench)
    cfg = replace(bench.cfg, model={"arch": name})
    fit = one_epoch_fit(cfg, bench.run_root / name, bench.data, model, bench.device, closing)
    return Work("kdlab", fit, bench.data.train.num_samples)


def reference_work(name: str, bench: Bench) -> Work:
    """The usual script's epochs: fp32, contiguous, plain SGD, PIL pipeline."""
    model = new_model(name, bench, channels_last=False)
    optim = bench.cfg.optim
    optimizer = torch.optim.SGD(
        model.parameters(), lr=optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay
    )
    loader = bench.reference_loader
    return Work(
        "reference",
        lambda: reference_epoch(model, optimizer, loader, bench.device),
        len(loader) * bench.batch_size,
    )


def teacher_forward_work(teacher: FrozenTeacher, bench: Bench) -> Work:
    """The teacher's share of a KD step: its forward pass under inference mode."""
    x = bench.batch[0]

    def forward() -> None:
        with autocast(bench.device, bench.precision):
            teacher.logits(x)

    return bench.block("teacher", forward)


def kd_works(name: str, bench: Bench, teacher: FrozenTeacher) -> list[Work]:
    """The KD step online, the KD step on cached teacher logits, the teacher's forward."""
    x, y = bench.batch
    context = MethodContext(
        teacher, teacher.model, KD_T, KD_ALPHA, bench.data.image_size, label_smoothing=0.0
    )
    distill = KD(KD.settings_class(), context)  # a logit method: it never runs the student
    with autocast(bench.device, bench.precision):
        cached = teacher.logits(x)  # what the logit cache hands a step
    return [
        step_work("kd", name, distill, bench, bench.batch),
        step_work("kd_cached", name, distill, bench, (x, y, cached)),
        teacher_forward_work(teacher, bench),
    ]


def bench_model(name: str, bench: Bench, teacher: FrozenTeacher | None) -> Row:
    """One model's figures, all timed in the same rounds; KD ones when a teacher is given."""
    with ExitStack() as closing:
        works = [
            step_work("raw", name, CrossEntropy(), bench, bench.batch),
            kdlab_work(name, bench, closing),
            reference_work(name, bench),
        ]
        if teacher is not None:
            works += kd_works(name, bench, teacher)
        note(f"{name}: {', '.join(w.name for w in works)}")
        m = bench.measure(works)
    row = Row(name, m["raw"], m["kdlab"], m["reference"])
    if teacher is None:
        return row
    apart = m["raw"].seconds_per_image + m["teacher"].seconds_per_image
    return replace(
        row,
        kd=m["kd"],
        kd_cost_ratio=m["kd"].seconds_per_image / apart,
        kd_cached=m["kd_cached"],
    )
