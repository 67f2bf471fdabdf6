"""The distillation losses as pure functions of tensors (the product: tested against formulas).

Conventions (documented in the README):
- `alpha` weighs the *hard* term: L = (1 - alpha) * T^2 * L_soft + alpha * L_hard (note 1).
  Tools that weigh the soft term with alpha use alpha' = 1 - alpha.
- L_soft is the cross-entropy of softmax(z/T) against softmax(v/T), summed over classes and
  averaged over the batch; `kl_divergence` is the same minus the teacher's entropy (same
  gradient in z).
- L_hard is the ordinary cross-entropy with the labels at T = 1.
- Every loss is computed in float32, whatever the autocast precision of the logits.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def soft_cross_entropy(student_logits: Tensor, teacher_logits: Tensor, T: float) -> Tensor:
    """-sum_i p_i log q_i with p = softmax(v/T), q = softmax(z/T); mean over the batch."""
    p = F.softmax(teacher_logits.float() / T, dim=1)
    log_q = F.log_softmax(student_logits.float() / T, dim=1)
    return -(p * log_q).sum(dim=1).mean()


def kl_divergence(student_logits: Tensor, teacher_logits: Tensor, T: float) -> Tensor:
    """KL(p || q) at temperature T, summed over classes, mean over the batch ('batchmean')."""
    log_p = F.log_softmax(teacher_logits.float() / T, dim=1)
    log_q = F.log_softmax(student_logits.float() / T, dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1).mean()


def kd_losses(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    T: float,
    alpha: float,
    soft_transform: Callable[[Tensor], Tensor] | None = None,
) -> dict[str, Tensor]:
    """Hinton's distillation loss and its parts: loss, loss_soft, loss_hard, loss_kl.

    `soft_transform` (e.g. logit standardisation) maps both sides' logits before the
    temperature in the soft and KL terms; the hard term keeps the raw logits.
    """
    hard = F.cross_entropy(student_logits.float(), labels)
    if soft_transform is not None:
        student_logits, teacher_logits = (
            soft_transform(student_logits),
            soft_transform(teacher_logits),
        )
    soft = soft_cross_entropy(student_logits, teacher_logits, T)
    with torch.no_grad():
        kl = kl_divergence(student_logits, teacher_logits, T)
    loss = (1.0 - alpha) * T * T * soft + alpha * hard
    return {"loss": loss, "loss_soft": soft, "loss_hard": hard, "loss_kl": kl}


def hint_loss(regressed: Tensor, hint: Tensor) -> Tensor:
    """FitNets' hint loss: 1/2 ||hint - r(guided)||^2 per image, averaged over the batch."""
    diff = hint.float() - regressed.float()
    return 0.5 * diff.pow(2).flatten(1).sum(dim=1).mean()
