"""Logit standardisation: z-score each sample's logits before the temperature.

Sun, Ren, Li, Wang, Cao (2024), "Logit Standardization in Knowledge Distillation" (CVPR):
teacher and student logits need not share a range, only their relative order, so both are
standardised per sample; kd and dkd apply it when `loss.standardize=true`.
"""

from __future__ import annotations

from torch import Tensor

from kdlab.methods._common import in_compute_dtype


def standardize_logits(z: Tensor, eps: float = 1e-7) -> Tensor:
    """(z - mean_c z) / (std_c z + eps) per row of (B, C) logits.

    std is the unbiased (n - 1) standard deviation and eps is added to it, as in the paper's
    code, so published temperatures carry over.
    """
    (z,) = in_compute_dtype(z)
    return (z - z.mean(dim=1, keepdim=True)) / (z.std(dim=1, keepdim=True) + eps)
