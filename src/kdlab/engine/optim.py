"""Optimizers and the learning-rate schedule (one small function, stepped per batch).

The settings and their defaults live here, once: `OPTIMIZERS` and `SCHEDULES` are the
options of the `optim=` and `sched=` config groups (registered by kdlab.runs.config).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from kdlab.engine.dot import DOT


@dataclass
class OptimConfig:
    """`optim=sgd|adamw|dot`; no weight decay on biases and norm weights."""

    name: str = "sgd"
    lr: float = 0.05  # peak learning rate
    momentum: float = 0.9  # sgd
    nesterov: bool = True  # sgd
    weight_decay: float = 5e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adamw
    delta: float = 0.075  # dot: momentum +- delta for the distillation / task gradients


@dataclass
class SchedConfig:
    """`sched=cosine|multistep|onecycle|constant`, stepped per batch."""

    name: str = "cosine"
    warmup_epochs: float = 0.0  # linear warmup from 0, counted in (fractional) epochs
    min_lr_ratio: float = 0.0  # cosine/onecycle floor as a fraction of the peak lr
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])  # multistep: fractions
    gamma: float = 0.1  # multistep: decay factor at each milestone
    pct_start: float = 0.25  # onecycle: fraction of training spent rising linearly


OPTIMIZERS: dict[str, OptimConfig] = {
    "sgd": OptimConfig(),
    "adamw": OptimConfig(name="adamw", lr=2e-3, weight_decay=0.05),
    # mdistiller configs/cifar100/dot/*.yaml (@a08d46f): SGD momentum 0.9, DOT.DELTA 0.075.
    "dot": OptimConfig(name="dot", nesterov=False),
}
SCHEDULES: dict[str, SchedConfig] = {
    name: SchedConfig(name=name) for name in ("cosine", "multistep", "onecycle", "constant")
}


def build_optimizer(
    param_groups: Iterable[dict[str, Any]], cfg: OptimConfig, device: torch.device
) -> torch.optim.Optimizer:
    """SGD (momentum, nesterov), AdamW or DOT (kdlab.engine.dot); no weight decay on biases
    and norm weights.

    Each group may carry `lr_scale` (e.g. FitNet fine-tuning of the pre-trained part);
    the group's lr is the scheduled lr times that scale.
    """
    groups = []
    for group in param_groups:
        params = [p for p in group["params"] if p.requires_grad]
        scale = group.get("lr_scale", 1.0)
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        for ps, wd in ((decay, cfg.weight_decay), (no_decay, 0.0)):
            if ps:
                groups.append({"params": ps, "weight_decay": wd, "lr_scale": scale})
    if cfg.name == "dot":
        return DOT(groups, lr=cfg.lr, momentum=cfg.momentum, delta=cfg.delta)
    fused = {"fused": True} if device.type == "cuda" else {"foreach": True}
    if cfg.name == "sgd":
        return torch.optim.SGD(
            groups,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov and cfg.momentum > 0,
            **fused,
        )
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), **fused)


def lr_factor(step: int, total_steps: int, steps_per_epoch: int, sched: SchedConfig) -> float:
    """The multiplier of the peak lr at optimizer step `step` (0-based) of `total_steps`."""
    warmup = int(sched.warmup_epochs * steps_per_epoch)
    if sched.name == "onecycle":
        warmup = max(1, int(sched.pct_start * total_steps))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    floor = sched.min_lr_ratio
    if sched.name in ("cosine", "onecycle"):
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    if sched.name == "multistep":
        passed = sum(step >= m * total_steps for m in sched.milestones)
        return sched.gamma**passed
    return 1.0


def build_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, steps_per_epoch: int, sched: SchedConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step LambdaLR; each group's lr is its scale times the shared factor."""
    factors = [
        (lambda step, s=g["lr_scale"]: s * lr_factor(step, total_steps, steps_per_epoch, sched))
        for g in optimizer.param_groups
    ]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factors)
