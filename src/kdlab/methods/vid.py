"""Variational Information Distillation (VID).

Ahn, Hu, Damianou, Lawrence, Dai (2019), "Variational Information Distillation for Knowledge
Transfer" (CVPR): maximise a variational lower bound on the mutual information of teacher and
student features, i.e. minimise the Gaussian negative log-likelihood of the teacher's feature
under a mean regressed from the student's and a learned per-channel variance.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdlab.errors import KdlabError
from kdlab.methods.base import FeatureMethod, Outputs, register
from kdlab.methods.losses import in_compute_dtype, match_spatial


def vid_loss(
    predicted_mean: Tensor, teacher_feature: Tensor, variance_param: Tensor, eps: float = 1e-5
) -> Tensor:
    """mean over B * C * H * W of 1/2 [(mu - t)^2 / var_c + log var_c], with the per-channel
    variance var_c = softplus(variance_param_c) + eps (RepDistiller's VIDLoss; the constant
    1/2 log 2 pi is dropped). mu, t: (B, C, ...) of one shape; variance_param: (C,).
    """
    mu, t, alpha = in_compute_dtype(predicted_mean, teacher_feature, variance_param)
    var = (F.softplus(alpha) + eps).view(1, -1, *([1] * (mu.ndim - 2)))
    return (0.5 * ((mu - t).pow(2) / var + var.log())).mean()


def _conv1x1(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=1, bias=False)


class VidHead(nn.Module):
    """One tapped pair's regressor, conv1x1-ReLU-conv1x1-ReLU-conv1x1 (no biases, the middle
    width the teacher's channels), and its variance parameter, initialised so that every
    channel's variance starts at `init_pred_var` (RepDistiller's VIDLoss(s, t, t))."""

    def __init__(self, s_c: int, t_c: int, init_pred_var: float, eps: float) -> None:
        super().__init__()
        self.regressor = nn.Sequential(
            _conv1x1(s_c, t_c), nn.ReLU(), _conv1x1(t_c, t_c), nn.ReLU(), _conv1x1(t_c, t_c)
        )
        start = math.log(math.expm1(init_pred_var - eps))  # softplus^-1(init_pred_var - eps)
        self.variance_param = nn.Parameter(torch.full((t_c,), start))
        self.eps = eps

    def forward(self, student_feature: Tensor, teacher_feature: Tensor) -> Tensor:
        """`vid_loss`, the larger map first average-pooled to the smaller's size."""
        f_s, f_t = match_spatial(student_feature, teacher_feature)
        return vid_loss(self.regressor(f_s), f_t, self.variance_param, self.eps)


@register("vid")
class VID(FeatureMethod):
    """variational information of the stages, Gaussian likelihood (Ahn et al. 2019)

    RepDistiller scripts/run_cifar_distill.sh (-a 0 -b 1), VIDLoss(init_pred_var=5.0,
    eps=1e-5) on feat[1:-1]: f1-f3; the sum over the tapped pairs of their VidHead's loss
    (the heads are this method's parameters: trained with the student, kept in checkpoints).
    """

    taps = "stages"
    weight: float = 1.0
    init_pred_var: float = 5.0  # every channel's variance at the start
    eps: float = 1e-5  # the variance's floor

    @classmethod
    def check(cls, settings: Any) -> None:
        if not 0 < settings.eps < settings.init_pred_var:
            raise KdlabError(
                f"loss=vid needs 0 < loss.eps < loss.init_pred_var, got eps {settings.eps} and "
                f"init_pred_var {settings.init_pred_var} (defaults 1e-5 and 5.0)"
            )

    def setup(self) -> None:
        pairs = zip(self.tapped.student_shapes, self.tapped.teacher_shapes, strict=True)
        self.heads = nn.ModuleList(
            VidHead(s[0], t[0], self.init_pred_var, self.eps) for s, t in pairs
        )

    def loss(self, student: Outputs, teacher: Outputs, labels: Tensor) -> Tensor:
        pairs = zip(self.heads, student.features, teacher.features, strict=True)
        return sum(head(s, t) for head, s, t in pairs)
