"""Probabilistic Knowledge Transfer (PKT) with the cosine kernel.

Passalis, Tefas (2018), "Learning Deep Representations with Probabilistic Knowledge
Transfer" (ECCV): the student matches the teacher's conditional probabilities of picking
each sample's neighbours in embedding space.
"""

from __future__ import annotations

from torch import Tensor

from kdlab.methods.base import FeatureMethod, Outputs, paired, register
from kdlab.methods.losses import float32_math, in_compute_dtype


def _neighbour_probabilities(x: Tensor, eps: float) -> Tensor:
    """P with rows K / sum K, K = (x^ x^T + 1) / 2, x^ = x / (||x|| + eps)."""
    x = x.flatten(1)
    x = x / (x.norm(dim=1, keepdim=True) + eps)
    k = (x @ x.t() + 1.0) / 2.0
    return k / k.sum(dim=1, keepdim=True)


@float32_math
def pkt_loss(student_embedding: Tensor, teacher_embedding: Tensor, eps: float = 1e-7) -> Tensor:
    """mean over all B^2 entries of P_t * log((P_t + eps) / (P_s + eps)) (the references'
    reduction: not a per-row KL sum). NaN inputs propagate (the references zero NaNs after
    the normalisation, which would hide them).
    """
    x_s, x_t = in_compute_dtype(student_embedding, teacher_embedding)
    p_s = _neighbour_probabilities(x_s, eps)
    p_t = _neighbour_probabilities(x_t, eps)
    return (p_t * ((p_t + eps) / (p_s + eps)).log()).mean()


@register("pkt")
class PKT(FeatureMethod):
    """probabilistic knowledge transfer of the embedding (Passalis & Tefas 2018)

    RepDistiller scripts/run_cifar_distill.sh (-b 30000), PKT: f4 (the pooled embedding;
    the two widths may differ).
    """

    taps = "embedding"
    weight: float = 30000.0

    def loss(self, student: Outputs, teacher: Outputs, labels: Tensor) -> Tensor:
        return sum(pkt_loss(s, t) for s, t in paired(student, teacher))
