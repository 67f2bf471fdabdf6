"""What the engine trains: an objective turns (batch, model) into named losses.

The engine only sees `objective(model, x, y) -> StepOutput`; what an objective computes (a
teacher's forward pass, a method's terms) is its own business (kdlab.methods).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class StepOutput:
    """`losses["loss"]` is minimised; `logits` is None when the objective has no classifier.
    `split`, where the objective distils, is that loss as (task, distillation): the weighted
    cross-entropy with the labels and the weighted distillation terms, each its own graph
    (a parameter the distillation terms do not reach gets no gradient from them), which
    optim=dot steps with separate momenta. None: the whole loss is the task's."""

    logits: Tensor | None
    losses: dict[str, Tensor]
    split: tuple[Tensor, Tensor] | None = None


class Objective(nn.Module):
    """Base: subclasses define forward(model, x, y[, teacher_logits]) -> StepOutput.

    `teacher_logits`, where a batch carries them (the logit cache), are the teacher's logits
    for exactly `x`; objectives that need no teacher logits ignore them. The engine calls
    `set_epoch` before each epoch of a stage (counted from 1), for epoch-dependent weights.
    An objective that sets `uses_indices` (a memory bank of the training samples, CRD) also
    gets `indices=`, each training sample's int64 index in the training split, with every
    training batch; evaluation batches carry none (their images are not training samples).
    An objective may ask for an init stage before its own (`init_stage`) and keep some of its
    modules fixed while it trains (`fixed_modules`); by default it does neither.
    """

    epoch: int = 1
    uses_indices: bool = False

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def forward(
        self, model: nn.Module, x: Tensor, y: Tensor, teacher_logits: Tensor | None = None
    ) -> StepOutput:
        raise NotImplementedError

    def summary_fields(self) -> dict[str, Any]:
        """What summary.json records about this objective's settings (none by default)."""
        return {}

    def init_stage(self, model: nn.Module) -> Any:
        """The stage to run on `model` before this objective's own, if any."""
        return None

    def fixed_modules(self) -> tuple[nn.Module, ...]:
        """This objective's modules that stay fixed (eval mode, untrained) in its stage."""
        return ()


class CrossEntropy(Objective):
    """Plain supervised training (teacher, baseline)."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(
        self, model: nn.Module, x: Tensor, y: Tensor, teacher_logits: Tensor | None = None
    ) -> StepOutput:
        logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)
        return StepOutput(logits, {"loss": loss})
