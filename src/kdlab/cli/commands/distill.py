"""`kdlab distill`: a student against a frozen teacher with any registered method (`loss=`),
or the baseline (`loss=ce`); a method with an init stage (AB, FT, FSP) runs it first."""

from __future__ import annotations

from typing import Any

from torch import nn

from kdlab.engine.fine_tuning import fine_tuning_stages
from kdlab.engine.stage import Stage, parameters_of
from kdlab.engine.stages import run_stages
from kdlab.methods.base import Method
from kdlab.methods.logit_cache import CachedLogitLoader, cache_refusal
from kdlab.methods.registry import build_method, cache_off_reason, method, uses_logit_cache
from kdlab.methods.teacher import FrozenTeacher
from kdlab.runs.schema import DistillConfig
from kdlab.runs.session import build_model_to_train, open_session, test_selected
from kdlab.runs.summary import write_summary
from kdlab.runs.teacher import prepare_teacher, read_teachers, teacher_batches


def method_stages(
    method: Method, model: nn.Module, epochs: int, batches: CachedLogitLoader | None
) -> list[Stage]:
    """The method's init stage, when it asks for one (AB, FT, FSP), then the distillation
    stage: the student with the method's own modules (a hint regressor) but its fixed ones."""
    fixed = method.fixed_modules()
    fixed_ids = {id(p) for p in parameters_of(fixed)}
    trained = [p for p in [*model.parameters(), *method.parameters()] if id(p) not in fixed_ids]
    main = Stage("distill", method, [{"params": trained}], epochs, fixed, train=batches)
    init = method.init_stage(model)
    if init is None:
        return [main]
    groups = [{"params": parameters_of(init.modules), "lr_scale": init.lr_scale}]
    return [Stage("init", init.objective, groups, init.epochs, select="val_loss"), main]


def run(cfg: DistillConfig) -> dict[str, Any]:
    needs_teacher = method(cfg.loss.name).taps != "none"
    teachers = read_teachers(cfg) if needs_teacher else None
    with open_session(cfg, teachers.state.config if teachers else None) as session:
        extra: dict[str, Any] = {"loss_name": cfg.loss.name}
        teacher: FrozenTeacher | None = None
        batches: CachedLogitLoader | None = None  # teacher logits from the cache
        if teachers is not None:
            teacher, extra["teacher"] = prepare_teacher(teachers, session)
        model = build_model_to_train(session)
        data = session.data
        distiller = build_method(cfg, teacher, model, data.image_size, data.train_images)
        if teachers is not None and teacher is not None and uses_logit_cache(cfg):
            batches = teacher_batches(teacher, teachers, session)
        trainer = session.trainer(model, teachers.pin() if teachers else None)
        *init, main = method_stages(distiller, model, cfg.trainer.epochs, batches)
        tuned = fine_tuning_stages(main, model, cfg.model, data.num_classes, data.in_channels)
        stages = [*init, *tuned]
        results = run_stages(trainer, stages, session.resume_state)
        test = test_selected(session, trainer)
        if teachers is not None:
            extra["teacher"]["logit_cache"] = batches.stats() if batches is not None else None
            if batches is None:
                train = session.data.train
                off = cache_refusal(train) if uses_logit_cache(cfg) else cache_off_reason(cfg)
                extra["teacher"]["logit_cache_off"] = off
        extra.update(distiller.summary_fields())
        return write_summary(session, trainer, results, test, extra)
