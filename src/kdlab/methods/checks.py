"""The checks of `loss=` settings that need the registry, run by kdlab.runs.validation."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import torch

from kdlab.errors import KdlabError
from kdlab.methods.base import LossConfig
from kdlab.methods.points import chosen_points
from kdlab.methods.registry import logit_methods, method
from kdlab.models import build_model, build_options


def check_loss_settings(loss: LossConfig) -> None:
    """A known method whose numbers (weights, warm-up, p) are all finite and >= 0, and its own
    bounds."""
    method(loss.name)
    for f in fields(loss):
        value = getattr(loss, f.name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if not math.isfinite(value):
            raise KdlabError(
                f"loss.{f.name} must be a finite number for loss={loss.name}, got {value} "
                f"(set loss.{f.name}=N with N >= 0)"
            )
        if value < 0:
            raise KdlabError(
                f"loss.{f.name} must be >= 0 for loss={loss.name}, got {value} "
                f"(set loss.{f.name}=N with N >= 0)"
            )
    loss.check()


def check_student_taps(loss: Any, model_cfg: Mapping[str, Any]) -> None:
    """A feature method's student has the points it taps (built on the meta device: no
    memory, no cost); the teacher's are checked when it is loaded."""
    kind = method(loss.name).taps
    if kind in ("none", "logits"):
        return
    options = build_options(model_cfg, pretrained=False)  # the points are the architecture's
    with torch.device("meta"):
        student = build_model(str(model_cfg["arch"]), 10, **options)
    chosen_points(student, kind, loss.name, "student", loss.student_points)


def check_stage2_loss(loss: LossConfig) -> None:
    """`kdlab fitnet`'s stage two distils the logits: any method that taps only them."""
    logit = logit_methods()
    if loss.name not in logit:
        raise KdlabError(
            f"kdlab fitnet's stage two takes a logit method, not loss={loss.name}: choose one "
            f"of {', '.join(logit)} (loss=NAME)"
        )
