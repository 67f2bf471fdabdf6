"""Class Attention Transfer (CAT-KD): the student mimics the teacher's class activation maps.

Guo, Yan, Li, Lin (2023), "Class Attention Transfer Based Knowledge Distillation" (CVPR).
Official code: GzyAftermath/CAT-KD @ 4467073c, mdistiller/distillers/CAT_KD.py (`CAT_loss`,
`_Normalize`) and tools/train.py, which turns each net's classifier into `conv_test`, a 1x1 conv
without bias holding the classifier weight: the CAMs are that conv on the pre-pool map.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from kdlab.errors import KdlabError
from kdlab.methods.base import FeatureMethod, Outputs, register
from kdlab.methods.losses import float32_math, in_compute_dtype


@float32_math
def class_activation_maps(feature: Tensor, classifier_weight: Tensor) -> Tensor:
    """CAM[b, k, h, w] = sum_c W[k, c] x[b, c, h, w]: the (K, C) classifier weight applied as a
    1x1 conv without bias to the (B, C, H, W) map it pools; (B, K, H, W)."""
    x, w = in_compute_dtype(feature, classifier_weight)
    return torch.einsum("kc,bchw->bkhw", w, x)


@float32_math
def cat_loss(student_cam: Tensor, teacher_cam: Tensor, resolution: int, normalize: bool) -> Tensor:
    """mean over (b, k, i, j) of (P_s - P_t)^2, P = the CAMs average-pooled to r x r and, with
    `normalize`, each map divided by its l2 norm over the r*r cells (eps 1e-12): the official
    F.mse_loss, so its weights apply. The maps' H, W may differ; K must not."""
    s, t = in_compute_dtype(student_cam, teacher_cam)
    s = F.adaptive_avg_pool2d(s, resolution)
    t = F.adaptive_avg_pool2d(t, resolution)
    if normalize:
        s, t = F.normalize(s, dim=(2, 3)), F.normalize(t, dim=(2, 3))
    return (s - t).pow(2).mean()


@register("catkd")
class CATKD(FeatureMethod):
    """class activation maps through the classifier weights, pooled (Guo et al., CVPR 2023)

    CAT-KD configs/cifar100/CAT_KD/res32x4_res8x4.yaml: CAT_loss_weight 15, CAM_RESOLUTION 2,
    IF_NORMALIZE False, CE_WEIGHT 1, no KD term (ShuffleNet students: 600, 4, True). The maps
    are the pre-pool maps through each net's final Linear weight; the teacher's bias is left
    out as in the official CAMs. Departure: the student keeps its classifier bias in its own
    logits (the official students are rebuilt without one); the CAMs never use it.
    """

    taps = "prepool"
    weight: float = 15.0
    resolution: int = 2  # CAM_RESOLUTION: the CAMs are pooled to r x r
    normalize: bool = False  # IF_NORMALIZE: each pooled map l2-normalised

    @classmethod
    def check(cls, settings: Any) -> None:
        if settings.resolution < 1:
            raise KdlabError(
                f"loss.resolution must be >= 1 for loss=catkd, got {settings.resolution}"
            )

    def setup(self) -> None:
        self.linears = self.classifiers()  # a tuple: not this method's submodules

    def loss(self, student: Outputs, teacher: Outputs, labels: Tensor) -> Tensor:
        student_linear, teacher_linear = self.linears
        cam_s = class_activation_maps(student.features[0], student_linear.weight)
        cam_t = class_activation_maps(teacher.features[0], teacher_linear.weight.detach())
        return cat_loss(cam_s, cam_t, self.resolution, self.normalize)
