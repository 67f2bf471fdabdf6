"""FitNets' hint stage (`kdlab fitnet`, stage one): the student's guided layer, through a
regressor, learns the teacher's hint layer before the KD stage.

Romero, Ballas, Kahou, Chassang, Gatta, Bengio (2015), "FitNets: Hints for Thin Deep Nets"
(ICLR). The hint loss keeps the paper's 1/2 ||.||^2 per image; the references' one-stage
`loss=hint` (kdlab.methods.hint) takes an MSE mean instead.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from kdlab.engine.objective import Objective, StepOutput
from kdlab.methods.teacher import FrozenTeacher, run_prefix


def hint_loss(regressed: Tensor, hint: Tensor) -> Tensor:
    """FitNets' hint loss: 1/2 ||hint - r(guided)||^2 per image, averaged over the batch."""
    diff = hint.float() - regressed.float()
    return 0.5 * diff.pow(2).flatten(1).sum(dim=1).mean()


class HintStage(Objective):
    """Stage one: regress the teacher's hint layer from the student's guided layer.

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
