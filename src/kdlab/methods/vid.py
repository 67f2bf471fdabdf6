"""Variational Information Distillation (VID).

Ahn, Hu, Damianou, Lawrence, Dai (2019), "Variational Information Distillation for Knowledge
Transfer" (CVPR): maximise a variational lower bound on the mutual information of teacher and
student features, i.e. minimise the Gaussian negative log-likelihood of the teacher's feature
under a mean regressed from the student's and a learned per-channel variance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdlab.errors import KdlabError
from kdlab.methods._common import in_compute_dtype, match_spatial
from kdlab.methods.base import FeatureConfig, MethodContext, MethodObjective, Taps
from kdlab.methods.points import feature_method


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


@dataclass
class VidConfig(FeatureConfig):
    """RepDistiller scripts/run_cifar_distill.sh (-a 0 -b 1), VIDLoss(init_pred_var=5.0,
    eps=1e-5) on feat[1:-1]: f1-f3."""

    name: str = "vid"
    beta: float = 1.0
    init_pred_var: float = 5.0  # every channel's variance at the start
    eps: float = 1e-5  # the variance's floor

    def check(self) -> None:
        if not 0 < self.eps < self.init_pred_var:
            raise KdlabError(
                f"loss=vid needs 0 < loss.eps < loss.init_pred_var, got eps {self.eps} and "
                f"init_pred_var {self.init_pred_var} (defaults 1e-5 and 5.0)"
            )


class VidObjective(MethodObjective):
    """Sum over the tapped pairs of their VidHead's loss (the heads are this objective's
    parameters: trained with the student, kept in checkpoints)."""

    part = "vid"

    def __init__(self, settings: VidConfig, context: MethodContext, taps: Taps, weight: float):
        super().__init__(settings, context, taps, weight)
        device = next(context.student.parameters()).device
        c = settings
        pairs = zip(taps.student_shapes, taps.teacher_shapes, strict=True)
        self.heads = nn.ModuleList(
            VidHead(s[0], t[0], c.init_pred_var, c.eps).to(device) for s, t in pairs
        )

    def method_loss(
        self, student: tuple[Tensor, list[Any]], teacher: tuple[Tensor, list[Any]], y: Tensor
    ) -> Tensor:
        pairs = zip(self.heads, student[1], teacher[1], strict=True)
        return sum(head(s, t) for head, s, t in pairs)


METHOD = feature_method(
    VidConfig,
    VidObjective,
    "stages",
    "variational information of the stages, Gaussian likelihood (Ahn et al. 2019)",
)
