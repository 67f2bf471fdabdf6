"""Objectives turn (batch, student[, teacher]) into named losses, so one engine serves all.

The engine only sees `objective(model, x, y) -> StepOutput`; distillation lives here, with
the teacher's forward pass under `torch.inference_mode`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdlab.losses import hint_loss, kd_losses
from kdlab.models import modules_up_to


@dataclass
class StepOutput:
    """`losses["loss"]` is minimised; `logits` is None when the objective has no classifier."""

    logits: Tensor | None
    losses: dict[str, Tensor]


def run_prefix(model: nn.Module, point: str, x: Tensor) -> Tensor:
    """The output of feature point `point`: the model's top-level children up to it, in order."""
    for module in modules_up_to(model, point):
        x = module(x)
    return x


class FrozenTeacher:
    """A teacher that is never updated: eval mode, no grad, inference mode.

    Not an nn.Module on purpose: it stays out of the objective's state_dict and `.train()`.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model.eval().requires_grad_(False)

    def logits(self, x: Tensor) -> Tensor:
        with torch.inference_mode():
            out = self.model(x)
        return out.clone()  # an ordinary tensor again, usable by autograd-recorded ops

    def features(self, x: Tensor, point: str) -> Tensor:
        with torch.inference_mode():
            out = run_prefix(self.model, point, x)
        return out.clone()


@dataclass(frozen=True)
class InitStage:
    """A stage an objective asks to run before its own (RepDistiller's init stage for AB, FT
    and FSP): `objective` alone trains `modules` for `epochs`, at `lr_scale` times the lr."""

    objective: Objective
    modules: tuple[nn.Module, ...]
    epochs: int
    lr_scale: float = 1.0


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

    def init_stage(self, model: nn.Module) -> InitStage | None:
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


class Distillation(Objective):
    """Hinton KD: L = (1 - alpha) * T^2 * L_soft + alpha * L_hard against a frozen teacher."""

    def __init__(
        self,
        teacher: FrozenTeacher,
        T: float,
        alpha: float,
        soft_transform: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.teacher = teacher
        self.T = T
        self.alpha = alpha
        self.soft_transform = soft_transform  # e.g. logit standardisation (loss.standardize)

    def forward(
        self, model: nn.Module, x: Tensor, y: Tensor, teacher_logits: Tensor | None = None
    ) -> StepOutput:
        if teacher_logits is None:
            teacher_logits = self.teacher.logits(x)
        logits = model(x)
        losses = kd_losses(logits, teacher_logits, y, self.T, self.alpha, self.soft_transform)
        return StepOutput(logits, losses)

    def summary_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"T": self.T, "alpha": self.alpha}
        if self.soft_transform is not None:
            fields["standardize"] = True
        return fields


class Hint(Objective):
    """FitNets stage one: regress the teacher's hint layer from the student's guided layer.

    Only the student's layers up to the guided point run; `regressor` (a trainable module,
    or nn.Identity for `regressor=none`) is part of this objective and dropped with it.
    """

    def __init__(
        self, teacher: FrozenTeacher, hint_point: str, guided_point: str, regressor: nn.Module
    ) -> None:
        super().__init__()
        self.teacher = teacher
        self.hint_point = hint_point
        self.guided_point = guided_point
        self.regressor = regressor

    def forward(
        self, model: nn.Module, x: Tensor, y: Tensor, teacher_logits: Tensor | None = None
    ) -> StepOutput:
        hint = self.teacher.features(x, self.hint_point)
        guided = run_prefix(model, self.guided_point, x)
        fit = hint_loss(self.regressor(guided), hint)
        return StepOutput(None, {"loss": fit, "loss_fit": fit})

    def summary_fields(self) -> dict[str, Any]:
        return {"hint_layer": self.hint_point, "guided_layer": self.guided_point}
