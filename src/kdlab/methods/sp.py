"""Similarity-Preserving knowledge distillation (SP).

Tung, Mori (2019), "Similarity-Preserving Knowledge Distillation" (ICCV): the student keeps
the teacher's batch similarity matrix, whatever the feature shapes.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from kdlab.methods.base import FeatureMethod, Outputs, paired, register
from kdlab.methods.losses import float32_math, in_compute_dtype


def _similarity(f: Tensor) -> Tensor:
    """G = Q Q^T with Q = f flattened per sample, each row of G l2-normalised."""
    q = f.flatten(1)
    return F.normalize(q @ q.t(), dim=1)


@float32_math
def sp_loss(student_feature: Tensor, teacher_feature: Tensor) -> Tensor:
    """||G_t - G_s||_F^2 / B^2, a 0-dim tensor (RepDistiller returns shape [1])."""
    f_s, f_t = in_compute_dtype(student_feature, teacher_feature)
    n = f_s.shape[0]
    return (_similarity(f_t) - _similarity(f_s)).pow(2).sum() / (n * n)


@register("sp")
class SP(FeatureMethod):
    """similarity-preserving Gram matrices of the last stage (Tung & Mori 2019)

    RepDistiller scripts/run_cifar_distill.sh (-b 3000), Similarity: f3 (feat[-2]).
    """

    taps = "last"
    weight: float = 3000.0

    def loss(self, student: Outputs, teacher: Outputs, labels: Tensor) -> Tensor:
        return sum(sp_loss(s, t) for s, t in paired(student, teacher))
