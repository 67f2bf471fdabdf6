"""CRD's memory bank: one embedding per training sample and side, and the negatives drawn
from it.

Tian, Krishnan, Isola (2020), "Contrastive Representation Distillation" (ICLR). As in
RepDistiller's `ContrastMemory`: rows start uniform in [-s, s] with s = 1/sqrt(dim/3) (not
normalised), and each step moves the rows of the batch's samples towards their new embeddings
with momentum, then l2-normalises them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def draw_negatives(positives: Tensor, n_data: int, k: int) -> Tensor:
    """(B, k) sample indices drawn uniformly, with replacement, from [0, n_data) without each
    row's positive (RepDistiller's mode=exact never contrasts a sample with itself).

    Drawn on the positives' device from its global generator: no host work, no sync.
    RepDistiller draws them on the host from the other classes' samples only; uniform draws
    are NCE's noise distribution, which its loss assumes (P_n = 1/N).
    """
    drawn = torch.randint(0, n_data - 1, (positives.shape[0], k), device=positives.device)
    return drawn + (drawn >= positives.unsqueeze(1)).long()


def momentum_rows(rows: Tensor, embeddings: Tensor, momentum: float) -> Tensor:
    """l2-normalise(momentum * rows + (1 - momentum) * embeddings), row by row."""
    return F.normalize(rows * momentum + embeddings * (1.0 - momentum), dim=1)


class ContrastMemory(nn.Module):
    """Both sides' banks (N, dim) and the NCE normalisers (Z_s, Z_t), all buffers: they are
    saved with the objective in every checkpoint, and resumed runs continue with them.

    `z` holds -1 until the first training batch sets it (RepDistiller's `params[2:4]`).
    """

    def __init__(self, n_data: int, dim: int, k: int, momentum: float) -> None:
        super().__init__()
        self.n_data = n_data
        self.k = k
        self.momentum = momentum
        bound = 1.0 / math.sqrt(dim / 3)
        self.register_buffer("student", torch.rand(n_data, dim) * (2 * bound) - bound)
        self.register_buffer("teacher", torch.rand(n_data, dim) * (2 * bound) - bound)
        self.register_buffer("z", torch.full((2,), -1.0))

    def contrast_indices(self, samples: Tensor) -> Tensor:
        """(B, 1 + k): each sample's own index (the positive) first, then k negatives."""
        negatives = draw_negatives(samples, self.n_data, self.k)
        return torch.cat([samples.unsqueeze(1), negatives], dim=1)

    def random_rows(self, count: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """(count, k, dim) rows of each bank drawn uniformly from all samples (evaluation,
        whose images are not in the bank)."""
        drawn = torch.randint(0, self.n_data, (count, self.k), device=device)
        return self.student[drawn], self.teacher[drawn]

    @torch.no_grad()
    def update(self, samples: Tensor, student: Tensor, teacher: Tensor) -> None:
        """Move the samples' rows of both banks towards their new (detached) embeddings."""
        for bank, embeddings in ((self.student, student), (self.teacher, teacher)):
            new = momentum_rows(bank[samples], embeddings.detach().to(bank.dtype), self.momentum)
            bank.index_copy_(0, samples, new)
