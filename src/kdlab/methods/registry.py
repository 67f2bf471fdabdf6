"""`loss=NAME` -> its method class, and building a run's method from the config.

Every built-in method module is imported here, so no name depends on import order; a
method from outside kdlab comes in through a plugin (KDLAB_PLUGINS or the `kdlab.methods`
entry points, kdlab.runs.plugins), imported before the config is composed. The `loss=` config
group, the checks, the logit cache's choice and the summary follow from the class.
"""

from __future__ import annotations

import logging
from importlib import import_module
from typing import Any, Protocol

from kdlab.errors import KdlabError
from kdlab.methods.base import METHODS, Method, MethodContext
from kdlab.methods.names import BUILT_IN
from kdlab.methods.settings import LossConfig
from kdlab.methods.teacher import FrozenTeacher

log = logging.getLogger("kdlab")

for _module in BUILT_IN:
    import_module(f"kdlab.methods.{_module}")


def method(name: str) -> type[Method]:
    if name not in METHODS:
        raise KdlabError(f"unknown loss '{name}': choose one of {', '.join(METHODS)} (loss=NAME)")
    return METHODS[name]


def logit_methods() -> list[str]:
    """The methods that read only the teacher's logits (FitNets' stage two takes these)."""
    return [name for name, cls in METHODS.items() if cls.taps == "logits"]


def group_options() -> dict[str, LossConfig]:
    """The `loss=` config group: each method's settings with their reference defaults."""
    return {name: cls.settings_class() for name, cls in METHODS.items()}


class DistillSettings(Protocol):
    """What building a method reads of a `runs.schema.DistillConfig` (a layer above)."""

    loss: LossConfig
    T: float
    alpha: float
    trainer: Any  # label_smoothing, epochs
    model: Any  # a mapping: arch, options
    teacher: Any  # cache


def build_method(
    cfg: DistillSettings,
    teacher: FrozenTeacher | None,
    student: Any,
    image_size: int,
    train_images: int = 0,
) -> Method:
    """The method of `cfg.loss` (a feature method's taps checked now, by one dummy forward
    each side); `train_images` sizes per-sample state (CRD's memory bank)."""
    context = MethodContext(
        teacher=teacher,
        student=student,
        T=cfg.T,
        alpha=cfg.alpha,
        image_size=image_size,
        label_smoothing=cfg.trainer.label_smoothing,
        train_images=train_images,
        epochs=cfg.trainer.epochs,
        student_arch=str(cfg.model["arch"]),
    )
    chosen = method(cfg.loss.name)
    built = chosen(cfg.loss, context)
    log.info("loss=%s: %s", cfg.loss.name, chosen.summary)
    return built


def uses_logit_cache(cfg: DistillSettings) -> bool:
    """The cache serves exactly the methods that read only the teacher's logits."""
    return cfg.teacher.cache and method(cfg.loss.name).taps == "logits"


def cache_off_reason(cfg: DistillSettings) -> str:
    """Why summary.json's teacher.logit_cache is null."""
    if not cfg.teacher.cache:
        return "teacher.cache=false"
    return f"loss={cfg.loss.name} taps the teacher's features: it runs every step"
