"""Hinton's knowledge distillation, `loss=kd`: the template of a method.

Hinton, Vinyals, Dean (2015), "Distilling the Knowledge in a Neural Network":

    L = (1 - alpha) * T^2 * L_soft + alpha * L_hard

- `alpha` weighs the *hard* term (note 1). Tools that weigh the soft term with alpha use
  alpha' = 1 - alpha: RepDistiller's CIFAR setting -r 0.1 -a 0.9 is alpha=0.1 here.
- L_soft is the cross-entropy of softmax(z/T) against softmax(v/T), summed over classes and
  averaged over the batch; `loss_kl` logs the same minus the teacher's entropy (the same
  gradient in z). The T^2 keeps the soft gradient's size independent of T.
- L_hard is the ordinary cross-entropy with the labels at T = 1.

`loss.ce_weight` and `loss.kd_weight`, set together, replace alpha's form by mdistiller's
L = ce_weight * L_hard + kd_weight * T^2 * L_soft (logit standardisation's published
setting, Sun et al. 2024, is CE 0.1 + KD 9 at T 2: `preset=ls_kd`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from kdlab.errors import KdlabError
from kdlab.methods.base import LogitMethod, Outputs, register
from kdlab.methods.losses import kl_divergence, standardize_logits


def soft_cross_entropy(student_logits: Tensor, teacher_logits: Tensor, T: float) -> Tensor:
    """-sum_i p_i log q_i with p = softmax(v/T), q = softmax(z/T); mean over the batch."""
    p = F.softmax(teacher_logits.float() / T, dim=1)
    log_q = F.log_softmax(student_logits.float() / T, dim=1)
    return -(p * log_q).sum(dim=1).mean()


def kd_losses(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    T: float,
    alpha: float,
    soft_transform: Callable[[Tensor], Tensor] | None = None,
    weights: tuple[float, float] | None = None,
) -> dict[str, Tensor]:
    """Hinton's distillation loss and its parts: loss, loss_soft, loss_hard, loss_kl.

    `weights` = (ce_weight, kd_weight) gives ce_weight * L_hard + kd_weight * T^2 * L_soft
    instead of alpha's (1 - alpha) * T^2 * L_soft + alpha * L_hard.

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
    ce_weight, kd_weight = (alpha, 1.0 - alpha) if weights is None else weights
    loss = kd_weight * T * T * soft + ce_weight * hard
    return {"loss": loss, "loss_soft": soft, "loss_hard": hard, "loss_kl": kl}


@register("kd")
class KD(LogitMethod):
    """soft targets at temperature T (Hinton et al. 2015)

    T and alpha are the top-level keys (`kdlab distill loss=kd T=4 alpha=0.1`).
    """

    standardize: bool = False  # z-score the logits before T (Sun et al. 2024)
    # null: Hinton's weights from the top-level alpha; both set: mdistiller's CE and KD weights
    ce_weight: float | None = None
    kd_weight: float | None = None
    weight: ClassVar[float]

    @classmethod
    def check(cls, settings: Any) -> None:
        if (settings.ce_weight is None) != (settings.kd_weight is None):
            raise KdlabError(
                "loss=kd takes loss.ce_weight and loss.kd_weight together (both null: alpha's "
                f"weights), got ce_weight={settings.ce_weight}, kd_weight={settings.kd_weight}"
            )

    def weights(self) -> tuple[float, float] | None:
        """(ce_weight, kd_weight) when set, else None: alpha's form."""
        if self.ce_weight is None or self.kd_weight is None:
            return None
        return self.ce_weight, self.kd_weight

    def loss(self, student: Outputs, teacher: Outputs, labels: Tensor) -> dict[str, Tensor]:
        transform = standardize_logits if self.standardize else None
        z_s, z_t, alpha = student.logits, teacher.logits, self.context.alpha
        return kd_losses(z_s, z_t, labels, self.T, alpha, transform, self.weights())

    def combine(
        self, student: Outputs, teacher: Outputs, labels: Tensor, term: Any
    ) -> dict[str, Tensor]:
        return term  # kd_losses is the whole objective, with its parts

    def split(self, losses: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        ce_weight, kd_weight = self.weights() or (self.context.alpha, 1.0 - self.context.alpha)
        return ce_weight * losses["loss_hard"], kd_weight * self.T * self.T * losses["loss_soft"]

    def summary_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"T": self.T, "alpha": self.context.alpha}
        if self.weights() is not None:  # they replace alpha's
            fields = {"T": self.T, "ce_weight": self.ce_weight, "kd_weight": self.kd_weight}
        if self.standardize:
            fields["standardize"] = True
        return fields
