"""KDSVD: the relations between consecutive stages' leading singular vectors.

Lee, Kim, Song (2018), "Self-supervised Knowledge Distillation Using Singular Value
Decomposition" (ECCV), as its PyTorch ports train it: HobbitLong/RepDistiller @ b84f547c
distiller_zoo/KDSVD.py and megvii-research/mdistiller @ a08d46f1 mdistiller/distillers/KDSVD.py
(`svd`, `removenan`, `align_rsv`; mdistiller/engine/cfg.py: K 1, FEAT_WEIGHT 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from kdlab.errors import KdlabError
from kdlab.methods.base import FeatureMethod, Outputs, register
from kdlab.methods.losses import float32_math, in_compute_dtype

TEACHER_SIGNS = ("canonical", "svd")
LAYOUTS = ("channels", "mdistiller")


def _finite(x: Tensor) -> Tensor:
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


def feature_matrix(feature: Tensor, layout: str) -> Tensor:
    """What is decomposed per sample: (B, HW, C), whose right singular vectors live in channel
    space (RepDistiller, the paper's TF code), or mdistiller's `view(B, C*H, W)`, whose live
    along the image width."""
    b, c, h, w = feature.shape
    if layout == "channels":
        return feature.reshape(b, c, h * w).transpose(1, 2)
    return feature.reshape(b, c * h, w)


def right_singular(feature: Tensor, n: int, layout: str) -> tuple[Tensor, Tensor]:
    """(S[:n] / ||S[:n]||, V[:, :n] with unit columns) per sample, non-finite entries zeroed."""
    _, s, vh = torch.linalg.svd(feature_matrix(feature, layout), full_matrices=False)
    v = _finite(vh.transpose(-2, -1))
    return F.normalize(_finite(s)[:, :n], dim=1), F.normalize(v[:, :, :n], dim=1)


def canonical_sign(v: Tensor) -> Tensor:
    """Each column v[b, :, j] flipped so that its entry of largest magnitude is positive."""
    sign = torch.sign(torch.gather(v, 1, v.abs().argmax(dim=1, keepdim=True)))
    return v * torch.where(sign == 0, torch.ones_like(sign), sign)


def align_student(v_s: Tensor, v_t: Tensor) -> Tensor:
    """For each teacher vector, the student vector(s) of largest |cosine| times its sign (the
    official `align_rsv`, ties summed as there); (B, D, k)."""
    cosine = v_s.transpose(-2, -1) @ v_t
    best = cosine.abs().amax(dim=1, keepdim=True)
    return v_s @ torch.where(cosine.abs() == best, torch.sign(cosine), torch.zeros_like(cosine))


def _rbf(v_top: Tensor, v_bottom: Tensor) -> Tensor:
    """exp(-(v_top[b, a, j] - v_bottom[b, c, j])^2 / 8), (B, D_top, D_bottom, k)."""
    return torch.exp(-(v_top.unsqueeze(2) - v_bottom.unsqueeze(1)).pow(2) / 8)


@float32_math
def kdsvd_loss(
    student_features: Sequence[Tensor],
    teacher_features: Sequence[Tensor],
    k: int = 1,
    teacher_sign: str = "canonical",
    layout: str = "channels",
) -> Tensor:
    """sum over consecutive layers of sum_{b,a,c,j} (R_s - R_t)^2 / B, R[b, a, c, j] =
    exp(-(v^l[b, a, j] - v^{l-1}[b, c, j])^2 / 8) of the teacher's first k right singular
    vectors (scaled by its normalised singular values) and the student's aligned to them from
    its first k + 3. `teacher_sign` "svd" keeps the SVD backend's sign of the teacher's
    vectors, as the official code; "canonical" fixes it, so the loss does not depend on the
    backend or the precision. Non-finite terms count 0."""
    maps = in_compute_dtype(*student_features, *teacher_features)
    pairs = len(student_features)
    batch = maps[0].shape[0]
    loss = maps[0].new_zeros(())
    previous: tuple[Tensor, Tensor] | None = None
    for f_s, f_t in zip(maps[:pairs], maps[pairs:], strict=True):
        s_t, v_t = right_singular(f_t, k, layout)
        if teacher_sign == "canonical":
            v_t = canonical_sign(v_t)
        _, v_s = right_singular(f_s, k + 3, layout)
        scale = s_t.unsqueeze(1)
        v_s, v_t = align_student(v_s, v_t) * scale, v_t * scale
        if previous is not None:
            p_s, p_t = previous
            loss = loss + _finite((_rbf(v_s, p_s) - _rbf(v_t, p_t)).pow(2)).sum() / batch
        previous = v_s, v_t
    return loss


@register("kdsvd")
class KDSVD(FeatureMethod):
    """relations of consecutive stages' leading singular vectors (Lee et al., ECCV 2018)

    mdistiller cfg (KDSVD.K 1, FEAT_WEIGHT 1, CE_WEIGHT 1) and configs/cifar100/kdsvd.yaml;
    RepDistiller KDSVD(k=1): `kdsvd_loss` of the stage outputs f1..f3. Departure: the
    teacher's singular vectors take a canonical sign (`loss.teacher_sign=svd`: the backend's,
    as the official code, whose loss then changes with the SVD backend and precision).
    `loss.layout=mdistiller` decomposes mdistiller's (C*H, W) view instead of RepDistiller's
    (HW, C).
    """

    taps = "stages"
    weight: float = 1.0
    k: int = 1  # the teacher's singular vectors; the student's are k + 3
    teacher_sign: str = "canonical"
    layout: str = "channels"

    @classmethod
    def check(cls, settings: Any) -> None:
        if settings.k < 1:
            raise KdlabError(f"loss.k must be >= 1 for loss=kdsvd, got {settings.k}")
        for key, choices in (("teacher_sign", TEACHER_SIGNS), ("layout", LAYOUTS)):
            if getattr(settings, key) not in choices:
                raise KdlabError(
                    f"loss.{key} must be one of {', '.join(choices)} for loss=kdsvd, got "
                    f"'{getattr(settings, key)}'"
                )

    def setup(self) -> None:
        """The vectors of both sides must have one length per stage, and there must be pairs."""
        pairs = list(zip(self.tapped.student_shapes, self.tapped.teacher_shapes, strict=True))
        axis, what = (0, "channels") if self.layout == "channels" else (2, "widths")
        if len(pairs) < 2 or any(s[axis] != t[axis] for s, t in pairs):
            shapes = ", ".join(f"{s} vs {t}" for s, t in pairs)
            raise KdlabError(
                f"loss=kdsvd relates 2 or more consecutive stages whose student and teacher "
                f"{what} agree (loss.layout={self.layout}), got {shapes}: pick a pair of models "
                "of equal stage widths or set loss.student_points/teacher_points"
            )

    def loss(self, student: Outputs, teacher: Outputs, labels: Tensor) -> Tensor:
        return kdsvd_loss(
            student.features, teacher.features, self.k, self.teacher_sign, self.layout
        )
