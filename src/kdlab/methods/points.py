"""Which feature points a method taps on each model, checked by one dummy forward at start.

The references' choices, named generically so every zoo model has them: `stages` = the
stage outputs after the stem (RepDistiller's `feat[1:-1]`: f1, f2, f3 of a ResNet or WRN, f1..f4
of a VGG, MobileNetV2 or ResNet-50; the last three feature points of a model that declares no
stages), `last` = the last stage (`feat[-2]`), `middle` = the model's default point (FitNets'
hint layer, f2), `embedding` = the pooled features fed to the classifier (`feat[-1]`),
`prepool` = the map the classifier average-pools (`feat[-2]` of RepDistiller's models: the last
stage of a ResNet, VGG or ShuffleNetV1, after the head's BN-ReLU of a WRN, after the head's
1x1 conv of a MobileNetV2 or ShuffleNetV2; CAT-KD, ICKD, SRD), `preact` = the last three
pre-activation points (before the ReLU, models.preact; OFD),
`review` = the last three stages and the embedding, the teacher's stages pre-activation
(ReviewKD), `stem_stages` = the stem's output and the stages (FSP's `feat[:-1]`).
`loss.student_points` / `loss.teacher_points` override.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from kdlab.errors import KdlabError
from kdlab.models import (
    FeatureTap,
    check_feature_point,
    default_feature_point,
    feature_points,
    stage_points,
)
from kdlab.models.features import (
    EMBEDDING,
    FALLBACK_STAGES,
    PREPOOL,
    embedding_module,
    tapped_shapes,
)
from kdlab.models.preact import preact_points

TAP_KINDS = (
    "stages", "stem_stages", "last", "middle", "embedding", "prepool", "preact", "review",
)  # fmt: skip


@dataclass(frozen=True)
class Taps:
    """The feature points a method reads, per side, in pairing order (empty: logits only)."""

    student: tuple[str, ...] = ()
    teacher: tuple[str, ...] = ()
    student_shapes: tuple[tuple[int, ...], ...] = ()  # per point, without the batch
    teacher_shapes: tuple[tuple[int, ...], ...] = ()


def run_tapped(model: nn.Module, x: Tensor, points: tuple[str, ...]) -> tuple[Tensor, list[Any]]:
    """One forward of `model`, with the outputs of `points` recorded by hooks on the way."""
    if not points:
        return model(x), []
    with FeatureTap(model, points) as tap:
        logits = model(x)
    return logits, [tap.features[p] for p in points]


def _listing(model: nn.Module) -> str:
    return ", ".join(feature_points(model)) or "none"


def _uses_preact(kind: str, side: str) -> bool:
    """OFD taps both models before the ReLU; ReviewKD the teacher only (mdistiller)."""
    return kind == "preact" or (kind == "review" and side == "teacher")


def _stem(model: nn.Module, stages: tuple[str, ...]) -> tuple[str, ...]:
    """The feature point just before the first stage (the stem's output), if there is one."""
    points = feature_points(model)
    first = points.index(stages[0]) if stages[0] in points else 0
    return points[first - 1 : first] if first else ()


def default_points(model: nn.Module, kind: str, method: str, side: str) -> tuple[str, ...]:
    """The points of `kind` on `model`; a one-line error listing its points when it lacks them."""
    if kind == "embedding":
        return (EMBEDDING,)
    if kind == "prepool":
        check_feature_point(model, PREPOOL)
        return (PREPOOL,)
    if kind == "middle":
        return (default_feature_point(model),)
    preact = _uses_preact(kind, side)
    points = preact_points(model) if preact else stage_points(model)
    wanted = 1 if kind == "last" else FALLBACK_STAGES
    if len(points) < wanted and preact:
        raise KdlabError(
            f"loss={method} taps {wanted} pre-activation points (a BN before a ReLU) of the "
            f"{side}, model {type(model).__name__} has {len(points)} "
            f"({', '.join(points) or 'none'}; its feature points: {_listing(model)}): pick a "
            f"kdlab zoo model (torchvision and timm models declare none), or set "
            f"loss.{side}_points=[...]"
        )
    if len(points) < wanted:
        raise KdlabError(
            f"loss={method} taps {wanted} feature point(s) of the {side}, model "
            f"{type(model).__name__} has {len(points)} ({_listing(model)}): pick a "
            f"convolutional model or set loss.{side}_points=[...]"
        )
    if kind == "stages":
        return points
    if kind == "stem_stages":
        return (*_stem(model, points), *points)
    picked = tuple(points[-wanted:])
    return (*picked, EMBEDDING) if kind == "review" else picked


def feature_point(model: nn.Module, given: str | None) -> str:
    """`given` (fitnet.hint_layer, fitnet.guided_layer) checked against the model, else the
    model's default point."""
    point = given or default_feature_point(model)
    check_feature_point(model, point)
    return point


def chosen_points(
    model: nn.Module, kind: str, method: str, side: str, given: Sequence[str] | None
) -> tuple[str, ...]:
    """`given` (loss.<side>_points) checked against the model, else the default points."""
    if not given:
        return default_points(model, kind, method, side)
    for point in given:
        try:
            check_feature_point(model, point)
        except KdlabError as error:
            raise KdlabError(f"loss.{side}_points: {error}") from None
    return tuple(given)


def check_shapes(
    model: nn.Module, points: tuple[str, ...], kind: str, side: str, size: int
) -> list:
    """Each point's output shape (no batch); 3-D maps for map methods, vectors for embeddings."""
    shapes = tapped_shapes(model, points, size)
    for point, shape in shapes.items():
        dims = 1 if kind == "embedding" or (kind == "review" and point == EMBEDDING) else 3
        if len(shape) != dims or isinstance(shape[0], str):
            what = "a (N, D) vector" if dims == 1 else "an (N, C, H, W) map"
            raise KdlabError(
                f"{side} feature point '{point}' of model {type(model).__name__} gives {shape}, "
                f"not {what}: choose among {_listing(model)} (loss.{side}_points=[...])"
            )
    return [shapes[p] for p in points]


def resolve_taps(
    student: nn.Module,
    teacher: nn.Module,
    kind: str,
    method: str,
    image_size: int,
    student_points: Sequence[str] | None = None,
    teacher_points: Sequence[str] | None = None,
) -> Taps:
    """Both sides' points, paired in order, with their shapes from one dummy forward each."""
    s_points = chosen_points(student, kind, method, "student", student_points)
    t_points = chosen_points(teacher, kind, method, "teacher", teacher_points)
    if not student_points and not teacher_points:
        # Default stages of unequal count (a 4-stage VGG and a 3-stage ResNet) pair their first
        # ones, f1..f3, as RepDistiller's zip(g_s, g_t) does.
        pairs = min(len(s_points), len(t_points))
        s_points, t_points = s_points[:pairs], t_points[:pairs]
    if len(s_points) != len(t_points):
        raise KdlabError(
            f"loss={method} pairs student and teacher points in order, got {len(s_points)} "
            f"student ({', '.join(s_points)}) and {len(t_points)} teacher points "
            f"({', '.join(t_points)}): give as many of each"
        )
    s_shapes = check_shapes(student, s_points, kind, "student", image_size)
    t_shapes = check_shapes(teacher, t_points, kind, "teacher", image_size)
    return Taps(s_points, t_points, tuple(s_shapes), tuple(t_shapes))


def pooling_classifier(model: nn.Module, channels: int, method: str, side: str) -> nn.Linear:
    """The model's final Linear, checked to take the `channels` of the map `method` tapped on
    `side` (the map it pools), as the methods that apply a classifier to that map need."""
    linear = embedding_module(model)
    if linear.in_features != channels:
        raise KdlabError(
            f"loss={method} applies the {side}'s classifier ({linear.in_features} inputs) to its "
            f"tapped map of {channels} channels: tap the map the classifier pools "
            f"(loss.{side}_points=[{PREPOOL}])"
        )
    return linear
