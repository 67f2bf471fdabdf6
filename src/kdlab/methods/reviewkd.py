"""Knowledge Review (ReviewKD): the student's stages, fused deep to shallow, against the teacher's.

Chen, Liu, Zhao, Jia (2021), "Distilling Knowledge via Knowledge Review" (CVPR). Each student
stage is fused by an attention-based fusion (ABF) module with the review of the deeper stages
(the residual passed up from the embedding), mapped to the teacher's channels and size, and
compared with the teacher's pre-ReLU map by the hierarchical context loss (HCL).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdlab.methods.base import FeatureMethod, Outputs, register
from kdlab.methods.dkd import dkd_warmup
from kdlab.methods.losses import in_compute_dtype

HCL_LEVELS = (4, 2, 1)  # the pyramid's pooled sizes, each used only below the map's size
MAX_MID_CHANNELS = 512  # the ABFs' width: min(512, the student's deepest width), as the references


def hcl_loss(student_feature: Tensor, teacher_feature: Tensor) -> Tensor:
    """(mse(s, t) + Σ_k w_k mse(pool_l(s), pool_l(t))) / (1 + Σ_k w_k) for one pair of equal
    (B, C, H, W) maps, mse = mean over all elements, pool_l = adaptive average pooling to l x l
    for the levels l in (4, 2, 1) below min(H, W) (the references: below H), w_k = 2^-k for the
    k-th level used (1/2, 1/4, 1/8). Sum it over the pairs."""
    s, t = in_compute_dtype(student_feature, teacher_feature)
    loss = (s - t).pow(2).mean()
    weight, total = 1.0, 1.0
    for level in HCL_LEVELS:
        if level >= min(s.shape[2:]):
            continue
        weight /= 2
        pooled = F.adaptive_avg_pool2d(s, level) - F.adaptive_avg_pool2d(t, level)
        loss = loss + weight * pooled.pow(2).mean()
        total += weight
    return loss / total


def as_map(feature: Tensor) -> Tensor:
    """A (B, D) embedding as a (B, D, 1, 1) map; maps unchanged."""
    return feature if feature.dim() == 4 else feature[:, :, None, None]


class ABF(nn.Module):
    """Attention-based fusion: 1x1 conv-BN to the mid width; fused with the (upsampled) review
    of the deeper stages by two sigmoid attention maps; resized to the teacher's map; then a 3x3
    conv-BN to the teacher's channels. Returns (output, the fused map passed up)."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, fuse: bool) -> None:
        super().__init__()
        self.reduce = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, 1, bias=False), nn.BatchNorm2d(mid_channels)
        )
        self.attention = (
            nn.Sequential(nn.Conv2d(2 * mid_channels, 2, 1), nn.Sigmoid()) if fuse else None
        )
        self.output = nn.Sequential(
            nn.Conv2d(mid_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        nn.init.kaiming_uniform_(self.reduce[0].weight, a=1)
        nn.init.kaiming_uniform_(self.output[0].weight, a=1)

    def forward(
        self, x: Tensor, review: Tensor | None, out_size: tuple[int, int]
    ) -> tuple[Tensor, Tensor]:
        x = self.reduce(x)
        if self.attention is not None and review is not None:
            review = F.interpolate(review, size=x.shape[2:], mode="nearest")
            z = self.attention(torch.cat([x, review], dim=1))
            x = x * z[:, :1] + review * z[:, 1:]
        if tuple(x.shape[2:]) != out_size:
            x = F.interpolate(x, size=out_size, mode="nearest")
        return self.output(x), x


class ReviewFusion(nn.Module):
    """One ABF per tapped student feature (shallow to deep; the deepest, the embedding, fuses
    nothing), run deep to shallow; shapes are the tapped (C, H, W) or (D,) shapes."""

    def __init__(
        self, student_shapes: Sequence[Sequence[int]], teacher_shapes: Sequence[Sequence[int]]
    ) -> None:
        super().__init__()
        mid = min(MAX_MID_CHANNELS, student_shapes[-1][0])
        n = len(student_shapes)
        pairs = zip(student_shapes, teacher_shapes, strict=True)
        self.abfs = nn.ModuleList(
            ABF(s[0], mid, t[0], fuse=i < n - 1) for i, (s, t) in enumerate(pairs)
        )
        self.out_sizes = [(t[1], t[2]) if len(t) == 3 else (1, 1) for t in teacher_shapes]

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        outputs: list[Tensor] = []
        review: Tensor | None = None
        for i in reversed(range(len(self.abfs))):
            out, review = self.abfs[i](as_map(features[i]), review, self.out_sizes[i])
            outputs.insert(0, out)
        return outputs


@register("reviewkd")
class ReviewKD(FeatureMethod):
    """the student's stages fused deep to shallow (ABF) vs the teacher's, HCL (Chen et al. 2021)

    mdistiller configs/cifar100/reviewkd.yaml (resnet32x4 -> resnet8x4: REVIEWKD_WEIGHT 5; the
    official CIFAR-100 script: 5 for most pairs, 8 for ShuffleV2, 0.6 for resnet56 -> resnet20,
    1 for resnet110 -> resnet32) and engine/cfg.py (CE 1, WARMUP_EPOCHS 20):
    min(epoch / warmup, 1) · Σ_pairs `hcl_loss`(ABF output, teacher map); the ABFs are this
    method's parameters.
    """

    taps = "review"
    weight: float = 5.0
    warmup: int = 20  # epochs to full weight: min(epoch / warmup, 1), epochs from 1

    def setup(self) -> None:
        self.fusion = ReviewFusion(self.tapped.student_shapes, self.tapped.teacher_shapes)

    def loss(self, student: Outputs, teacher: Outputs, labels: Tensor) -> Tensor:
        outputs = self.fusion(student.features)
        hcl = sum(hcl_loss(s, as_map(t)) for s, t in zip(outputs, teacher.features, strict=True))
        return dkd_warmup(self.epoch, self.warmup) * hcl
