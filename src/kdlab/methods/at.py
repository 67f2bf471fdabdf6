"""Attention Transfer (AT), activation-based, for one pair of feature maps.

Zagoruyko, Komodakis (2017), "Paying More Attention to Attention: Improving the Performance
of Convolutional Neural Networks via Attention Transfer" (ICLR).
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from kdlab.methods.base import FeatureMethod, Outputs, paired, register
from kdlab.methods.losses import attention_map, in_compute_dtype, match_spatial
from kdlab.methods.numbers import BOUNDS, Bound


def at_loss(student_feature: Tensor, teacher_feature: Tensor, p: int = 2) -> Tensor:
    """mean over B * H*W of (a_s - a_t)^2 (the references' reduction: no beta/2, no per-layer
    norm); the larger map is first average-pooled to the smaller's size. Sum it over layers.
    """
    f_s, f_t = match_spatial(*in_compute_dtype(student_feature, teacher_feature))
    return (attention_map(f_s, p) - attention_map(f_t, p)).pow(2).mean()


@register("at")
class AT(FeatureMethod):
    """attention maps of the stages after the stem (Zagoruyko & Komodakis 2017)

    RepDistiller scripts/run_cifar_distill.sh (-b 1000), AttentionTransfer(p=2): f1-f3; the
    sum over the tapped layers of `at_loss`, the larger map pooled to the smaller.
    """

    taps = "stages"
    weight: float = 1000.0
    p: int = 2

    bounds: ClassVar[tuple[Bound, ...]] = BOUNDS["at"]  # p >= 1: p=0 teaches nothing

    def loss(self, student: Outputs, teacher: Outputs, labels: Tensor) -> Tensor:
        return sum(at_loss(s, t, self.p) for s, t in paired(student, teacher))
