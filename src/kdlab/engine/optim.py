"""Optimizers and the learning-rate schedule (one small function, stepped per batch), built
from `optim.*` and `sched.*` (kdlab.engine.settings)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from kdlab.engine.dot import DOT
from kdlab.engine.settings import OptimConfig, SchedConfig


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
