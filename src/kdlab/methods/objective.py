"""Build a run's objective from `loss=`, and say where the teacher's logits come from."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from kdlab.engine.objective import Objective
from kdlab.methods.base import LossConfig, MethodContext
from kdlab.methods.objectives import FrozenTeacher
from kdlab.methods.registry import method

log = logging.getLogger("kdlab")


class DistillSettings(Protocol):
    """What this module reads of a `config.DistillConfig` (config is a layer above)."""

    loss: LossConfig
    T: float
    alpha: float
    trainer: Any  # label_smoothing
    teacher: Any  # cache


def build_objective(
    cfg: DistillSettings,
    teacher: FrozenTeacher | None,
    student: Any,
    image_size: int,
    train_images: int = 0,
) -> Objective:
    """The objective of `cfg.loss` (its shapes checked now, by one dummy forward each side);
    `train_images` sizes per-sample state (CRD's memory bank)."""
    context = MethodContext(
        teacher=teacher,
        student=student,
        T=cfg.T,
        alpha=cfg.alpha,
        image_size=image_size,
        label_smoothing=cfg.trainer.label_smoothing,
        train_images=train_images,
    )
    chosen = method(cfg.loss.name)
    objective = chosen.build(cfg.loss, context)
    log.info("loss=%s: %s", cfg.loss.name, chosen.summary)
    return objective


def uses_logit_cache(cfg: DistillSettings) -> bool:
    """The cache serves exactly the methods that read only the teacher's logits."""
    return cfg.teacher.cache and method(cfg.loss.name).taps == "logits"


def cache_off_reason(cfg: DistillSettings) -> str:
    """Why summary.json's teacher.logit_cache is null."""
    if not cfg.teacher.cache:
        return "teacher.cache=false"
    return f"loss={cfg.loss.name} taps the teacher's features: it runs every step"
