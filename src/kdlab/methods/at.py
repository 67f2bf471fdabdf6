"""Attention Transfer (AT), activation-based, for one pair of feature maps.

Zagoruyko, Komodakis (2017), "Paying More Attention to Attention: Improving the Performance
of Convolutional Neural Networks via Attention Transfer" (ICLR).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from kdlab.methods._common import in_compute_dtype, match_spatial
from kdlab.methods.base import FeatureConfig, LayerSumObjective
from kdlab.methods.points import feature_method


def _attention(f: Tensor, p: int) -> Tensor:
    """l2-normalised (over HW) mean_c f^p, shape (B, H*W).

    f^p, not |f|^p, as in the references: the two differ for odd p on pre-activation maps.
    """
    return F.normalize(f.pow(p).mean(dim=1).flatten(1), dim=1)


def at_loss(student_feature: Tensor, teacher_feature: Tensor, p: int = 2) -> Tensor:
    """mean over B * H*W of (a_s - a_t)^2 (the references' reduction: no beta/2, no per-layer
    norm); the larger map is first average-pooled to the smaller's size. Sum it over layers.
    """
    f_s, f_t = match_spatial(*in_compute_dtype(student_feature, teacher_feature))
    return (_attention(f_s, p) - _attention(f_t, p)).pow(2).mean()


@dataclass
class AtConfig(FeatureConfig):
    """RepDistiller scripts/run_cifar_distill.sh (-b 1000), AttentionTransfer(p=2): f1-f3."""

    name: str = "at"
    beta: float = 1000.0
    p: int = 2


class AtObjective(LayerSumObjective):
    """Sum over the tapped layers of `at_loss`; the larger map is pooled to the smaller."""

    part = "at"

    def layer_loss(self, student: Tensor, teacher: Tensor) -> Tensor:
        return at_loss(student, teacher, self.settings.p)


METHOD = feature_method(
    AtConfig,
    AtObjective,
    "stages",
    "attention maps of the stages after the stem (Zagoruyko & Komodakis 2017)",
)
