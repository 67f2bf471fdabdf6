"""DIST: distillation from a stronger teacher by matching correlations, not probabilities.

Huang, You, Wang, Qian, Xu (2022), "Knowledge Distillation from A Stronger Teacher"
(NeurIPS). Inter-class relation: Pearson correlation of each sample's class probabilities;
intra-class relation: of each class's probabilities across the batch.
"""

from __future__ import annotations

from torch import Tensor

from kdlab.methods.base import LogitMethod, Outputs, register
from kdlab.methods.losses import in_compute_dtype


def _mean_pearson(a: Tensor, b: Tensor, eps: float = 1e-8) -> Tensor:
    """mean over rows of the Pearson correlation of a[i, :] and b[i, :].

    The denominator is ||a|| ||b|| + eps, as in the official DIST code (not
    F.cosine_similarity, which clamps each norm instead).
    """
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return ((a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + eps)).mean()


def dist_loss(
    student_logits: Tensor, teacher_logits: Tensor, beta: float, gamma: float, T: float
) -> Tensor:
    """T^2 * [beta * (1 - mean_i rho(Y_s[i,:], Y_t[i,:])) + gamma * (1 - mean_j rho(Y_s[:,j],
    Y_t[:,j]))] with Y = softmax(z / T). With a batch of one the intra-class term is the
    constant gamma * T^2 (a single value has no correlation), as in the official code.
    """
    z_s, z_t = in_compute_dtype(student_logits, teacher_logits)
    y_s, y_t = (z_s / T).softmax(dim=1), (z_t / T).softmax(dim=1)
    inter = 1.0 - _mean_pearson(y_s, y_t)
    intra = 1.0 - _mean_pearson(y_s.t(), y_t.t())
    return T * T * (beta * inter + gamma * intra)


@register("dist")
class DIST(LogitMethod):
    """inter- and intra-class relations of the predictions (Huang et al. 2022)

    Official DIST configs/strategies/distill/dist_cifar.yaml: dist_t4 (T 4, the top-level T;
    beta = gamma = 1), kd_loss_weight 2, CE 1.
    """

    weight: float = 2.0
    beta: float = 1.0  # inter-class relation weight
    gamma: float = 1.0  # intra-class relation weight

    def loss(self, student: Outputs, teacher: Outputs, labels: Tensor) -> Tensor:
        return dist_loss(student.logits, teacher.logits, self.beta, self.gamma, self.T)
