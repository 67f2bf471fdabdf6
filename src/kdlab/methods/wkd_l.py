"""WKD-L: logit distillation by the discrete Wasserstein distance between class distributions.

Lv, Yang, Li (2024), "Wasserstein Distance Rivals Kullback-Leibler Divergence for Knowledge
Distillation" (NeurIPS). Per image, the student's and the teacher's distributions over the
C - 1 non-target classes (softmax of the logits / T, renormalised) are matched by an entropic
optimal transport whose cost says how far apart two classes are; the target class keeps its
own term -p_t(y) log p_s(y) (T = 1, p_t detached):

    L = L_t + gamma(epoch) * (1/B) sum_b <P^b, relu(C) + 1e-8>     (no T^2)

P^b = diag(u) K diag(v), K = exp(-(relu(C) + 1e-8) / reg), after `iters` unrolled Sinkhorn
steps from u = 1/(C - 1): v = b / (K^T u + 1e-8), u = a / (K v + 1e-8); the gradient runs
through the iterations. Follows JiamingLv/WKD@214cf8868c2b8e45781f238b8f0e47c2e4e38190,
mdistiller/distillers/WKD.py (sinkhorn, wkd_logit_loss_with_speration, WKD.__init__ and
forward_train). Departure (memory only): one shared C x C kernel with the target entries of
a and u zeroed, instead of gathering a (B, C-1, C-1) cost per image; the sums are the same.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from kdlab.methods.base import LogitMethod, MethodContext, Outputs, register
from kdlab.methods.losses import float32_math, in_compute_dtype
from kdlab.methods.settings import LossConfig
from kdlab.models.features import embedding_module

_EPS = 1e-8  # the official denominators' and cost floor's epsilon


@float32_math
def classifier_cost(weight: Tensor, sharpen: float) -> Tensor:
    """The official `COST_MATRIX: "fc"`: C_ij = 1 - cos(w_i, w_j) of the classifier's rows,
    sharpened to 1 - exp(-sharpen * C) (`COST_MATRIX_SHARPEN`; 0 leaves C as it is)."""
    (w,) = in_compute_dtype(weight.detach())
    unit = F.normalize(w, p=2, dim=1)
    cost = 1.0 - unit @ unit.T
    return cost if sharpen == 0 else 1.0 - torch.exp(-sharpen * cost)


@float32_math
def wasserstein_term(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    cost: Tensor,
    T: float,
    reg: float,
    iters: int,
) -> Tensor:
    """(1/B) sum_b <P^b, relu(C) + 1e-8> over the non-target classes (see the module doc)."""
    z_s, z_t, c = in_compute_dtype(student_logits, teacher_logits, cost)
    target = F.one_hot(labels.long(), z_s.shape[1]).bool()
    a = torch.softmax((z_s / T).masked_fill(target, float("-inf")), dim=1)
    b = torch.softmax((z_t / T).masked_fill(target, float("-inf")), dim=1)
    c = F.relu(c) + _EPS
    kernel = torch.exp(-c / reg)
    u = (~target).to(z_s.dtype) / (z_s.shape[1] - 1)
    for _ in range(iters):
        v = b / (u @ kernel + _EPS)
        u = a / (v @ kernel.T + _EPS)
    return ((u @ (kernel * c)) * v).sum(dim=1).mean()


def target_term(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor) -> Tensor:
    """-(1/B) sum_b p_t(y_b) log p_s(y_b) at T = 1, p_t detached (the official `loss_t`)."""
    z_s, z_t = in_compute_dtype(student_logits, teacher_logits)
    y = labels.reshape(-1, 1).long()
    p_t = torch.softmax(z_t, dim=1).gather(1, y).detach()
    return -(p_t * torch.log_softmax(z_s, dim=1).gather(1, y)).mean()


def decayed_weight(gamma: float, epoch: int, start: int, epochs: int) -> float:
    """gamma up to epoch `start`, then 0.5 gamma (1 + cos(pi (epoch - start) / (epochs - start)))
    down to 0 at the last epoch (WKD.forward_train, epochs from 1); no decay if start >= epochs."""
    if epoch <= start or start >= epochs:
        return gamma
    return 0.5 * gamma * (1.0 + math.cos(math.pi * (epoch - start) / (epochs - start)))


@register("wkd_l")
class WKDL(LogitMethod):
    """Wasserstein distance of the non-target predictions over class costs (Lv et al. NeurIPS 2024)

    WKD configs/cifar100/wkd_l/res32x4_res8x4.yaml (@214cf88): WKD_LOGIT_WEIGHT (gamma) 600,
    TEMPERATURE 8, SINKHORN.LAMBDA 0.05, ITER 10, COST_MATRIX_SHARPEN 1, CE 1, cosine decay of
    gamma from epoch 150 of 240 (`loss.decay_start`, a fraction of the run); wrn_40_2 ->
    ShuffleV1: gamma 200, T 6. The cost here is the official "fc" option, from the frozen
    teacher's classifier weights; the published figures used the "cka" option, a matrix of
    1 - linear CKA between the teacher's last feature maps of each class's training images,
    computed offline. `loss.temperature` is WKD's own (the top-level T is not used).
    """

    gamma: float = 600.0
    temperature: float = 8.0
    reg: float = 0.05  # Sinkhorn's entropic regularisation (SINKHORN.LAMBDA)
    iters: int = 10  # Sinkhorn iterations
    sharpen: float = 1.0  # COST_MATRIX_SHARPEN: cost 1 - exp(-sharpen * C)
    decay_start: float = 0.625  # gamma's cosine decay starts after this fraction of the epochs
    one_teacher: ClassVar[str] = "its class cost is the teacher's classifier"

    def __init__(self, settings: LossConfig, context: MethodContext) -> None:
        super().__init__(settings, context)
        assert context.teacher is not None
        weight = embedding_module(context.teacher.model).weight
        self.register_buffer("cost", classifier_cost(weight, self.sharpen), persistent=False)
        self.to(next(context.student.parameters()).device)

    def loss(self, student: Outputs, teacher: Outputs, labels: Tensor) -> Tensor:
        z_s, z_t = student.logits, teacher.logits
        epochs = self.context.epochs
        gamma = decayed_weight(self.gamma, self.epoch, round(self.decay_start * epochs), epochs)
        distance = wasserstein_term(
            z_s, z_t, labels, self.cost, self.temperature, self.reg, self.iters
        )
        return target_term(z_s, z_t, labels) + gamma * distance
