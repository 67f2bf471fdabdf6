"""Softmax Regression Representation learning (SRD): the student's pooled features, through a
connector, must match the teacher's and give the teacher's logits through its classifier.

Yang, Martinez, Bulat, Tzimiropoulos (2021), "Knowledge Distillation via Softmax Regression
Representation Learning" (ICLR). The paper's code (jingyang2017/KD_SRRL) is ImageNet only; its
CIFAR-100 code is the same author's jingyang2017/SRD_ossl @ d295cd84: distiller_zoo/AIN.py
(`transfer_conv`, `statm_loss`) and helper/loops.py (`train_distill`, the `srd` branch), which
match the logits with an MSE, not a KL.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from kdlab.methods.base import FeatureMethod, Outputs, register
from kdlab.methods.losses import float32_math, in_compute_dtype
from kdlab.methods.points import pooling_classifier


@float32_math
def srd_loss(
    student_connected: Tensor,
    teacher_feature: Tensor,
    teacher_logits: Tensor,
    classifier_weight: Tensor,
    classifier_bias: Tensor,
    feat_weight: float = 1.0,
) -> Tensor:
    """feat_weight * mean_{b,c} (pool(s) - pool(t))^2 + mean_{b,k} (W pool(s) + b - z_t)^2:
    `statm_loss` and the MSE of the student's pooled connected map through the teacher's
    classifier (W, b) against the teacher's logits z_t; pool = the mean over H and W."""
    s, t, z_t, w, b = in_compute_dtype(
        student_connected, teacher_feature, teacher_logits, classifier_weight, classifier_bias
    )
    pooled = s.mean(dim=(2, 3))
    feature_term = (pooled - t.mean(dim=(2, 3))).pow(2).mean()
    return feat_weight * feature_term + (F.linear(pooled, w, b) - z_t).pow(2).mean()


class SRDConnector(nn.Module):
    """The official `transfer_conv`: 1x1 conv without bias to the teacher's channels (weights
    N(0, sqrt(2 / C_t))), BN (weight 1, bias 0), ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        nn.init.normal_(self.conv.weight, 0.0, math.sqrt(2.0 / out_channels))
        nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


@register("srd")
class SRD(FeatureMethod):
    """the pre-pool map through a connector and the teacher's classifier (Yang et al., ICLR 2021)

    SRD_ossl runs/run_kd_ssl.sh (`--distill srd -r 1 -a 0 -b 1`) and helper/loops.py
    (feat_weight 1; 10 for its srdv2 and ShuffleV1 students): `srd_loss` of the student's map
    (`feat[-2]`, the map the classifier pools) through SRDConnector (trained with the student),
    the teacher's map, its logits and its classifier (weight and bias, frozen). No KL term, as
    the official code: `loss.kd_weight` adds one on the student's own logits.
    """

    taps = "prepool"
    weight: float = 1.0
    feat_weight: float = 1.0  # of the pooled-feature term beside the logit term

    def setup(self) -> None:
        assert self.teacher is not None
        channels = self.tapped.teacher_shapes[0][0]
        self.connector = SRDConnector(self.tapped.student_shapes[0][0], channels)
        # In a tuple, not a submodule: the frozen teacher's layer, not this method's.
        self.teacher_classifier = (
            pooling_classifier(self.teacher.model, channels, self.name, "teacher"),
        )

    def loss(self, student: Outputs, teacher: Outputs, labels: Tensor) -> Tensor:
        (classifier,) = self.teacher_classifier
        return srd_loss(
            self.connector(student.features[0]),
            teacher.features[0],
            teacher.logits,
            classifier.weight.detach(),
            classifier.bias.detach(),
            self.feat_weight,
        )
