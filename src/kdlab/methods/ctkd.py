"""Curriculum Temperature for Knowledge Distillation (CTKD), the global temperature.

Li, Li, Yang, Zhao, Song, Luo, Li, Yang (2023), "Curriculum Temperature for Knowledge
Distillation" (AAAI). KD's temperature is learned adversarially: tau = t_start + t_range *
sigmoid(theta) reaches theta through a gradient-reversal layer (GRL), so theta *raises* the KD
loss while the student lowers it, and the reversal strength lambda grows from 0 to 1 along a
cosine curriculum over the first `loops` epochs.

Follows zhengli97/CTKD@7d5252241259ae70d38a832371fed9697d15fc14: models/temp_global.py
(Global_T, GradientReversalFunction), train_student.py (CosineDecay, --t_start 1 --t_end 20),
helper/loops.py (temp = t_start + t_end * sigmoid(mlp(...))), distiller_zoo/KD.py (DistillKL).
Departure (sign only): the official CosineDecay runs from 0 to -1 and its GRL multiplies by that
value; here lambda runs from 0 to 1 and the GRL multiplies by -lambda (the same gradients).
The instance-wise variant is not offered: its temperature network is not in the repository.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdlab.methods.base import LogitMethod, MethodContext, Outputs, register
from kdlab.methods.losses import in_compute_dtype, kl_rows, standardize_logits
from kdlab.methods.settings import LossConfig


class _GradReverse(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by -lambda."""

    @staticmethod
    def forward(ctx, x: Tensor, strength: float) -> Tensor:  # type: ignore[override]
        ctx.strength = strength
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return grad * -ctx.strength, None


def grad_reverse(x: Tensor, strength: float) -> Tensor:
    """GRL (Ganin and Lempitsky 2015): y = x, dL/dx = -strength * dL/dy."""
    return _GradReverse.apply(x, strength)


def curriculum_lambda(epoch: int, loops: int, lambda_max: float, lambda_min: float) -> float:
    """lambda_min + (lambda_max - lambda_min) * (1 - cos(pi * min(epoch, loops) / loops)) / 2.

    Epochs from 1 as in train_student.py, so epoch 1 already has (1 - cos(pi / 10)) / 2 =
    0.0245 (loops 10); loops = 0 (a division by zero there) gives lambda_max at once.
    """
    if loops <= 0:
        return lambda_max
    done = min(max(epoch, 0), loops) / loops
    return lambda_min + (lambda_max - lambda_min) * (1.0 - math.cos(math.pi * done)) / 2.0


def ctkd_kd_loss(student_logits: Tensor, teacher_logits: Tensor, tau: Tensor) -> Tensor:
    """tau^2 * mean_b KL(softmax(v_b / tau) || softmax(z_b / tau)) (DistillKL, 'batchmean').

    `tau` is a one-element tensor; the gradient reaches it through both softmaxes and tau^2.
    """
    z_s, z_t, t = in_compute_dtype(student_logits, teacher_logits, tau.reshape(1, 1))
    kl = kl_rows(F.log_softmax(z_t / t, dim=1), F.log_softmax(z_s / t, dim=1))
    return t.reshape(()) ** 2 * kl.mean()


class GlobalTemperature(nn.Module):
    """tau = t_start + t_range * sigmoid(GRL(theta, lambda)), theta one learnable value.

    theta is (1, 1), not a scalar: kdlab's optimiser decays matrices only, and the official SGD
    over [student, Global_T] applies the run's weight decay (5e-4) to theta too.
    """

    def __init__(self, t_start: float, t_range: float, theta: float) -> None:
        super().__init__()
        self.t_start, self.t_range = t_start, t_range
        self.theta = nn.Parameter(torch.full((1, 1), theta))

    def forward(self, strength: float) -> Tensor:
        return self.t_start + self.t_range * torch.sigmoid(grad_reverse(self.theta, strength))


@register("ctkd")
class CTKD(LogitMethod):
    """KD at a learned, adversarial temperature on a cosine curriculum (Li et al. AAAI 2023)

    CTKD scripts/run_cifar_distill.sh and train_student.py (@7d52522): `--distill kd -r 0.1
    -a 0.9 -b 0 --have_mlp 1 --mlp_name global --cosine_decay 1 --decay_max 0 --decay_min -1
    --decay_loops 10`, --t_start 1 --t_end 20 (a range: tau in (1, 21)), theta initialised to 1
    (tau 15.62 at the start). The top-level T is not used: tau replaces it.
    """

    ce_weight: float = 0.1
    weight: float = 0.9
    t_start: float = 1.0
    t_range: float = 20.0  # the official --t_end
    theta_init: float = 1.0
    loops: int = 10  # epochs of the cosine curriculum of lambda
    lambda_max: float = 1.0
    lambda_min: float = 0.0
    standardize: bool = False  # z-score the logits before tau (Sun et al. 2024)

    def __init__(self, settings: LossConfig, context: MethodContext) -> None:
        super().__init__(settings, context)
        self.temperature = GlobalTemperature(self.t_start, self.t_range, self.theta_init)
        self.to(next(context.student.parameters()).device)

    def loss(self, student: Outputs, teacher: Outputs, labels: Tensor) -> Tensor:
        strength = curriculum_lambda(self.epoch, self.loops, self.lambda_max, self.lambda_min)
        z_s, z_t = student.logits, teacher.logits
        if self.standardize:
            z_s, z_t = standardize_logits(z_s), standardize_logits(z_t)
        return ctkd_kd_loss(z_s, z_t, self.temperature(strength))
