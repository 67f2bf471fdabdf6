"""`kdlab train`: one model, cross-entropy, the standard engine (teachers and baselines)."""

from __future__ import annotations

from typing import Any

from kdlab.engine.fine_tuning import fine_tuning_stages
from kdlab.engine.objective import CrossEntropy
from kdlab.engine.stage import Stage
from kdlab.engine.stages import run_stages
from kdlab.runs.schema import RunConfig
from kdlab.runs.session import build_model_to_train, open_session, test_selected
from kdlab.runs.summary import write_summary


def run(cfg: RunConfig) -> dict[str, Any]:
    with open_session(cfg) as session:
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
