"""Scale Decoupled Distillation (SDD): KD or DKD on the logits of every region of the pre-pool
map at several scales, the regions whose teacher prediction disagrees in correctness with its
global one weighed more.

Wei, Luo, Luo (2024), "Scale Decoupled Distillation" (CVPR). Official code:
shicaiwei123/SDD-CVPR2024 @ e412036c: mdistiller/models/cifar/utils.py (`SPP`), the models'
`patch_score`, mdistiller/distillers/KD.py (`sdd_kd_loss`, `SDD_KD`) and
mdistiller/distillers/SDD_DKD.py (`multi_dkd`, `SDD_DKD`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from kdlab.errors import KdlabError
from kdlab.methods.base import FeatureMethod, Outputs, register
from kdlab.methods.dkd import dkd_rows, dkd_warmup
from kdlab.methods.losses import in_compute_dtype, kl_rows

VARIANTS = ("kd", "dkd")


def multiscale_logits(
    feature: Tensor, weight: Tensor, bias: Tensor | None, scales: Sequence[int]
) -> Tensor:
    """(B, K, N) region logits, N = sum s^2: the (B, D, H, W) map average-pooled to 4 x 4 and
    every scale s pooled from that grid (the official `SPP`, whatever M), regions row-major,
    scales in order (region 0 is the global one for scales [1, ...]), each through the
    classifier (weight (K, D), bias (K,))."""
    grid = F.adaptive_avg_pool2d(feature, 4)
    pooled = torch.cat([F.adaptive_avg_pool2d(grid, s).flatten(2) for s in scales], dim=2)
    return F.linear(pooled.transpose(1, 2), weight, bias).transpose(1, 2)


def region_rows(multi: Tensor) -> Tensor:
    """(B, K, N) -> (N * B, K), region-major (the official permute(2, 0, 1) and reshape)."""
    b, k, n = multi.shape
    return multi.permute(2, 0, 1).reshape(n * b, k)


def region_weights(teacher_multi: Tensor, labels: Tensor, complementary_weight: float) -> Tensor:
    """(N * B,) weights of the region rows: 1 where the teacher's region prediction is right
    exactly when its global (region 0) one is ("consistent"), else `complementary_weight`."""
    b, _, n = teacher_multi.shape
    correct = region_rows(teacher_multi.detach()).argmax(dim=1) == labels.repeat(n)
    weights = torch.ones(n * b, dtype=teacher_multi.dtype, device=teacher_multi.device)
    return weights.masked_fill(correct != correct[:b].repeat(n), complementary_weight)


def sdd_loss(
    student_multi: Tensor,
    teacher_multi: Tensor,
    labels: Tensor,
    T: float,
    variant: str = "kd",
    alpha: float = 1.0,
    beta: float = 8.0,
    complementary_weight: float = 2.0,
) -> Tensor:
    """mean over the N * B region rows of w_r * l_r, l_r = T^2 KL(softmax(t_r/T) || softmax(s_r/T))
    (variant kd, `sdd_kd_loss`) or DKD's alpha TCKD + beta NCKD terms (dkd, `multi_dkd`).

    With N = 1 this is mdistiller's KD / DKD, so their weights carry over. KL from
    log-probabilities, never NaN: the official NaN zeroing and fallback to 0 are not needed.
    """
    s, t = in_compute_dtype(student_multi, teacher_multi)
    rows_s, rows_t = region_rows(s), region_rows(t)
    if variant == "kd":
        log_t, log_s = F.log_softmax(rows_t / T, dim=1), F.log_softmax(rows_s / T, dim=1)
        per_row = T * T * kl_rows(log_t, log_s)
    else:
        per_row = dkd_rows(rows_s, rows_t, labels.repeat(s.shape[2]), alpha, beta, T)
    return (per_row * region_weights(t, labels, complementary_weight)).mean()


@register("sdd")
class SDD(FeatureMethod):
    """KD or DKD on multi-scale region logits of the pre-pool map (Wei et al., CVPR 2024)

    SDD-CVPR2024 @ e412036 (mdistiller/engine/cfg.py, train_origin.py, teacher_*.sh): SD-KD
    (variant kd) 0.1 CE + 0.9 L at T 4; SD-DKD (dkd) CE 1 + min(epoch / 20, 1) L, alpha 1,
    beta 8 (6 for some pairs), T 4; M = [1, 2, 4] for the README pairs ([1, 2] for
    resnet32x4->resnet8x4 and vgg13->vgg8); complementary regions weigh 2. Both models' own
    classifiers give the region logits; the student's gets gradient through every region.
    """

    taps = "prepool"
    beta_is_weight: ClassVar[bool] = False
    variant: str = "kd"  # kd (SD-KD) or dkd (SD-DKD)
    scales: list[int] = [1, 2, 4]  # noqa: RUF012 (copied per config) the official --M
    ce_weight: float | None = None  # null: 0.1 for kd, 1.0 for dkd
    weight: float | None = None  # null: 0.9 for kd, 1.0 for dkd
    alpha: float = 1.0  # dkd's TCKD weight
    beta: float = 8.0  # dkd's NCKD weight
    warmup: int = 20  # dkd's epochs to full weight, min(epoch / warmup, 1); kd has none
    complementary_weight: float = 2.0

    @classmethod
    def check(cls, settings: Any) -> None:
        if settings.variant not in VARIANTS:
            raise KdlabError(
                f"loss.variant must be one of {', '.join(VARIANTS)} for loss=sdd, "
                f"got {settings.variant!r}"
            )
        if not settings.scales or min(settings.scales) < 1:
            raise KdlabError(
                f"loss.scales must be a non-empty list of scales >= 1 for loss=sdd, "
                f"got {list(settings.scales)} (e.g. loss.scales=[1,2,4])"
            )

    def setup(self) -> None:
        kd = self.variant == "kd"
        self.ce_weight = (0.1 if kd else 1.0) if self.ce_weight is None else self.ce_weight
        self.weight = (0.9 if kd else 1.0) if self.weight is None else self.weight
        self.linears = self.classifiers()  # a tuple: not this method's submodules

    def loss(self, student: Outputs, teacher: Outputs, labels: Tensor) -> Tensor:
        linear_s, linear_t = self.linears
        multi_s = multiscale_logits(
            student.features[0], linear_s.weight, linear_s.bias, self.scales
        )
        with torch.no_grad():
            multi_t = multiscale_logits(
                teacher.features[0], linear_t.weight, linear_t.bias, self.scales
            )
        term = sdd_loss(
            multi_s, multi_t, labels, self.T, self.variant, self.alpha, self.beta,
            self.complementary_weight,
        )  # fmt: skip
        return term * (dkd_warmup(self.epoch, self.warmup) if self.variant == "dkd" else 1.0)

    def summary_fields(self) -> dict[str, Any]:
        return {**super().summary_fields(), "ce_weight": self.ce_weight, "weight": self.weight}
