"""The teacher as objectives see it, and the objectives of Hinton's KD and FitNets' hint stage.

The teacher's forward pass runs here, under `torch.inference_mode`, so the engine does not
know distillation exists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from kdlab.engine.objective import Objective, StepOutput
from kdlab.methods.losses import hint_loss, kd_losses
from kdlab.models import modules_up_to


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
