"""Decoupled Knowledge Distillation (DKD).

Zhao, Cui, Song, Qiu, Liang (2022), "Decoupled Knowledge Distillation" (CVPR). KD's KL splits
into a target-class term (TCKD, on the binary distribution b = [p_gt, 1 - p_gt]) and a
non-target term (NCKD, on p^ = softmax over the non-target logits) that DKD weighs apart.
"""

from __future__ import annotations

import torch
from torch import Tensor

from kdlab.errors import KdlabError
from kdlab.methods.base import LogitMethod, Outputs, register
from kdlab.methods.losses import in_compute_dtype, kl_rows, non_target, standardize_logits


def _log_parts(logits: Tensor, labels: Tensor, T: float) -> tuple[Tensor, Tensor]:
    """log b (B, 2) and log p^ (B, C - 1), exactly, in log space.

    The target column is removed by indexing (`non_target`), and log b comes from logsumexp
    instead of log(softmax), which is -inf in float32 once a target probability underflows.
    """
    z = logits / T
    target = labels.reshape(-1, 1).long()
    z_other = non_target(z, target)
    log_total = torch.logsumexp(z, dim=1, keepdim=True)
    log_other = torch.logsumexp(z_other, dim=1, keepdim=True)
    log_b = torch.cat([z.gather(1, target), log_other], dim=1) - log_total
    return log_b, z_other - log_other


def dkd_rows(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    alpha: float,
    beta: float,
    T: float,
) -> Tensor:
    """T^2 * [alpha * KL(b_t || b_s) + beta * KL(p^_t || p^_s)] per row, (B,)."""
    z_s, z_t = in_compute_dtype(student_logits, teacher_logits)
    b_s, hat_s = _log_parts(z_s, labels, T)
    b_t, hat_t = _log_parts(z_t, labels, T)
    return T * T * (alpha * kl_rows(b_t, b_s) + beta * kl_rows(hat_t, hat_s))


def dkd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    alpha: float,
    beta: float,
    T: float,
) -> Tensor:
    """`dkd_rows` averaged over the batch (mdistiller's reduction).

    The warm-up factor is not included: multiply by `dkd_warmup(epoch, warmup)`.
    """
    return dkd_rows(student_logits, teacher_logits, labels, alpha, beta, T).mean()


def dkd_warmup(epoch: int, warmup: int) -> float:
    """min(epoch / warmup, 1), epochs counted from 1 as in mdistiller; warmup 0 means none."""
    if warmup < 0:
        raise KdlabError(f"dkd warmup must be >= 0 epochs, got {warmup}: set it to 0 or more")
    return 1.0 if warmup == 0 else min(epoch / warmup, 1.0)


@register("dkd")
class DKD(LogitMethod):
    """decoupled target / non-target KD (Zhao et al. 2022)

    mdistiller configs/cifar100/dkd/*.yaml: CE 1, alpha 1, beta 8 (2 for resnet56->20 and
    resnet110->32, 6 for wrn_40_2->wrn_16_2 and vgg13->vgg8), T 4 (the top-level T), warm-up
    20; `dkd_loss` times the warm-up factor of the stage's epoch.
    """

    weight: float = 1.0
    alpha: float = 1.0  # TCKD weight (loss.alpha; the top-level alpha is kd's hard weight)
    beta: float = 8.0  # NCKD weight
    warmup: int = 20  # epochs to full weight: min(epoch / warmup, 1), epochs from 1
    standardize: bool = False  # z-score logits first (Sun et al. 2024)

    def loss(self, student: Outputs, teacher: Outputs, labels: Tensor) -> Tensor:
        z_s, z_t = student.logits, teacher.logits
        if self.standardize:
            z_s, z_t = standardize_logits(z_s), standardize_logits(z_t)
        ramp = dkd_warmup(self.epoch, self.warmup)
        return ramp * dkd_loss(z_s, z_t, labels, self.alpha, self.beta, self.T)
