"""`kdlab fitnet`: FitNets' two stages, run by the engine's multi-stage runner.

Stage one trains the student up to its guided layer (plus a regressor) to match the
teacher's hint layer. Stage two trains with the KD loss, either with that front frozen
(`stage2=frozen`, BatchNorm statistics included) or all of it (`stage2=finetune`), starting
from stage one's selected weights.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from torch import nn

from kdlab.data import BatchLoader
from kdlab.engine.stage import Stage, parameters_of
from kdlab.engine.stages import run_stages
from kdlab.methods.fitnets import HintStage
from kdlab.methods.points import feature_point
from kdlab.methods.registry import build_method
from kdlab.methods.teacher import FrozenTeacher
from kdlab.models import feature_shape, modules_up_to
from kdlab.models.regressor import build_regressor
from kdlab.runs.schema import FitnetRunConfig
from kdlab.runs.session import build_model_to_train, open_session, test_selected
from kdlab.runs.summary import write_summary
from kdlab.runs.teacher import prepare_teacher, read_teachers, teacher_batches

log = logging.getLogger("kdlab")


def stage1_epochs(cfg: FitnetRunConfig) -> int:
    """fitnet.stage1_epochs, or by default an eighth of the training budget (at least 1)."""
    return cfg.fitnet.stage1_epochs or math.ceil(cfg.trainer.epochs / 8)


def hint_stage(
    cfg: FitnetRunConfig, teacher: FrozenTeacher, student: nn.Module, image_size: int
) -> tuple[Stage, list[nn.Module]]:
    """Stage one: the guided prefix of the student and a regressor learn the hint."""
    hint = feature_point(teacher.model, cfg.fitnet.hint_layer)
    guided = feature_point(student, cfg.fitnet.guided_layer)
    regressor = build_regressor(
        cfg.fitnet.regressor,
        feature_shape(student, guided, image_size),
        feature_shape(teacher.model, hint, image_size),
        guided,
        hint,
    ).to(next(student.parameters()).device)
    prefix = modules_up_to(student, guided)
    log.info("fitnet: hint '%s' of the teacher guides '%s' of the student", hint, guided)
    stage = Stage(
        name="stage1",
        objective=HintStage(teacher, hint, guided, regressor),
        param_groups=[
            {
                "params": parameters_of([*prefix, regressor]),
                "lr_scale": cfg.fitnet.stage1_lr / cfg.optim.lr,
            }
        ],
        epochs=stage1_epochs(cfg),
        select="val_loss",
    )
    return stage, prefix


def kd_stage(
    cfg: FitnetRunConfig,
    teacher: FrozenTeacher,
    student: nn.Module,
    prefix: list[nn.Module],
    batches: BatchLoader | None = None,
    image_size: int = 32,
) -> Stage:
    """Stage two: the logit method `loss=` (kd by default) on the rest (frozen) or on all of
    it (finetune, optional lr scale); `batches` carry cached teacher logits (None: the
    teacher runs every step)."""
    prefix_ids = {id(p) for p in parameters_of(prefix)}
    rest = [p for p in student.parameters() if id(p) not in prefix_ids]
    objective = build_method(cfg, teacher, student, image_size)
    if cfg.stage2.mode == "frozen":
        groups = [{"params": rest}]
        return Stage("stage2", objective, groups, cfg.trainer.epochs, prefix, train=batches)
    groups = [
        {"params": parameters_of(prefix), "lr_scale": cfg.fitnet.finetune_lr_scale},
        {"params": rest},
    ]
    return Stage("stage2", objective, groups, cfg.trainer.epochs, train=batches)


def run(cfg: FitnetRunConfig) -> dict[str, Any]:
    teachers = read_teachers(cfg)
    with open_session(cfg, teachers.state.config) as session:
        student = build_model_to_train(session)
        teacher, teacher_info = prepare_teacher(teachers, session)
        trainer = session.trainer(student, teachers.pin())
        stage1, prefix = hint_stage(cfg, teacher, student, session.data.image_size)
        batches = teacher_batches(teacher, teachers, session)
        stage2 = kd_stage(cfg, teacher, student, prefix, batches, session.data.image_size)
        results = run_stages(trainer, [stage1, stage2], session.resume_state)
        test = test_selected(session, trainer)
        teacher_info["logit_cache"] = batches.stats() if batches is not None else None
        extra = {
            "loss_name": cfg.loss.name,
            "stage2": cfg.stage2.mode,
            "regressor": cfg.fitnet.regressor,
            "teacher": teacher_info,
            **stage1.objective.summary_fields(),
            **stage2.objective.summary_fields(),
        }
        return write_summary(session, trainer, results, test, extra)
