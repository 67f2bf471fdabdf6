"""The checks of `loss=` settings that need the registry, run by kdlab.runs.validation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import torch

from kdlab.methods.names import check_stage2_method, check_view_count
from kdlab.methods.numbers import check_bound, check_number
from kdlab.methods.points import chosen_points
from kdlab.methods.registry import logit_methods, method
from kdlab.methods.settings import LossConfig
from kdlab.models import build_model, build_options


def check_loss_settings(loss: LossConfig) -> None:
    """A known method whose numbers (weights, warm-up, p) are all finite and >= 0, its bounds
    declared as data (`Method.bounds`), then its own `check`."""
    chosen = method(loss.name)
    for f in fields(loss):
        value = getattr(loss, f.name)
        if not isinstance(value, bool) and isinstance(value, int | float):
            check_number(loss.name, f.name, value)
    for bound in chosen.bounds:
        switched_on = not bound.when or bool(getattr(loss, bound.when))
        check_bound(loss.name, bound, getattr(loss, bound.key), switched_on)
    loss.check()


def check_views(loss_name: str | None, views: str) -> None:
    """data.views gives each training image as many views as the method reads (`uses_views`);
    `loss_name` None: a command that trains without a method (kdlab train, fitnet), one view."""
    check_view_count(loss_name, 1 if loss_name is None else method(loss_name).uses_views, views)


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
    """`kdlab fitnet`'s stage two distils the logits: any method that taps only them, on one
    view of each image."""
    check_stage2_method(loss.name, stage2_methods())


def stage2_methods() -> list[str]:
    """The registered methods `kdlab fitnet`'s stage two takes."""
    return [name for name in logit_methods() if method(name).uses_views == 1]
