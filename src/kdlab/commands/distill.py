"""`kdlab distill`: a student against a frozen teacher (loss=kd), or the baseline (loss=ce)."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from kdlab.engine import Stage
from kdlab.logit_cache import CachedLogitLoader
from kdlab.objectives import CrossEntropy, Distillation, Objective
from kdlab.session import build_student, finish, open_session
from kdlab.teacher import prepare_teacher, read_teacher, teacher_batches


def run(cfg: DictConfig) -> dict[str, Any]:
    checkpoint = read_teacher(cfg) if cfg.loss.name == "kd" else None
    session = open_session(cfg)
    teacher_info: dict[str, Any] | None = None
    objective: Objective
    batches: CachedLogitLoader | None = None  # teacher logits from the cache
    if checkpoint is not None:
        teacher, teacher_info = prepare_teacher(cfg, checkpoint, session)
        objective = Distillation(teacher, T=cfg.T, alpha=cfg.alpha)
        batches = teacher_batches(cfg, teacher, checkpoint, session)
    else:
        objective = CrossEntropy(cfg.trainer.label_smoothing)
    model = build_student(session)
    trainer = session.trainer(model)
    stage = Stage(
        name="distill",
        objective=objective,
        param_groups=[{"params": list(model.parameters())}],
        epochs=cfg.trainer.epochs,
        train=batches,
    )
    result = trainer.fit(stage, resume=session.resume_state)
    extra: dict[str, Any] = {"loss_name": cfg.loss.name}
    if teacher_info is not None:
        teacher_info["logit_cache"] = batches.stats() if batches is not None else None
        extra.update({"T": cfg.T, "alpha": cfg.alpha, "teacher": teacher_info})
    return finish(session, trainer, model, [result], extra)
