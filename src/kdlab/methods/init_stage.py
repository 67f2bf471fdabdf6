"""RepDistiller's init stage for AB and FSP (helper/pretrain.py): before the main training,
the student's layers up to its last tapped point (and the method's connectors) learn the
method's own term alone, with no cross-entropy; the classifier head is not trained."""

from __future__ import annotations

from torch import Tensor, nn

from kdlab.engine.objective import Objective, StepOutput
from kdlab.methods.base import InitConfig, MethodObjective
from kdlab.methods.objectives import InitStage
from kdlab.models.features import hooked_child


class PrefixInit(Objective):
    """The method's term alone, logged as `loss_<part>_init` (a full forward: a WRN's last
    pre-activation is in its head).

    The method objective is a child module: this stage's checkpoints hold its connectors,
    which the next stage starts from.
    """

    def __init__(self, method: MethodObjective) -> None:
        super().__init__()
        self.method = method
        self.part = f"loss_{method.part}_init"

    def forward(
        self, model: nn.Module, x: Tensor, y: Tensor, teacher_logits: Tensor | None = None
    ) -> StepOutput:
        teacher = self.method.run_teacher(x)
        student = self.method.run_student(model, x)
        term = self.method.method_loss(student, teacher, y)
        return StepOutput(None, {"loss": term, self.part: term})


def prefix_init_stage(
    method: MethodObjective, model: nn.Module, trained: tuple[nn.Module, ...] = ()
) -> InitStage | None:
    """The init stage training `model`'s prefix and `trained` (a connector) on the method's
    term, for `loss.init_epochs` epochs (none when 0)."""
    settings = method.settings
    assert isinstance(settings, InitConfig)
    if settings.init_epochs == 0:
        return None
    children = [name for name, _ in model.named_children()]
    last = max((hooked_child(model, p) for p in method.taps.student), key=children.index)
    prefix = [model.get_submodule(name) for name in children[: children.index(last) + 1]]
    return InitStage(
        PrefixInit(method), (*prefix, *trained), settings.init_epochs, settings.init_lr_scale
    )
