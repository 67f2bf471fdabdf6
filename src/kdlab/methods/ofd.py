"""Overhaul of Feature Distillation (OFD): pre-ReLU maps, a margin from the teacher's BN.

Heo, Kim, Yun, Park, Kwak, Choi (2019), "A Comprehensive Overhaul of Feature Distillation"
(ICCV). The student's pre-ReLU maps pass a connector (1x1 conv + BN) and are pulled to the
teacher's pre-ReLU maps; the teacher's negative values are raised to a per-channel margin (the
mean of its negative responses, from its BN), and where the student is already below a
negative target nothing is penalised: the ReLU would make both zero anyway.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdlab.errors import KdlabError
from kdlab.methods.base import FeatureMethod, Outputs, register
from kdlab.methods.losses import in_compute_dtype
from kdlab.models.preact import preact_modules

TAIL_MIN = 1e-3  # below this P(x < 0) the references use -3 std as the margin


def ofd_margin(bn_weight: Tensor, bn_bias: Tensor) -> Tensor:
    """Per channel, E[x | x < 0] for x ~ N(m, s^2), the BN's output before its ReLU (s = |γ|,
    m = β): m - s·φ(m/s) / Φ(-m/s); -3s where Φ(-m/s) <= 0.001 (the official code and
    mdistiller). Computed in float64 (s clamped to 1e-12), returned in γ's dtype."""
    s = bn_weight.detach().double().abs().clamp_min(1e-12)
    m = bn_bias.detach().double()
    z = m / s
    tail = torch.special.ndtr(-z)
    density = torch.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    margin = torch.where(tail > TAIL_MIN, m - s * density / tail.clamp_min(TAIL_MIN), -3 * s)
    return margin.to(bn_weight.dtype)


def ofd_loss(student_feature: Tensor, teacher_feature: Tensor, margin: Tensor) -> Tensor:
    """Partial L2, summed over C * H * W and averaged over the batch (mdistiller's reduction):
    sum (s - t')^2 where s > t' or t' > 0, with t' = max(t, margin[c]).

    `student_feature` is the connector's output; the teacher map is first average-pooled to its
    H x W. With the (negative) margins of `ofd_margin` this is mdistiller's `feat_loss`. The
    objective weighs layer i of n by 2^-(n-1-i); sum the layers."""
    s, t, m = in_compute_dtype(student_feature, teacher_feature, margin)
    if t.shape[2:] != s.shape[2:]:
        t = F.adaptive_avg_pool2d(t, s.shape[2:])
    target = torch.maximum(t, m.reshape(1, -1, 1, 1))
    kept = (s > target) | (target > 0)
    return ((s - target).pow(2) * kept).sum() / s.shape[0]


def ofd_connector(student_channels: int, teacher_channels: int) -> nn.Sequential:
    """1x1 conv (He-normal, fan out) + BN from the student's channels to the teacher's."""
    conv = nn.Conv2d(student_channels, teacher_channels, kernel_size=1, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return nn.Sequential(conv, nn.BatchNorm2d(teacher_channels))


def teacher_margins(teacher: nn.Module, points: Sequence[str]) -> list[Tensor]:
    """The margin of each teacher point, from the BN before its ReLU (one-line error if none)."""
    margins = []
    for point in points:
        try:
            _, bn = preact_modules(teacher, point)
        except KdlabError as error:
            raise KdlabError(f"loss=ofd takes its margins from the teacher's BN: {error}") from None
        if bn is None:
            raise KdlabError(
                f"loss=ofd takes its margins from the teacher's BN, and teacher "
                f"{type(teacher).__name__} has none before '{point}': pick a CIFAR ResNet, WRN, "
                "VGG or MobileNetV2 teacher"
            )
        margins.append(ofd_margin(bn.weight, bn.bias))
    return margins


@register("ofd")
class OFD(FeatureMethod):
    """pre-ReLU maps of the last three stages through connectors, BN margins (Heo et al. 2019)

    mdistiller engine/cfg.py, kept by configs/cifar100/ofd.yaml: OFD.LOSS.CE_WEIGHT 1,
    FEAT_WEIGHT 0.001, CONNECTOR.KERNEL_SIZE 1. Σ_i 2^-(n-1-i) · `ofd_loss`(connector_i(s_i),
    t_i, margin_i) over the n tapped pairs; the connectors are this method's parameters.
    """

    taps = "preact"
    weight: float = 0.001

    def setup(self) -> None:
        pairs = zip(self.tapped.student_shapes, self.tapped.teacher_shapes, strict=True)
        self.connectors = nn.ModuleList(ofd_connector(s[0], t[0]) for s, t in pairs)
        assert self.teacher is not None  # margins: from the frozen teacher, not state
        self.margins = teacher_margins(self.teacher.model, self.tapped.teacher)

    def loss(self, student: Outputs, teacher: Outputs, labels: Tensor) -> Tensor:
        n = len(self.connectors)
        layers = zip(self.connectors, student.features, teacher.features, self.margins, strict=True)
        return sum(
            ofd_loss(connect(s), t, m) / 2 ** (n - 1 - i)
            for i, (connect, s, t, m) in enumerate(layers)
        )
