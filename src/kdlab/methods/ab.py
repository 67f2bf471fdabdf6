"""Activation Boundaries (AB): the student's pre-activations learn the teacher's on/off
pattern, with a margin, through connectors, in an init stage before the main training.

Heo, Lee, Yun, Choi (2019), "Knowledge Transfer via Distillation of Activation Boundaries
Formed by Hidden Neurons" (AAAI). As RepDistiller runs it (`--distill abound`): the init stage
trains the connectors and the student's layers on the AB loss alone; the main stage then adds
no AB term (helper/loops.py: `loss_kd = 0`), so its default beta is 0.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from kdlab.methods.base import InitStageMethod, Outputs, register
from kdlab.methods.hint import ConvReg
from kdlab.methods.losses import in_compute_dtype


def _boundary_sum(s: Tensor, t: Tensor, margin: float) -> Tensor:
    """sum of (s + m)^2 where the teacher is off (t <= 0) and s > -m, plus (s - m)^2 where it
    is on (t > 0) and s <= m."""
    off = ((s > -margin) & (t <= 0)).to(s.dtype)
    on = ((s <= margin) & (t > 0)).to(s.dtype)
    return ((s + margin).pow(2) * off + (s - margin).pow(2) * on).sum()


def ab_loss(
    student_preacts: Sequence[Tensor], teacher_preacts: Sequence[Tensor], margin: float = 1.0
) -> Tensor:
    """sum_i 2^(i - n + 1) * 3/1000 * (1/B) * sum over C*H*W of the margin loss of layer i:

        (s + m)^2 * [s > -m and t <= 0] + (s - m)^2 * [s <= m and t > 0]

    for the n (student-connected, teacher) pre-activation pairs in order (the last weighs 1,
    the one before 1/2, ...): RepDistiller ABLoss's weights and reduction (a sum per image,
    averaged over the batch, times 3/1000). Pairs must have equal shapes.
    """
    n = len(student_preacts)
    pairs = zip(student_preacts, teacher_preacts, strict=True)
    terms = [
        2.0 ** (i - n + 1) * _boundary_sum(*in_compute_dtype(s, t), margin) / s.shape[0]
        for i, (s, t) in enumerate(pairs)
    ]
    return sum(terms) * 3 / 1000


def connector(student_shape: Sequence[int], teacher_shape: Sequence[int]) -> nn.Module:
    """RepDistiller's Connector: nothing when channels and height agree, else ConvReg's conv
    and BN without ReLU."""
    if tuple(student_shape[-3:-1]) == tuple(teacher_shape[-3:-1]):
        return nn.Identity()
    return ConvReg(student_shape, teacher_shape, relu=False)


@register("ab")
class AB(InitStageMethod):
    """activation boundaries of the last three pre-activations, init stage first (Heo et al. 2019)

    RepDistiller train_student.py (`abound`): ABLoss(margin 1.0) on the pre-activations of
    f1-f3; init stage 30 epochs at the run's lr; the main stage is CE alone (-r 1 -a 0; its
    -b 1 multiplies a term loops.py sets to 0), hence weight 0. `ab_loss` of the connected
    student pre-activations vs the teacher's; the connectors train in the init stage only
    and stay fixed after (RepDistiller keeps them out of the main stage's optimiser).
    """

    taps = "preact"
    weight: float = 0.0
    margin: float = 1.0

    def setup(self) -> None:
        pairs = zip(self.tapped.student_shapes, self.tapped.teacher_shapes, strict=True)
        self.connectors = nn.ModuleList(connector(s, t) for s, t in pairs)

    def loss(self, student: Outputs, teacher: Outputs, labels: Tensor) -> Tensor:
        connected = [c(s) for c, s in zip(self.connectors, student.features, strict=True)]
        return ab_loss(connected, teacher.features, self.margin)

    def init_modules(self) -> tuple[nn.Module, ...]:
        return (self.connectors,)

    def fixed_modules(self) -> tuple[nn.Module, ...]:
        return (self.connectors,)
