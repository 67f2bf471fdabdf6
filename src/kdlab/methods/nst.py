"""Neuron Selectivity Transfer (NST) with the polynomial kernel, for one pair of feature maps.

Huang, Wang (2017), "Like What You Like: Knowledge Distill via Neuron Selectivity Transfer"
(arXiv:1707.01219). Each channel's l2-normalised spatial map is a sample; the loss is the
squared MMD between the student's and the teacher's channel distributions.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from kdlab.methods.base import FeatureMethod, Outputs, paired, register
from kdlab.methods.losses import float32_math, in_compute_dtype, match_spatial


def _mean_kernel(a: Tensor, b: Tensor) -> Tensor:
    """mean over B x C_a x C_b of k(a_i, b_j) = (a_i . b_j)^2."""
    return (a @ b.transpose(1, 2)).pow(2).mean()


@float32_math
def nst_loss(student_feature: Tensor, teacher_feature: Tensor) -> Tensor:
    """mean k(t, t) + mean k(s, s) - 2 mean k(s, t) over B x C x C' (the references' full
    loss, so its value is the MMD^2 >= 0); the larger map is first average-pooled to the
    smaller's size. The teacher is a target: detached. Sum it over layers.
    """
    f_s, f_t = match_spatial(*in_compute_dtype(student_feature, teacher_feature.detach()))
    s = F.normalize(f_s.flatten(2), dim=2)
    t = F.normalize(f_t.flatten(2), dim=2)
    return _mean_kernel(t, t) + _mean_kernel(s, s) - 2 * _mean_kernel(s, t)


@register("nst")
class NST(FeatureMethod):
    """neuron-selectivity MMD of the stages after the stem (Huang & Wang 2017)

    RepDistiller scripts/run_cifar_distill.sh (-b 50), NSTLoss: f1-f3; the sum over the tapped
    layers of `nst_loss`, the larger map pooled to the smaller.
    """

    taps = "stages"
    weight: float = 50.0

    def loss(self, student: Outputs, teacher: Outputs, labels: Tensor) -> Tensor:
        return sum(nst_loss(s, t) for s, t in paired(student, teacher))
