"""Relational Knowledge Distillation (RKD): distance-wise and angle-wise terms.

Park, Kim, Lu, Cho (2019), "Relational Knowledge Distillation" (CVPR): the student keeps the
teacher's pairwise distances (up to scale) and the angles of its triplets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from kdlab.methods.base import FeatureMethod, Outputs, register
from kdlab.methods.losses import float32_math, in_compute_dtype


def _relations(x: Tensor) -> tuple[Tensor, Tensor]:
    """Normalised distances (B, B) and triplet cosines (B^3,) of the rows of x.

    Distances are the norms of the differences x_j - x_i (the same (B, B, D) tensor the
    angles need), not sqrt(|a|^2 + |b|^2 - 2ab) as in the references, whose cancellation
    makes near-duplicate rows noisy in float32. sqrt(clamp(d^2, 1e-12)) keeps duplicate rows'
    gradients finite; the diagonal is 0 and d is divided by its mean off the diagonal.
    """
    x = x.flatten(1)
    n = x.shape[0]
    diff = x.unsqueeze(0) - x.unsqueeze(1)
    d = diff.pow(2).sum(dim=2).clamp_min(1e-12).sqrt()
    d = d.masked_fill(torch.eye(n, dtype=torch.bool, device=x.device), 0.0)
    if n > 1:
        d = d / (d.sum() / (n * (n - 1)))
    e = F.normalize(diff, dim=2)
    return d, (e @ e.transpose(1, 2)).flatten()


@float32_math
def rkd_loss(
    student_embedding: Tensor,
    teacher_embedding: Tensor,
    distance_weight: float = 25.0,
    angle_weight: float = 50.0,
) -> Tensor:
    """distance_weight * L_D + angle_weight * L_A, each a smooth-L1 (beta 1) mean, over the
    B^2 distances (diagonal zeros included) and the B^3 cosines <e_ij, e_ik> (degenerate
    triplets included), as in the references. The teacher is a target: detached. A batch of
    one has no pairs: the loss is 0.
    """
    x_s, x_t = in_compute_dtype(student_embedding, teacher_embedding.detach())
    d_s, a_s = _relations(x_s)
    d_t, a_t = _relations(x_t)
    loss_d = F.smooth_l1_loss(d_s, d_t, beta=1.0)
    loss_a = F.smooth_l1_loss(a_s, a_t, beta=1.0)
    return distance_weight * loss_d + angle_weight * loss_a


@register("rkd")
class RKD(FeatureMethod):
    """relational distances and angles of the embedding (Park et al. 2019)

    RepDistiller scripts/run_cifar_distill.sh (-b 1), RKDLoss(w_d=25, w_a=50): f4 (the
    pooled embedding; the two widths may differ).
    """

    taps = "embedding"
    weight: float = 1.0
    distance_weight: float = 25.0
    angle_weight: float = 50.0

    def loss(self, student: Outputs, teacher: Outputs, labels: Tensor) -> Tensor:
        s, t = student.features[0], teacher.features[0]
        return rkd_loss(s, t, self.distance_weight, self.angle_weight)
