"""`kdlab distill`: a student against a frozen teacher (loss=kd), or the baseline (loss=ce)."""

from __future__ import annotations

from typing import Any

from kdlab.config import DistillConfig
from kdlab.engine import Stage, run_stages
from kdlab.logit_cache import CachedLogitLoader
from kdlab.objectives import CrossEntropy, Distillation, Objective
from kdlab.session import build_model_to_train, open_session, test_selected
from kdlab.summary import write_summary
from kdlab.teacher import prepare_teacher, read_teacher, teacher_batches


def run(cfg: DistillConfig) -> dict[str, Any]:
    checkpoint = read_teacher(cfg) if cfg.loss.name == "kd" else None
    session = open_session(cfg)
    extra: dict[str, Any] = {"loss_name": cfg.loss.name}
    objective: Objective = CrossEntropy(cfg.trainer.label_smoothing)
    batches: CachedLogitLoader | None = None  # teacher logits from the cache
    if checkpoint is not None:
        teacher, extra["teacher"] = prepare_teacher(checkpoint, session)
        objective = Distillation(teacher, T=cfg.T, alpha=cfg.alpha)
        batches = teacher_batches(teacher, checkpoint, session)
    model = build_model_to_train(session)
    trainer = session.trainer(model)
    stage = Stage(
        name="distill",
        objective=objective,
        param_groups=[{"params": list(model.parameters())}],
        epochs=cfg.trainer.epochs,
        train=batches,
    )
    results = run_stages(trainer, [stage], session.resume_state)
    test = test_selected(session, trainer)
    if checkpoint is not None:
        extra["teacher"]["logit_cache"] = batches.stats() if batches is not None else None
    extra.update(objective.summary_fields())
    return write_summary(session, trainer, results, test, extra)
