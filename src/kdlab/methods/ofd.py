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
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdlab.errors import KdlabError
from kdlab.methods._common import in_compute_dtype
from kdlab.methods.base import FeatureConfig, MethodContext, MethodObjective, Taps
from kdlab.methods.points import feature_method
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
        margins.append(ofd_margin(bn.weight, bn.bias))
    return margins


@dataclass
class OfdConfig(FeatureConfig):
    """mdistiller engine/cfg.py, kept by configs/cifar100/ofd.yaml: OFD.LOSS.CE_WEIGHT 1,
    FEAT_WEIGHT 0.001, CONNECTOR.KERNEL_SIZE 1; the last three stages before their ReLU."""

    name: str = "ofd"
    beta: float = 0.001


class OfdObjective(MethodObjective):
    """Σ_i 2^-(n-1-i) · `ofd_loss`(connector_i(s_i), t_i, margin_i) over the n tapped pairs; the
    connectors are this objective's parameters (the stage trains them, checkpoints keep them)."""

    part = "ofd"

    def __init__(
        self, settings: OfdConfig, context: MethodContext, taps: Taps, weight: float
    ) -> None:
        super().__init__(settings, context, taps, weight)
        device = next(context.student.parameters()).device
        pairs = zip(taps.student_shapes, taps.teacher_shapes, strict=True)
        self.connectors = nn.ModuleList(ofd_connector(s[0], t[0]) for s, t in pairs).to(device)
        margins = teacher_margins(self.teacher.model, taps.teacher)
        self.margins = [m.to(device) for m in margins]  # from the frozen teacher: not state

    def method_loss(
        self, student: tuple[Tensor, list[Any]], teacher: tuple[Tensor, list[Any]], y: Tensor
    ) -> Tensor:
        n = len(self.connectors)
        layers = zip(self.connectors, student[1], teacher[1], self.margins, strict=True)
        return sum(
            ofd_loss(connect(s), t, m) / 2 ** (n - 1 - i)
            for i, (connect, s, t, m) in enumerate(layers)
        )


METHOD = feature_method(
    OfdConfig,
    OfdObjective,
    "preact",
    "pre-ReLU maps of the last three stages through connectors, BN margins (Heo et al. 2019)",
)
