"""Contrastive Representation Distillation (CRD).

Tian, Krishnan, Isola (2020), "Contrastive Representation Distillation" (ICLR): the student's
embedding of an image must pick the teacher's embedding of the same image out of many others
(and the other way round), an NCE estimate of a bound on their mutual information. The
others come from a memory bank of every training sample (kdlab.methods.contrast_memory).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdlab.engine.distributed import world_size
from kdlab.errors import KdlabError
from kdlab.methods.base import FeatureMethod, Outputs, register
from kdlab.methods.contrast_memory import ContrastMemory
from kdlab.methods.losses import in_compute_dtype

log = logging.getLogger("kdlab")


def contrast_loss(probabilities: Tensor, n_data: int, eps: float = 1e-7) -> Tensor:
    """NCE loss of (B, 1 + K) normalised scores P, the positive in column 0 (CRD's Eq. 18 as
    RepDistiller's ContrastLoss computes it, with the noise P_n = 1/N and m = K):

        -[sum_b log(P_b0 / (P_b0 + K/N + eps)) + sum_{b, k>0} log((K/N) / (P_bk + K/N + eps))] / B

    (summed over the K negatives, averaged over the batch).
    """
    m = probabilities.shape[1] - 1
    noise = m / n_data
    positive, negative = probabilities[:, 0], probabilities[:, 1:]
    log_d1 = (positive / (positive + noise + eps)).log()
    log_d0 = (noise / (negative + noise + eps)).log()
    return -(log_d1.sum() + log_d0.sum()) / probabilities.shape[0]


def _scores(embedding: Tensor, rows: Tensor, T: float) -> Tensor:
    """exp(<rows[b, k], embedding[b]> / T), (B, 1 + K); in the inputs' dtype whatever the
    autocast (exp(x / 0.07) would amplify bf16's rounding of the products twentyfold)."""
    with torch.autocast(embedding.device.type, enabled=False):
        return (torch.bmm(rows, embedding.unsqueeze(2)).squeeze(2) / T).exp()


def crd_loss(
    student_embedding: Tensor,
    teacher_embedding: Tensor,
    teacher_rows: Tensor,
    student_rows: Tensor,
    n_data: int,
    T: float = 0.07,
    z: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """CRD's two NCE terms (RepDistiller's CRDLoss) and the normalisers they used:

        P_s[b, k] = exp(<teacher_rows[b, k], v_s[b]> / T) / Z_s  (the student as anchor)
        P_t[b, k] = exp(<student_rows[b, k], v_t[b]> / T) / Z_t  (the teacher as anchor)
        loss = contrast_loss(P_s, N) + contrast_loss(P_t, N)

    v_s, v_t: (B, D) l2-normalised embeddings; *_rows: (B, 1 + K, D) memory rows of the other
    side, the positive first. `z` = (Z_s, Z_t): entries <= 0 (or z None) are estimated from
    this batch as mean_{b,k}(exp(...)) * N, without gradient; RepDistiller does so on its first
    batch and keeps them, so pass the returned z back from then on.
    """
    v_s, v_t, r_t, r_s = in_compute_dtype(
        student_embedding, teacher_embedding, teacher_rows, student_rows
    )
    e_s, e_t = _scores(v_s, r_t, T), _scores(v_t, r_s, T)
    estimate = torch.stack([e_s.mean(), e_t.mean()]).detach() * n_data
    if z is not None:
        z = z.to(estimate)
        estimate = torch.where(z > 0, z, estimate)
    loss = contrast_loss(e_s / estimate[0], n_data) + contrast_loss(e_t / estimate[1], n_data)
    return loss, estimate


class Embed(nn.Module):
    """RepDistiller's CRD Embed: a Linear layer, then l2-normalisation of each row."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.linear(x.flatten(1)), dim=1)


def negatives_for(nce_k: int, train_images: int) -> int:
    """loss.nce_k, or the training images - 1 where there are fewer (said in the log)."""
    if train_images < 2:
        raise KdlabError(
            f"loss=crd contrasts each training image with others, the training split has "
            f"{train_images}: raise data.train_size to 2 or more"
        )
    k = min(nce_k, train_images - 1)
    if k < nce_k:
        log.info(
            "loss=crd: loss.nce_k=%d is more than the %d other training images: %d negatives "
            "per sample",
            nce_k,
            train_images - 1,
            k,
        )
    return k


@register("crd")
class CRD(FeatureMethod):
    """contrastive representation distillation of the embedding, memory bank (Tian et al. 2020)

    RepDistiller scripts/run_cifar_distill.sh (-a 0 -b 0.8) and train_student.py's NCE options:
    feat_dim 128, nce_k 16384, nce_t 0.07, nce_m 0.5, mode exact; f4 (the embedding).

    `crd_loss` of the embeddings through two Embed heads, against the memory bank. The heads
    are this method's parameters (trained with the student); the bank and the normalisers its
    buffers: checkpoints keep all of them. A training step contrasts each sample with its own
    bank rows (the positive) and `nce_k` drawn ones, then updates its rows. Evaluation images
    are not in the bank: each is contrasted with the other side's current embedding of itself
    and `nce_k` rows drawn from the whole bank, which stays as it is.
    """

    taps = "embedding"
    uses_indices = True
    weight: float = 0.8
    feat_dim: int = 128  # both embedding heads' width
    nce_k: int = 16384  # negatives per sample (at most the training images - 1)
    nce_t: float = 0.07  # NCE temperature
    nce_m: float = 0.5  # memory momentum

    @classmethod
    def check(cls, settings: Any) -> None:
        if world_size() > 1:
            raise KdlabError(
                "loss=crd keeps one memory bank of the training samples, which torchrun's "
                "processes would each update apart: run it in one process"
            )
        bounds = [
            ("feat_dim", settings.feat_dim >= 1, ">= 1"),
            ("nce_k", settings.nce_k >= 1, ">= 1"),
            ("nce_t", settings.nce_t > 0, "> 0"),
            ("nce_m", settings.nce_m < 1, "in [0, 1)"),
        ]
        for key, ok, bound in bounds:
            if not ok:
                raise KdlabError(
                    f"loss.{key} must be {bound} for loss=crd, got {getattr(settings, key)} "
                    f"(the reference's: loss.{key}={getattr(cls, key)})"
                )

    def setup(self) -> None:
        n = self.context.train_images
        k = negatives_for(self.nce_k, n)
        self.embed_s = Embed(self.tapped.student_shapes[0][0], self.feat_dim)
        self.embed_t = Embed(self.tapped.teacher_shapes[0][0], self.feat_dim)
        self.memory = ContrastMemory(n, self.feat_dim, k, self.nce_m)

    def _rows(self, samples: Tensor | None, v_s: Tensor, v_t: Tensor) -> tuple[Tensor, Tensor]:
        """(teacher rows, student rows), (B, 1 + K, D) each, the positive first."""
        memory = self.memory
        if samples is not None:
            indices = memory.contrast_indices(samples)
            return memory.teacher[indices], memory.student[indices]
        student, teacher = memory.random_rows(v_s.shape[0], v_s.device)
        own_t = v_t.detach().to(teacher.dtype).unsqueeze(1)
        own_s = v_s.detach().to(student.dtype).unsqueeze(1)
        return torch.cat([own_t, teacher], dim=1), torch.cat([own_s, student], dim=1)

    def loss(
        self, student: Outputs, teacher: Outputs, labels: Tensor, indices: Tensor | None = None
    ) -> Tensor:
        v_s, v_t = self.embed_s(student.features[0]), self.embed_t(teacher.features[0])
        rows_t, rows_s = self._rows(indices, v_s, v_t)
        memory = self.memory
        loss, z = crd_loss(v_s, v_t, rows_t, rows_s, memory.n_data, self.nce_t, memory.z)
        if self.training and indices is not None:
            memory.z.copy_(z)
            memory.update(indices, v_s, v_t)
        return loss

    def summary_fields(self) -> dict[str, Any]:
        fields = super().summary_fields()
        fields["crd"] = {"negatives": self.memory.k, "normalisers": self.memory.z.tolist()}
        return fields
