"""What a run of the grid costs, counted simply, so a plan can be sized before it runs.

A training step costs about 3 forward passes (the backward pass about 2), a frozen teacher
1. With F the forward FLOPs of one 32x32 image (convolutions and matrix products, counted by
torch's FlopCounterMode on the model as built for 100 classes):

    train run      cost = epochs                       work = epochs * 3 F_s
    distill run    cost = epochs * (1 + F_t / (3 F_s))  work = epochs * (3 F_s + F_t)

`cost` is in epochs of the run's own model trained alone (student-epoch equivalents), `work`
in FLOPs per training image over the whole run (times the images per epoch: the total).
Counted as if the teacher ran every step: the logit cache makes later kd/dkd runs of a
teacher cheaper. An init stage (AB, FT, FSP) counts as that many epochs of the method (FT's,
which runs no student, costs less). Not counted: evaluation, the methods' own modules
(regressors, embeddings, CRD's memory bank) and anything a step spends besides FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import torch
from torch.utils.flop_counter import FlopCounterMode

from kdlab.grid.plan import Job
from kdlab.models import build_model

TRAIN_PASSES = 3  # forward + backward, in forward passes


@cache
def forward_flops(arch: str, num_classes: int = 100) -> float:
    """Forward FLOPs of one 32x32 RGB image through `arch`, counted from the shapes alone
    (built and run on the meta device: no weights, no arithmetic)."""
    with torch.device("meta"):
        model = build_model(arch, num_classes).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 32, 32, device="meta"))
    return float(counter.get_total_flops())


@dataclass(frozen=True)
class Cost:
    epochs: float  # student-epoch equivalents: epochs of the trained model alone
    flops_per_image: float  # the whole run's training FLOPs per training image


def job_cost(job: Job) -> Cost:
    student = forward_flops(job.model)
    teacher = forward_flops(job.teacher) if job.teacher else 0.0
    per_epoch = TRAIN_PASSES * student + teacher
    return Cost(job.epochs * per_epoch / (TRAIN_PASSES * student), job.epochs * per_epoch)
