"""Transformed Teacher Matching (TTM).

Zheng and Yang (2024), "Knowledge Distillation Based on Transformed Teacher Matching" (ICLR).
The student's plain softmax q = softmax(z) (no temperature on its side) matches the teacher's
power-transformed distribution p~ = p^gamma / sum_j p_j^gamma, p = softmax(v), gamma = 1/T,
which equals softmax(gamma v). WTTM (kdlab.methods.wttm) weighs each image by U_gamma(p).

Follows zkxufo/TTM@fe457b33a71ba27536ec04fe3d32c5b04963522f, distiller_zoo/ttm.py and
distiller_zoo/wttm.py: KL summed over classes, mean over the batch, no T^2; helper/loops.py
adds it as `-r * CE + -b * loss`. Departure (numerics): p~ and U in log space
(log_softmax(gamma v), logsumexp(gamma v) - gamma logsumexp(v)) instead of softmax(v) ** gamma,
which in float32 drops every class whose p underflows although p^gamma is representable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from kdlab.methods.base import LogitMethod, Outputs, register
from kdlab.methods.losses import in_compute_dtype, kl_rows


def ttm_rows(student_logits: Tensor, teacher_logits: Tensor, gamma: float) -> tuple[Tensor, Tensor]:
    """Per image: KL(p~ || q) and log U_gamma(p), U_gamma(p) = sum_j p_j^gamma."""
    z_s, z_t = in_compute_dtype(student_logits, teacher_logits)
    log_p_tilde = F.log_softmax(gamma * z_t, dim=1)
    log_u = torch.logsumexp(gamma * z_t, dim=1) - gamma * torch.logsumexp(z_t, dim=1)
    return kl_rows(log_p_tilde, F.log_softmax(z_s, dim=1)), log_u


def ttm_loss(student_logits: Tensor, teacher_logits: Tensor, gamma: float) -> Tensor:
    """mean_b KL(p~_b || q_b), p~ = softmax(gamma v), q = softmax(z)."""
    kl, _ = ttm_rows(student_logits, teacher_logits, gamma)
    return kl.mean()


@register("ttm")
class TTM(LogitMethod):
    """the teacher's power-transformed predictions, no student temperature (Zheng & Yang ICLR 2024)

    TTM README (@fe457b3), vgg13 -> vgg8: `--distill ttm --ttm_l 0.1 -r 1 -b 45 -a 0`: gamma
    0.1 (= 1/T), weight 45, CE 1. The published runs' gamma and weight per pair are in the
    paper's appendix A.4, not in the repository.
    """

    weight: float = 45.0
    gamma: float = 0.1  # the power transform's exponent, 1/T (--ttm_l)

    def loss(self, student: Outputs, teacher: Outputs, labels: Tensor) -> Tensor:
        return ttm_loss(student.logits, teacher.logits, self.gamma)
