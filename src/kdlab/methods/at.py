"""Attention Transfer (AT), activation-based, for one pair of feature maps.

Zagoruyko, Komodakis (2017), "Paying More Attention to Attention: Improving the Performance
of Convolutional Neural Networks via Attention Transfer" (ICLR).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from kdlab.methods._common import in_compute_dtype, match_spatial


def _attention(f: Tensor, p: int) -> Tensor:
    """l2-normalised (over HW) mean_c f^p, shape (B, H*W).

    f^p, not |f|^p, as in the references: the two differ for odd p on pre-activation maps.
    """
    return F.normalize(f.pow(p).mean(dim=1).flatten(1), dim=1)


def at_loss(student_feature: Tensor, teacher_feature: Tensor, p: int = 2) -> Tensor:
    """mean over B * H*W of (a_s - a_t)^2 (the references' reduction: no beta/2, no per-layer
    norm); the larger map is first average-pooled to the smaller's size. Sum it over layers.
    """
    f_s, f_t = match_spatial(*in_compute_dtype(student_feature, teacher_feature))
    return (_attention(f_s, p) - _attention(f_t, p)).pow(2).mean()
