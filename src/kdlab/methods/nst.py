"""Neuron Selectivity Transfer (NST) with the polynomial kernel, for one pair of feature maps.

Huang, Wang (2017), "Like What You Like: Knowledge Distill via Neuron Selectivity Transfer"
(arXiv:1707.01219). Each channel's l2-normalised spatial map is a sample; the loss is the
squared MMD between the student's and the teacher's channel distributions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from kdlab.methods._common import in_compute_dtype, match_spatial
from kdlab.methods.base import FeatureConfig, LayerSumObjective
from kdlab.methods.points import feature_method


def _mean_kernel(a: Tensor, b: Tensor) -> Tensor:
    """mean over B x C_a x C_b of k(a_i, b_j) = (a_i . b_j)^2."""
    return (a @ b.transpose(1, 2)).pow(2).mean()


def nst_loss(student_feature: Tensor, teacher_feature: Tensor) -> Tensor:
    """mean k(t, t) + mean k(s, s) - 2 mean k(s, t) over B x C x C' (the references' full
    loss, so its value is the MMD^2 >= 0); the larger map is first average-pooled to the
    smaller's size. The teacher is a target: detached. Sum it over layers.
    """
    f_s, f_t = match_spatial(*in_compute_dtype(student_feature, teacher_feature.detach()))
    s = F.normalize(f_s.flatten(2), dim=2)
    t = F.normalize(f_t.flatten(2), dim=2)
    return _mean_kernel(t, t) + _mean_kernel(s, s) - 2 * _mean_kernel(s, t)


@dataclass
class NstConfig(FeatureConfig):
    """RepDistiller scripts/run_cifar_distill.sh (-b 50), NSTLoss: f1-f3."""

    name: str = "nst"
    beta: float = 50.0


class NstObjective(LayerSumObjective):
    """Sum over the tapped layers of `nst_loss`; the larger map is pooled to the smaller."""

    part = "nst"

    def layer_loss(self, student: Tensor, teacher: Tensor) -> Tensor:
        return nst_loss(student, teacher)


METHOD = feature_method(
    NstConfig,
    NstObjective,
    "stages",
    "neuron-selectivity MMD of the stages after the stem (Huang & Wang 2017)",
)
