"""Inter-Channel Correlation KD (ICKD-C): the student's channel Gram matrix mimics the teacher's.

Liu, Zhang, Zhang, Lu (2021), "Exploring Inter-Channel Correlation for Diversity-Preserved
Knowledge Distillation" (ICCV). Official code: ADLab-AutoDrive/ICKD @ 403b8d3d,
Cifar100/distiller_zoo/ICKD.py (`Embed`, `ICKDLoss.batch_loss`), Cifar100/helper/loops.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdlab.methods.base import FeatureMethod, Outputs, register
from kdlab.methods.losses import float32_math, in_compute_dtype


def channel_correlation(feature: Tensor) -> Tensor:
    """G = F F^T per sample (F: the map flattened to C x HW), each row l2-normalised (eps
    1e-12); (B, C, C)."""
    f = feature.flatten(2)
    return F.normalize(torch.bmm(f, f.transpose(1, 2)), dim=2)


@float32_math
def ickd_loss(student_embedded: Tensor, teacher_feature: Tensor) -> Tensor:
    """sum_{b,i,j} (G_s - G_t)^2 / (C * B), the official reduction, from the student's embedded
    map and the teacher's map (same B and C; H, W may differ)."""
    s, t = in_compute_dtype(student_embedded, teacher_feature)
    b, c = s.shape[:2]
    return (channel_correlation(s) - channel_correlation(t)).pow(2).sum() / (c * b)


class ICKDEmbed(nn.Module):
    """The official student `Embed`: 1x1 conv without bias to the teacher's channels, then BN
    (PyTorch's default initialisation, as there)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))


@register("ickd")
class ICKD(FeatureMethod):
    """inter-channel correlation of the pre-pool map, student embedded (Liu et al., ICCV 2021)

    ICKD Cifar100/README.md and scripts/run_cifar_distill.sh: `--distill ickd -r 1 -a 0 -b 2.5`
    ("ICKD-C w/o KL"; `loss.kd_weight=1` at T 4 is "ICKD-C"), `feat_dim` = the teacher's
    channels: `ickd_loss` of the student's map through ICKDEmbed (trained with the student) and
    the teacher's raw map, both ICKD's `feat[-2]`, the map the classifier pools. The official
    code also builds a teacher embed it never applies; it is not built here.
    """

    taps = "prepool"
    weight: float = 2.5

    def setup(self) -> None:
        self.embed = ICKDEmbed(self.tapped.student_shapes[0][0], self.tapped.teacher_shapes[0][0])

    def loss(self, student: Outputs, teacher: Outputs, labels: Tensor) -> Tensor:
        return ickd_loss(self.embed(student.features[0]), teacher.features[0])
