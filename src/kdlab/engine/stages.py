"""The multi-stage runner: stages in order, each continuing from the weights the one before
selected, and resumable in any of them.

FitNets (hint stage, then KD) is two stages, and so is a method with an init stage (AB,
FT, FSP); train and distill are one. The runner owns the
stage history that checkpoints carry and decides, on resume, which stages are done (their
results come from the checkpoint), which one continues and which start fresh.
"""

from __future__ import annotations

from collections.abc import Sequence

from kdlab.engine.checkpoint import Checkpoint, copy_checkpoint
from kdlab.engine.distributed import is_main
from kdlab.engine.stage import Stage, StageResult
from kdlab.engine.trainer import Trainer


def run_stages(
    trainer: Trainer, stages: Sequence[Stage], resume: Checkpoint | None = None
) -> list[StageResult]:
    """Train `stages` in order; between two, the model continues from the earlier stage's
    selected weights (kept as checkpoints/<stage>.pt)."""
    done = {r["name"]: StageResult(**r) for r in resume.history} if resume is not None else {}
    results: list[StageResult] = []
    for index, stage in enumerate(stages):
        trainer.history = list(results)
        if stage.name in done:
            results.append(done[stage.name])
            continue
        own = resume if resume is not None and resume.stage == stage.name else None
        offset = sum(result.epochs for result in results)
        results.append(trainer.fit(stage, epoch_offset=offset, resume=own))
        if index < len(stages) - 1:
            continue_from_selected(trainer, stage)
    return results


def continue_from_selected(trainer: Trainer, stage: Stage) -> None:
    """Load the stage's selected weights into the model and its objective (modules a later
    stage keeps using, e.g. an init stage's connectors), keeping them as <stage>.pt.

    Once <stage>.pt exists it is the one to start from: a run killed between the next stage's
    best.pt and last.pt saves resumes in this stage, with best.pt already the next one's.
    """
    selected = trainer.ckpt_dir / f"{stage.name}.pt"
    if not selected.is_file():
        best = trainer.ckpt_dir / "best.pt"
        if is_main():
            copy_checkpoint(best, selected)
        selected = best
    state = Checkpoint.read(selected, trainer.device)
    trainer.model.load_state_dict(state.model)
    stage.objective.load_state_dict(state.objective)
