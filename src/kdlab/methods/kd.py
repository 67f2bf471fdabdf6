"""Hinton's KD, `loss=kd`: L = (1 - alpha) * T^2 * L_soft + alpha * L_hard (objectives)."""

from __future__ import annotations

from dataclasses import dataclass

from kdlab.methods.base import LossConfig, Method, MethodContext
from kdlab.methods.objectives import Distillation
from kdlab.methods.standardize import standardize_logits


@dataclass
class KdConfig(LossConfig):
    """T and alpha are top-level keys (T=4 alpha=0.1), as before the registry; RepDistiller's
    CIFAR setting is T 4, -r 0.1 -a 0.9 (alpha 0.1 here weighs the hard term)."""

    name: str = "kd"
    standardize: bool = False  # z-score logits before T (Sun et al. 2024)


def build(cfg: KdConfig, context: MethodContext) -> Distillation:
    assert context.teacher is not None
    transform = standardize_logits if cfg.standardize else None
    return Distillation(context.teacher, T=context.T, alpha=context.alpha, soft_transform=transform)


METHOD = Method(KdConfig, build, "logits", "soft targets at temperature T (Hinton et al. 2015)")
