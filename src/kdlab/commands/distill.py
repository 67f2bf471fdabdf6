"""`kdlab distill`: a student against a frozen teacher with any registered method (`loss=`),
or the baseline (`loss=ce`)."""

from __future__ import annotations

from typing import Any

from kdlab.config import DistillConfig
from kdlab.engine import Stage, run_stages
from kdlab.logit_cache import CachedLogitLoader, cache_refusal
from kdlab.methods.objective import build_objective, cache_off_reason, uses_logit_cache
from kdlab.methods.registry import method
from kdlab.objectives import FrozenTeacher
from kdlab.session import build_model_to_train, open_session, test_selected
from kdlab.summary import write_summary
from kdlab.teacher import prepare_teacher, read_teacher, teacher_batches


def run(cfg: DistillConfig) -> dict[str, Any]:
    needs_teacher = method(cfg.loss.name).needs_teacher
    checkpoint = read_teacher(cfg) if needs_teacher else None
    session = open_session(cfg, checkpoint.state.config if checkpoint else None)
    extra: dict[str, Any] = {"loss_name": cfg.loss.name}
    teacher: FrozenTeacher | None = None
    batches: CachedLogitLoader | None = None  # teacher logits from the cache
    if checkpoint is not None:
        teacher, extra["teacher"] = prepare_teacher(checkpoint, session)
    model = build_model_to_train(session)
    objective = build_objective(cfg, teacher, model, session.data.image_size)
    if checkpoint is not None and teacher is not None and uses_logit_cache(cfg):
        batches = teacher_batches(teacher, checkpoint, session)
    trainer = session.trainer(model)
    stage = Stage(
        name="distill",
        objective=objective,
        # the method's own parameters (a hint regressor) train with the student
        param_groups=[{"params": [*model.parameters(), *objective.parameters()]}],
        epochs=cfg.trainer.epochs,
        train=batches,
    )
    results = run_stages(trainer, [stage], session.resume_state)
    test = test_selected(session, trainer)
    if checkpoint is not None:
        extra["teacher"]["logit_cache"] = batches.stats() if batches is not None else None
        if batches is None:
            train = session.data.train
            off = cache_refusal(train) if uses_logit_cache(cfg) else cache_off_reason(cfg)
            extra["teacher"]["logit_cache_off"] = off
    extra.update(objective.summary_fields())
    return write_summary(session, trainer, results, test, extra)
