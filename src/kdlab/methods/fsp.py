"""Flow of Solution Procedure (FSP): the Gram matrices between consecutive stages' maps,
matched in an init stage before the main training.

Yim, Joo, Bae, Kim (2017), "A Gift from Knowledge Distillation: Fast Optimization, Network
Minimization and Transfer Learning" (CVPR). As RepDistiller runs it (`--distill fsp`): the
init stage trains the student's layers on the FSP loss alone; the main stage adds no FSP
term (helper/loops.py: `loss_kd = 0`), so its default beta is 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import Tensor

from kdlab.errors import KdlabError
from kdlab.methods.base import InitStageMethod, Outputs, register
from kdlab.methods.losses import float32_math, in_compute_dtype, match_spatial


def fsp_matrices(features: Sequence[Tensor]) -> list[Tensor]:
    """G_i[b, j, k] = mean over H*W of top_j * bottom_k for each consecutive pair (bottom =
    features[i], top = features[i + 1]), the larger map average-pooled to the smaller's size
    first: shape (B, C_top, C_bottom), as RepDistiller's FSP.compute_fsp."""
    matrices = []
    for bottom, top in pairwise(features):
        bottom, top = match_spatial(bottom, top)
        matrices.append(torch.einsum("bjhw,bkhw->bjk", top, bottom) / (top.shape[2] * top.shape[3]))
    return matrices


@float32_math
def fsp_loss(student_features: Sequence[Tensor], teacher_features: Sequence[Tensor]) -> Tensor:
    """sum over consecutive pairs of mean over B * C_top * C_bottom of (G_s - G_t)^2
    (RepDistiller's FSP loss group, summed as its init stage does). Both sides' maps must have
    the same channels, point by point."""
    n = len(student_features)
    cast = in_compute_dtype(*student_features, *teacher_features)
    g_s, g_t = fsp_matrices(cast[:n]), fsp_matrices(cast[n:])
    return sum((s - t).pow(2).mean() for s, t in zip(g_s, g_t, strict=True))


@register("fsp")
class FSP(InitStageMethod):
    """Gram matrices between consecutive stages, init stage first (Yim et al. 2017)

    RepDistiller train_student.py (`fsp`): FSP of f0-f3; init stage 30 epochs at the run's
    lr; the main stage is CE alone (-r 1 -a 0; its -b 50 multiplies a term loops.py sets to
    0), hence weight 0. Its init stage trains the student's layers.
    """

    taps = "stem_stages"
    weight: float = 0.0

    def setup(self) -> None:
        student = tuple(shape[0] for shape in self.tapped.student_shapes)
        teacher = tuple(shape[0] for shape in self.tapped.teacher_shapes)
        if student != teacher:
            raise KdlabError(
                f"loss=fsp matches FSP matrices, so the student's and the teacher's points need "
                f"the same channels: student {', '.join(self.tapped.student)} have {student}, "
                f"teacher {', '.join(self.tapped.teacher)} {teacher}: pick models of equal "
                "widths (resnet8x4 from resnet32x4) or set loss.student_points / "
                "loss.teacher_points"
            )

    def loss(self, student: Outputs, teacher: Outputs, labels: Tensor) -> Tensor:
        return fsp_loss(student.features, teacher.features)
