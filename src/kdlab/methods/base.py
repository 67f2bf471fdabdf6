"""What a distillation method is to kdlab: a config schema, what it taps, and an objective.

Every method but `ce` and `kd` trains `L = ce_weight * CE + kd_weight * T^2 * KL_T +
weight * L_method`, the combination the reference tables use (RepDistiller, mdistiller).
`MethodObjective` does that sum, the two forward passes and the feature taps once; a method
only writes `method_loss` on what it asked for. The engine sees a plain `Objective`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdlab.engine.objective import Objective, StepOutput
from kdlab.methods.losses import kl_divergence
from kdlab.methods.objectives import FrozenTeacher
from kdlab.models import FeatureTap


@dataclass
class LossConfig:
    """`loss=NAME`: the method; each method's subclass adds its `loss.KEY` settings."""

    name: str = "kd"

    def check(self) -> None:
        """Bounds of the method's own settings beyond `>= 0` (raise a one-line KdlabError);
        the pre-flight runs it (kdlab.methods.checks)."""


@dataclass
class CombinedConfig(LossConfig):
    """The weights of the cross-entropy and of Hinton's KD term beside a method's own loss
    (RepDistiller's -r and -a, mdistiller's CE_WEIGHT and KD weight)."""

    ce_weight: float = 1.0
    kd_weight: float = 0.0


@dataclass(frozen=True)
class Taps:
    """The feature points a method reads, per side, in pairing order (empty: logits only)."""

    student: tuple[str, ...] = ()
    teacher: tuple[str, ...] = ()
    student_shapes: tuple[tuple[int, ...], ...] = ()  # per point, without the batch
    teacher_shapes: tuple[tuple[int, ...], ...] = ()


@dataclass
class FeatureConfig(CombinedConfig):
    """A feature method's weight (`beta`, RepDistiller's -b) and, optionally, its points."""

    beta: float = 1.0
    student_points: list[str] | None = None  # null = the method's default points
    teacher_points: list[str] | None = None


@dataclass
class InitConfig(FeatureConfig):
    """A method with RepDistiller's init stage (train_student.py --init_epochs 30,
    helper/pretrain.py: its SGD at the run's lr); `init_epochs=0` skips it."""

    init_epochs: int = 30
    init_lr_scale: float = 1.0  # the init stage's lr over optim.lr


@dataclass(frozen=True)
class MethodContext:
    """What building an objective may use: the teacher, the student, the run's settings."""

    teacher: FrozenTeacher | None
    student: nn.Module
    T: float
    alpha: float
    image_size: int
    label_smoothing: float
    train_images: int = 0  # the training split's size: what per-sample state is indexed by


@dataclass(frozen=True)
class Method:
    """One `loss=NAME` entry of the registry.

    `taps` says what the method reads: `none` (no teacher), `logits` (logits only, so the
    teacher's logits may come from the cache), or feature points of both models: `stages`,
    `last`, `middle`, `embedding`, `preact` or `review` (kdlab.methods.points).
    """

    config: type[LossConfig]
    build: Callable[[Any, MethodContext], Objective]
    taps: str
    summary: str  # what it transfers, and its paper (logged when a run starts)

    @property
    def needs_teacher(self) -> bool:
        return self.taps != "none"

    @property
    def logits_only(self) -> bool:
        return self.taps in ("logits", "none")


def run_tapped(model: nn.Module, x: Tensor, points: tuple[str, ...]) -> tuple[Tensor, list[Any]]:
    """One forward of `model`, with the outputs of `points` recorded by hooks on the way."""
    if not points:
        return model(x), []
    with FeatureTap(model, points) as tap:
        logits = model(x)
    return logits, [tap.features[p] for p in points]


class MethodObjective(Objective):
    """`ce_weight * CE + kd_weight * T^2 * KL_T + weight * method_loss`, with parts logged.

    One teacher forward (no grad; or the cached logits when the method taps nothing) and one
    student forward per step, however many points are tapped. Subclasses set `part` (the
    name of their `loss_<part>`) and `method_loss`; the epoch (`set_epoch`) is theirs to use.
    """

    part = "method"

    def __init__(
        self, settings: CombinedConfig, context: MethodContext, taps: Taps, weight: float
    ) -> None:
        super().__init__()
        assert context.teacher is not None
        self.teacher = context.teacher
        self.settings = settings
        self.T = context.T
        self.taps = taps
        self.weight = weight
        self.label_smoothing = context.label_smoothing

    def method_loss(
        self, student: tuple[Tensor, list[Any]], teacher: tuple[Tensor, list[Any]], y: Tensor
    ) -> Tensor:
        """The method's term; with `uses_indices` it also gets `indices=` (None in evaluation)."""
        raise NotImplementedError

    def run_teacher(self, x: Tensor, cached: Tensor | None = None) -> tuple[Tensor, list[Any]]:
        if cached is not None and not self.taps.teacher:
            return cached, []
        with torch.no_grad():  # not inference mode: its outputs enter the losses' graphs
            return run_tapped(self.teacher.model, x, self.taps.teacher)

    def run_student(self, model: nn.Module, x: Tensor) -> tuple[Tensor, list[Any]]:
        return run_tapped(model, x, self.taps.student)

    def forward(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        teacher_logits: Tensor | None = None,
        indices: Tensor | None = None,
    ) -> StepOutput:
        teacher = self.run_teacher(x, teacher_logits)
        student = self.run_student(model, x)
        logits = student[0]
        ce = F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)
        kd = self.T * self.T * kl_divergence(logits, teacher[0], self.T)
        named = {"indices": indices} if self.uses_indices else {}
        term = self.method_loss(student, teacher, y, **named)
        s = self.settings
        loss = s.ce_weight * ce + s.kd_weight * kd + self.weight * term
        losses = {"loss": loss, "loss_hard": ce, "loss_kd": kd, f"loss_{self.part}": term}
        return StepOutput(logits, losses)

    def summary_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"T": self.T, "method_settings": asdict(self.settings)}
        if self.taps.teacher:
            fields["student_features"] = list(self.taps.student)
            fields["teacher_features"] = list(self.taps.teacher)
        return fields


class LayerSumObjective(MethodObjective):
    """A method whose loss is one function of a (student, teacher) feature pair, summed over
    the tapped pairs (AT, NST and SP over stages; PKT over the one embedding)."""

    def layer_loss(self, student: Tensor, teacher: Tensor) -> Tensor:
        raise NotImplementedError

    def method_loss(
        self, student: tuple[Tensor, list[Any]], teacher: tuple[Tensor, list[Any]], y: Tensor
    ) -> Tensor:
        return sum(self.layer_loss(s, t) for s, t in zip(student[1], teacher[1], strict=True))
