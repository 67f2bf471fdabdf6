"""Normalized Knowledge Distillation (NKD).

Yang, Zeng, Yuan, Li (2023), "From Knowledge Distillation to Self-Knowledge Distillation: A
Unified Approach with Normalized Loss and Customized Soft Labels" (ICCV). KD's loss splits into
a target term and a non-target term; NKD keeps the target term as -t_y log s_y and matches the
*normalised* non-target distributions (softmax over the C - 1 non-target logits) at
temperature T, weighted by gamma * T^2.

Follows yzd-v/cls_KD@1e5d48f36957ee460d39d7ebc592c6cc7f8f3d66 (branch 1.0),
mmcls/models/dis_losses/nkd.py (NKDLoss.forward), after its commit 9466b3f, which removed the
target column from the "non-target" softmax (before it, the mask kept it).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from kdlab.methods.base import LogitMethod, Outputs, register
from kdlab.methods.losses import in_compute_dtype, non_target


def nkd_loss(
    student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, T: float, gamma: float
) -> Tensor:
    """mean_b[-t_y log s_y] + gamma * T^2 * mean_b[-sum_{j != y} t^_j log s^_j].

    s = softmax(z), t = softmax(v) at T = 1 (t_y detached); s^, t^ = softmax over the C - 1
    non-target logits / T. Both are cross-entropies as in the official code (the teacher's
    entropy included, so values match it; the gradients are the KLs').
    """
    z_s, z_t = in_compute_dtype(student_logits, teacher_logits)
    target = labels.reshape(-1, 1).long()
    log_s_y = F.log_softmax(z_s, dim=1).gather(1, target)
    t_y = F.log_softmax(z_t, dim=1).gather(1, target).exp().detach()
    log_s_hat = F.log_softmax(non_target(z_s, target) / T, dim=1)
    t_hat = F.softmax(non_target(z_t, target) / T, dim=1)
    return -(t_y * log_s_y).mean() - gamma * T * T * (t_hat * log_s_hat).sum(dim=1).mean()


@register("nkd")
class NKD(LogitMethod):
    """normalised non-target distributions and the target term (Yang et al. ICCV 2023)

    cls_KD configs/distillers/cifar100/res34_distill_res18_cifar.py (@1e5d48f): NKDLoss temp
    3.0, gamma 3.5; the head's CE weight 1 (total CE + NKD). `loss.temperature` is NKD's own
    (the top-level T enters only a KD term, weighted `loss.kd_weight`, 0 here). The NKDLoss
    defaults, temp 1.0 and gamma 1.5, are the ImageNet settings.
    """

    temperature: float = 3.0
    gamma: float = 3.5

    def loss(self, student: Outputs, teacher: Outputs, labels: Tensor) -> Tensor:
        return nkd_loss(student.logits, teacher.logits, labels, self.temperature, self.gamma)
