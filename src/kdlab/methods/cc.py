"""Correlation Congruence (CC), as RepDistiller trains it.

Peng, Jin, Liu, Li, Wu, Liu, Zhou, Zhang (2019), "Correlation Congruence for Knowledge
Distillation" (ICCV). RepDistiller's `Correlation` (code the paper's authors sent it) is not
the paper's kernel-correlation matrix: it multiplies the absolute embedding differences of
consecutive samples, on a Linear embedding of each side. Its weight (0.02) is for this form.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from kdlab.errors import KdlabError
from kdlab.methods.base import FeatureMethod, Outputs, register
from kdlab.methods.losses import in_compute_dtype


def cc_loss(student_embedding: Tensor, teacher_embedding: Tensor) -> Tensor:
    """mean over b = 1..B-1 of sum_d |D[b, d]| * |D[b+1, d]|, D = f_s - f_t (B, D) in batch
    order (RepDistiller's Correlation). A batch of one has no consecutive pair: 0 (the
    reference's mean over no pairs is NaN).
    """
    f_s, f_t = in_compute_dtype(student_embedding, teacher_embedding)
    delta = (f_s - f_t).flatten(1).abs()
    if delta.shape[0] < 2:
        return delta.sum() * 0.0
    return (delta[:-1] * delta[1:]).sum(dim=1).mean()


@register("cc")
class CC(FeatureMethod):
    """correlation congruence of linear embeddings, RepDistiller's form (Peng et al. 2019)

    RepDistiller scripts/run_cifar_distill.sh (-a 0 -b 0.02), train_student.py's
    LinearEmbed(feat_dim 128) on each side: f4 (the embedding); both Linear layers are this
    method's parameters, trained with the student (the teacher's one too, as in RepDistiller).
    """

    taps = "embedding"
    weight: float = 0.02
    feat_dim: int = 128  # both linear embeddings' width

    @classmethod
    def check(cls, settings: Any) -> None:
        if settings.feat_dim < 1:
            raise KdlabError(f"loss.feat_dim must be >= 1 for loss=cc, got {settings.feat_dim}")

    def setup(self) -> None:
        shapes = self.tapped
        self.embed_s = nn.Linear(shapes.student_shapes[0][0], self.feat_dim)
        self.embed_t = nn.Linear(shapes.teacher_shapes[0][0], self.feat_dim)

    def loss(self, student: Outputs, teacher: Outputs, labels: Tensor) -> Tensor:
        return cc_loss(self.embed_s(student.features[0]), self.embed_t(teacher.features[0]))
