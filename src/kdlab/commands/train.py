"""`kdlab train`: one model, cross-entropy, the standard engine (teachers and baselines)."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from kdlab.engine import Stage
from kdlab.objectives import CrossEntropy
from kdlab.session import build_student, finish, open_session


def run(cfg: DictConfig) -> dict[str, Any]:
    session = open_session(cfg)
    model = build_student(session)
    trainer = session.trainer(model)
    stage = Stage(
        name="train",
        objective=CrossEntropy(cfg.trainer.label_smoothing),
        param_groups=[{"params": list(model.parameters())}],
        epochs=cfg.trainer.epochs,
    )
    result = trainer.fit(stage, resume=session.resume_state)
    return finish(session, trainer, model, [result])
