"""What a distillation method is to kdlab: one class, registered by name.

A method derives from `LogitMethod` (it reads the teacher's logits only, so the logit cache
may serve them) or `FeatureMethod` (it also reads feature points, `taps`), is decorated
`@register("name")`, declares its settings as annotated class attributes with the reference
defaults (each becomes `loss.KEY`, type-checked by the config) and writes one method:

    def loss(self, student, teacher, labels) -> Tensor

`student` and `teacher` are `Outputs`: `.logits` and, for feature methods, `.features` in tap
order. The base class runs both models once per step, adds the cross-entropy and the KD terms
and logs every part: `L = ce_weight * CE + kd_weight * T^2 * KL_T + weight * loss`, the
combination of the reference tables (RepDistiller, mdistiller). A method with its own
combination (Hinton's KD, the baseline) overrides `combine`. Parameters (connectors), memory
banks (`uses_indices`), epoch-dependent weights (`self.epoch`) and init stages
(`init_stage`) all live on the same class; the engine sees a plain `Objective`.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdlab.engine.objective import Objective, StepOutput
from kdlab.errors import KdlabError, check_new_name
from kdlab.methods.losses import in_compute_dtype, kl_divergence
from kdlab.methods.numbers import Bound
from kdlab.methods.points import TAP_KINDS, Taps, pooling_classifier, resolve_taps, run_tapped
from kdlab.methods.settings import LossConfig
from kdlab.methods.teacher import FrozenTeacher
from kdlab.models.features import hooked_child


@dataclass(frozen=True)
class MethodContext:
    """What building a method may use: the teacher, the student, the run's settings."""

    teacher: FrozenTeacher | None
    student: nn.Module
    T: float
    alpha: float  # the top-level alpha: Hinton KD's weight of the hard term
    image_size: int
    label_smoothing: float
    train_images: int = 0  # the training split's size: what per-sample state is indexed by
    epochs: int = 0  # the method's stage's epochs (trainer.epochs); 0 where not known
    student_arch: str = ""  # the student's model.arch; "" where not known


@dataclass(frozen=True)
class Outputs:
    """One model's outputs in a step: its logits and, for feature methods, the tapped features
    in tap order (a pooled embedding is (N, D), a map (N, C, H, W))."""

    logits: Tensor
    features: list[Tensor] = field(default_factory=list)


@dataclass(frozen=True)
class InitStage:
    """A stage a method asks to run before its own (RepDistiller's init stage for AB, FT and
    FSP): `objective` alone trains `modules` for `epochs`, at `lr_scale` times the lr."""

    objective: Objective
    modules: tuple[nn.Module, ...]
    epochs: int
    lr_scale: float = 1.0


# Names a setting may not take: the attributes the base class gives every method.
RESERVED = frozenset({"T", "context", "teacher", "taps", "epoch", "settings", "name", "part"})


class Method(Objective):
    """The base of every method (see the module doc). Subclass `LogitMethod` or
    `FeatureMethod`; `Method` itself is for methods without a teacher (the baseline)."""

    name: ClassVar[str] = ""  # set by @register
    summary: ClassVar[str] = ""  # the docstring's first line: what it transfers, its paper
    taps: ClassVar[str] = "none"  # none | logits | a feature kind (kdlab.methods.points)
    part: ClassVar[str] = ""  # its term is logged as loss_<part>; default: the name
    # Why it takes one teacher only; "": several are averaged into one (TeacherEnsemble). A
    # logit method that reads more of the teacher than its logits (its classifier) sets it.
    one_teacher: ClassVar[str] = ""
    settings_class: ClassVar[type[LossConfig]] = LossConfig
    # Views of each training image the method reads (`data.views`): 2 = weak and strong.
    uses_views: ClassVar[int] = 1
    # Its bounds on its settings beyond `>= 0`, as data: the torch-free screen applies them
    # too (kdlab.methods.numbers.BOUNDS); `check` holds the rest.
    bounds: ClassVar[tuple[Bound, ...]] = ()

    # The combination's weights (RepDistiller's -r, -a and -b; mdistiller's CE_WEIGHT, ...).
    ce_weight: float = 1.0
    kd_weight: float = 0.0
    weight: float = 1.0  # the method's own term

    def __init__(self, settings: LossConfig, context: MethodContext) -> None:
        super().__init__()
        self.settings = settings
        for f in dataclasses.fields(settings):
            if f.name != "name":
                setattr(self, f.name, getattr(settings, f.name))
        self.context = context
        self.T = context.T
        self.label_smoothing = context.label_smoothing
        self.teacher = context.teacher
        self.tapped = Taps()

    # --- what a method writes ----------------------------------------------------------------

    def loss(self, student: Outputs, teacher: Outputs, labels: Tensor) -> Any:
        """The method's own term, a Tensor (or what its own `combine` takes)."""
        raise NotImplementedError

    def combine(
        self, student: Outputs, teacher: Any, labels: Tensor, term: Any
    ) -> dict[str, Tensor]:
        """`ce_weight * CE + kd_weight * T^2 * KL_T + weight * term` and its logged parts
        (`teacher` is None for a method without one)."""
        hard = self.cross_entropy(student.logits, labels)
        kd = self.T * self.T * kl_divergence(student.logits, teacher.logits, self.T)
        loss = self.ce_weight * hard + self.kd_weight * kd + self.weight * term
        return {"loss": loss, "loss_hard": hard, "loss_kd": kd, f"loss_{self.part}": term}

    @classmethod
    def check(cls, settings: Any) -> None:
        """Rules on the settings beyond `>= 0` and the declared `bounds` (a minimum value or
        list length: declare those in `bounds`, which the torch-free screen applies too),
        checked before the run starts."""

    # --- what the base class does ------------------------------------------------------------

    def run_teacher(self, x: Tensor, cached: Tensor | None = None) -> Outputs:
        if cached is not None and not self.tapped.teacher:
            return Outputs(cached)
        assert self.teacher is not None
        with torch.no_grad():  # not inference mode: its outputs enter the losses' graphs
            return Outputs(*run_tapped(self.teacher.model, x, self.tapped.teacher))

    def run_student(self, model: nn.Module, x: Tensor) -> Outputs:
        return Outputs(*run_tapped(model, x, self.tapped.student))

    def forward(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        teacher_logits: Tensor | None = None,
        indices: Tensor | None = None,
    ) -> StepOutput:
        if self.uses_views > 1:
            return self.forward_views(model, x, y, teacher_logits)
        teacher = self.run_teacher(x, teacher_logits) if self.taps != "none" else None
        student = self.run_student(model, x)
        named = {"indices": indices} if self.uses_indices else {}
        term = self.loss(student, teacher, y, **named)
        losses = self.combine(student, teacher, y, term)
        return StepOutput(student.logits, losses, self.split(losses))

    def forward_views(
        self, model: nn.Module, x: Tensor, y: Tensor, teacher_logits: Tensor | None = None
    ) -> StepOutput:
        """A method of `uses_views` views: a training batch holds each image's views one
        after the other (`data.views`: x is (views * B, ...), weak first); both models run
        on each view apart (BatchNorm sees one view's batch, as the reference does), and
        `loss` and `combine` get one `Outputs` per view. An evaluation batch holds one view,
        which then stands for all. Cached teacher logits are the first view's."""
        count = self.uses_views if x.shape[0] == self.uses_views * y.shape[0] else 1
        views = x.chunk(count)
        teachers = [self.run_teacher(v, teacher_logits if i == 0 else None)
                    for i, v in enumerate(views)]  # fmt: skip
        students = [self.run_student(model, v) for v in views]
        if count == 1:
            teachers, students = teachers * self.uses_views, students * self.uses_views
        term = self.loss(students, teachers, y)
        losses = self.combine(students, teachers, y, term)
        return StepOutput(students[0].logits, losses, self.split(losses))

    def split(self, losses: dict[str, Tensor]) -> tuple[Tensor, Tensor] | None:
        """`combine`'s loss as (task, distillation), for optim=dot: `ce_weight * CE` and
        `kd_weight * T^2 KL_T + weight * term` (the KD term only where it is weighted, so
        what it alone reaches gets no distillation gradient); None without a hard term."""
        if "loss_hard" not in losses:
            return None
        distillation = self.weight * losses[f"loss_{self.part}"]
        if self.kd_weight:
            distillation = distillation + self.kd_weight * losses["loss_kd"]
        return self.ce_weight * losses["loss_hard"], distillation

    def cross_entropy(self, logits: Tensor, labels: Tensor) -> Tensor:
        """The hard term: cross-entropy with the labels (with trainer.label_smoothing), in
        float32 (float64 for float64 logits, as every loss: kdlab.methods.losses)."""
        (logits,) = in_compute_dtype(logits)
        return F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)

    def summary_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"T": self.T, "method_settings": dataclasses.asdict(self.settings)}
        if self.tapped.teacher:
            fields["student_features"] = list(self.tapped.student)
            fields["teacher_features"] = list(self.tapped.teacher)
        return fields

    def init_stage(self, model: nn.Module) -> InitStage | None:
        """The stage to run on `model` before this method's own, if any."""
        return None


class LogitMethod(Method):
    """A method that reads the teacher's logits only: the logit cache may serve them, and
    several teachers (`teacher.ckpt=[A,B]`) reach it as one, their logits averaged."""

    taps: ClassVar[str] = "logits"


class FeatureMethod(Method):
    """A method that also reads feature points: `taps` names which (kdlab.methods.points),
    paired in order; `loss.student_points` / `loss.teacher_points` choose others. The tapped
    points' shapes are known before `setup` builds the method's modules (`self.tapped`)."""

    taps: ClassVar[str] = "stages"
    one_teacher: ClassVar[str] = "it reads the teacher's features"

    student_points: list[str] | None = None  # null = the method's default points
    teacher_points: list[str] | None = None
    beta: float | None = None  # the old name of loss.weight (RepDistiller's -b), kept
    # False where a method declares a beta of its own (sdd's NCKD weight, as dkd's).
    beta_is_weight: ClassVar[bool] = True

    def __init__(self, settings: LossConfig, context: MethodContext) -> None:
        super().__init__(settings, context)
        if self.beta_is_weight and self.beta is not None:
            self.weight = self.beta
        assert context.teacher is not None
        self.tapped = resolve_taps(
            context.student,
            context.teacher.model,
            self.taps,
            self.name,
            context.image_size,
            self.student_points,
            self.teacher_points,
        )
        self.setup()
        self.to(next(context.student.parameters()).device)

    def setup(self) -> None:
        """Build the method's own modules (connectors, heads) from `self.tapped`'s shapes."""

    def classifiers(self) -> tuple[nn.Linear, nn.Linear]:
        """The student's and the teacher's final Linear, each checked to take its tapped map
        (the `prepool` map it pools): for methods that classify that map (CAT-KD, SDD, SRD).
        Returned, not stored as submodules: they are the models' own layers."""
        assert self.teacher is not None
        models = (self.context.student, self.teacher.model)
        shapes = (self.tapped.student_shapes[0], self.tapped.teacher_shapes[0])
        sides = ("student", "teacher")
        return tuple(  # type: ignore[return-value]
            pooling_classifier(m, shape[0], self.name, side)
            for m, shape, side in zip(models, shapes, sides, strict=True)
        )


def paired(student: Outputs, teacher: Outputs) -> zip:
    """The tapped (student, teacher) feature pairs, in tap order."""
    return zip(student.features, teacher.features, strict=True)


class InitStageMethod(FeatureMethod):
    """A feature method with RepDistiller's init stage (train_student.py --init_epochs 30,
    helper/pretrain.py: its SGD at the run's lr): before the main training, the student's
    layers up to its last tapped point (and `init_modules`, the connectors) learn the
    method's term alone, with no cross-entropy. `loss.init_epochs=0` skips it."""

    init_epochs: int = 30
    init_lr_scale: float = 1.0  # the init stage's lr over optim.lr

    def init_modules(self) -> tuple[nn.Module, ...]:
        """The method's modules the init stage trains beside the student's prefix."""
        return ()

    def init_stage(self, model: nn.Module) -> InitStage | None:
        """The student's prefix up to the module holding its last tapped point (a WRN's last
        pre-activation is in its head), with `init_modules`, on the method's term alone."""
        if self.init_epochs == 0:
            return None
        children = [name for name, _ in model.named_children()]
        last = max((hooked_child(model, p) for p in self.tapped.student), key=children.index)
        prefix = [model.get_submodule(name) for name in children[: children.index(last) + 1]]
        trained = (*prefix, *self.init_modules())
        return InitStage(InitTerm(self), trained, self.init_epochs, self.init_lr_scale)


class InitTerm(Objective):
    """An init stage's objective: the method's term alone, logged as `loss_<part>_init`, on
    a full forward of both models. The method is a child module: this stage's checkpoints
    hold its connectors, which the next stage starts from."""

    def __init__(self, method: Method) -> None:
        super().__init__()
        self.method = method
        self.part = f"loss_{method.part}_init"

    def forward(
        self, model: nn.Module, x: Tensor, y: Tensor, teacher_logits: Tensor | None = None
    ) -> StepOutput:
        teacher = self.method.run_teacher(x)
        student = self.method.run_student(model, x)
        term = self.method.loss(student, teacher, y)
        return StepOutput(None, {"loss": term, self.part: term})


# --- the registry ----------------------------------------------------------------------------

# `loss=NAME` -> its class. Filled by @register: kdlab.methods.registry imports every built-in
# module, and plugins (KDLAB_PLUGINS, entry points) are imported before the config is composed.
METHODS: dict[str, type[Method]] = {}


def settings_of(cls: type[Method]) -> list[tuple[str, Any, Any]]:
    """(name, type, default) of each setting: the annotated, non-ClassVar class attributes of
    `cls` and its bases up to `Method`, the most derived declaration first."""
    found: dict[str, tuple[str, Any, Any]] = {}
    chain = [k for k in cls.__mro__ if isinstance(k, type) and issubclass(k, Method)]
    for klass in chain:
        own = inspect.get_annotations(klass)
        hints = typing.get_type_hints(klass)
        for key in own:
            if key in found or key.startswith("_"):
                continue
            kind = hints[key]
            found[key] = (key, kind, klass.__dict__.get(key, dataclasses.MISSING))
    return [s for s in found.values() if typing.get_origin(s[1]) is not ClassVar]


def _settings_class(cls: type[Method], name: str) -> type[LossConfig]:
    """The `loss=NAME` config node: `name` and each setting with its default."""
    fields: list[tuple[str, Any, Any]] = [("name", str, field(default=name))]
    for key, kind, default in settings_of(cls):
        if key in RESERVED or hasattr(Objective, key):
            raise KdlabError(f"method '{name}': setting '{key}' shadows an attribute: rename it")
        if default is dataclasses.MISSING:
            raise KdlabError(f"method '{name}': setting '{key}' needs a default value")
        if isinstance(default, list | dict):
            fields.append((key, kind, field(default_factory=lambda d=default: type(d)(d))))
        else:
            fields.append((key, kind, field(default=default)))
    namespace = {"check": lambda self: cls.check(self), "__doc__": cls.__doc__}
    return dataclasses.make_dataclass(
        f"{cls.__name__}Settings", fields, bases=(LossConfig,), namespace=namespace
    )


def register(name: str) -> Callable[[type[Method]], type[Method]]:
    """Make a method class the `loss=NAME` choice (its config group, checks and summary)."""

    def add(cls: type[Method]) -> type[Method]:
        check_new_name("method", "loss", name, METHODS)
        if not issubclass(cls, Method) or cls.taps not in ("none", "logits", *TAP_KINDS):
            raise KdlabError(f"method '{name}' must derive from LogitMethod or FeatureMethod")
        cls.name = name
        cls.part = cls.__dict__.get("part") or name
        cls.summary = (cls.__doc__ or name).strip().splitlines()[0]
        cls.settings_class = _settings_class(cls, name)
        settings = {key for key, _, _ in settings_of(cls)}
        for bound in cls.bounds:
            if not {bound.key, bound.when or bound.key} <= settings:
                raise KdlabError(f"method '{name}': its bound on '{bound.key}' names no setting")
        METHODS[name] = cls
        return cls

    return add
