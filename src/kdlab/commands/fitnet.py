"""`kdlab fitnet`: FitNets' two stages as two calls of the same engine.

Stage one trains the student up to its guided layer (plus a regressor) to match the
teacher's hint layer. Stage two trains with the KD loss, either with that front frozen
(`stage2=frozen`, BatchNorm statistics included) or all of it (`stage2=finetune`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

from omegaconf import DictConfig
from torch import nn

from kdlab.checkpoint import copy_checkpoint, load_checkpoint
from kdlab.data import BatchLoader
from kdlab.distributed import is_main
from kdlab.engine import Stage, StageResult, Trainer
from kdlab.models import check_feature_point, default_feature_point, feature_shape, modules_up_to
from kdlab.models.regressor import build_regressor
from kdlab.objectives import Distillation, FrozenTeacher, Hint
from kdlab.session import Session, build_student, finish, open_session
from kdlab.teacher import prepare_teacher, read_teacher, teacher_batches

log = logging.getLogger("kdlab")


def stage1_epochs(cfg: DictConfig) -> int:
    """fitnet.stage1_epochs, or by default an eighth of the training budget (at least 1)."""
    return cfg.fitnet.stage1_epochs or math.ceil(cfg.trainer.epochs / 8)


def parameters_of(modules: list[nn.Module]) -> list[nn.Parameter]:
    return [p for m in modules for p in m.parameters()]


def hint_stage(
    cfg: DictConfig, teacher: FrozenTeacher, student: nn.Module, image_size: int
) -> tuple[Stage, list[nn.Module]]:
    """Stage one: the guided prefix of the student and a regressor learn the hint."""
    hint = cfg.fitnet.hint_layer or default_feature_point(teacher.model)
    guided = cfg.fitnet.guided_layer or default_feature_point(student)
    check_feature_point(teacher.model, hint)
    check_feature_point(student, guided)
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
        objective=Hint(teacher, hint, guided, regressor),
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
    cfg: DictConfig,
    teacher: FrozenTeacher,
    student: nn.Module,
    prefix: list[nn.Module],
    batches: BatchLoader | None = None,
) -> Stage:
    """Stage two: KD on the rest (frozen) or on all of it (finetune, optional lr scale);
    `batches` carry cached teacher logits (None: the teacher runs every step)."""
    prefix_ids = {id(p) for p in parameters_of(prefix)}
    rest = [p for p in student.parameters() if id(p) not in prefix_ids]
    objective = Distillation(teacher, T=cfg.T, alpha=cfg.alpha)
    if cfg.stage2.mode == "frozen":
        for module in prefix:
            module.requires_grad_(False)
        groups = [{"params": rest}]
        frozen = prefix
    else:
        groups = [
            {"params": parameters_of(prefix), "lr_scale": cfg.fitnet.finetune_lr_scale},
            {"params": rest},
        ]
        frozen = []
    return Stage("stage2", objective, groups, cfg.trainer.epochs, frozen=frozen, train=batches)


def run_stage_one(session: Session, trainer: Trainer, stage: Stage) -> StageResult:
    """Train stage one, then continue from its selected weights (kept as stage1.pt).

    Once stage1.pt exists it is the one to start from: a run killed between stage two's
    best.pt and last.pt saves resumes here, with best.pt already stage two's.
    """
    state = session.resume_state
    resume = state if state is not None and state["stage"] == "stage1" else None
    result = trainer.fit(stage, resume=resume)
    ckpt_dir = session.run_dir / "checkpoints"
    selected = ckpt_dir / "stage1.pt"
    if not selected.is_file():
        selected = ckpt_dir / "best.pt"
        if is_main():
            copy_checkpoint(selected, ckpt_dir / "stage1.pt")
    trainer.model.load_state_dict(load_checkpoint(selected, session.device)["model"])
    return result


def run(cfg: DictConfig) -> dict[str, Any]:
    checkpoint = read_teacher(cfg)
    session = open_session(cfg)
    student = build_student(session)
    teacher, teacher_info = prepare_teacher(cfg, checkpoint, session)
    trainer = session.trainer(student)
    stage1, prefix = hint_stage(cfg, teacher, student, session.data.image_size)

    state = session.resume_state
    if state is not None and state["stage"] == "stage2":
        result1 = StageResult(**state["history"][0])
    else:
        result1 = run_stage_one(session, trainer, stage1)
    trainer.history = [dataclasses.asdict(result1)]

    batches = teacher_batches(cfg, teacher, checkpoint, session)
    stage2 = kd_stage(cfg, teacher, student, prefix, batches)
    resume2 = state if state is not None and state["stage"] == "stage2" else None
    result2 = trainer.fit(stage2, epoch_offset=stage1_epochs(cfg), resume=resume2)
    teacher_info["logit_cache"] = batches.stats() if batches is not None else None
    extra = {
        "T": cfg.T,
        "alpha": cfg.alpha,
        "stage2": cfg.stage2.mode,
        "regressor": cfg.fitnet.regressor,
        "hint_layer": stage1.objective.hint_point,
        "guided_layer": stage1.objective.guided_point,
        "teacher": teacher_info,
    }
    return finish(session, trainer, student, [result1, result2], extra)
