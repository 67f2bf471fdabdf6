"""The one training engine: `Trainer.fit` trains a `Stage`, `run_stages` runs several."""

from kdlab.engine.metrics import Accumulator, evaluate, topk_hits
from kdlab.engine.stage import Stage, StageResult, StepModule, buffer_snapshot, parameters_of
from kdlab.engine.stages import run_stages
from kdlab.engine.trainer import RunPlace, Trainer

__all__ = [
    "Accumulator",
    "RunPlace",
    "Stage",
    "StageResult",
    "StepModule",
    "Trainer",
    "buffer_snapshot",
    "evaluate",
    "parameters_of",
    "run_stages",
    "topk_hits",
]
