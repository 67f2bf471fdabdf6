"""`kdlab train`: one model, cross-entropy, the standard engine (teachers and baselines)."""

from __future__ import annotations

from typing import Any

from kdlab.config import RunConfig
from kdlab.engine import Stage, run_stages
from kdlab.fine_tuning import fine_tuning_stages
from kdlab.objectives import CrossEntropy
from kdlab.session import build_model_to_train, open_session, test_selected
from kdlab.summary import write_summary


def run(cfg: RunConfig) -> dict[str, Any]:
    session = open_session(cfg)
    model = build_model_to_train(session)
    trainer = session.trainer(model)
    stage = Stage(
        name="train",
        objective=CrossEntropy(cfg.trainer.label_smoothing),
        param_groups=[{"params": list(model.parameters())}],
        epochs=cfg.trainer.epochs,
    )
    data = session.data
    stages = fine_tuning_stages(stage, model, cfg.model, data.num_classes, data.in_channels)
    results = run_stages(trainer, stages, session.resume_state)
    test = test_selected(session, trainer)
    return write_summary(session, trainer, results, test)
