"""What the method losses share: the compute dtype, Hinton's KL at a temperature, logit
standardisation, the references' spatial match and their spatial attention map (AT, FT).

Every loss is computed in float32 whatever the autocast precision of its inputs (float64
inputs stay float64, so the tests can compare against float64 formulas).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


def float32_math(loss: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """Run a loss with autocast off on its tensors' device, so its matrix products compute in
    the dtype `in_compute_dtype` chose (float32, or float64), not in autocast's bf16/fp16: a
    Gram matrix or a kernel in bf16 keeps 8 bits of mantissa."""

    @functools.wraps(loss)
    def computed(*args: Any, **kwargs: Any) -> Tensor:
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, Tensor)]
        if not tensors:  # lists of feature maps (FSP)
            tensors = [x for a in args if isinstance(a, list | tuple) for x in a]
        with torch.autocast(tensors[0].device.type, enabled=False):
            return loss(*args, **kwargs)

    return computed


def in_compute_dtype(*tensors: Tensor) -> tuple[Tensor, ...]:
    """The tensors cast to float32, or float64 when any of them is float64.

    Half-precision (autocast) features and logits are promoted so every loss is computed in at
    least float32; float64 stays float64 so the tests can compare against float64 formulas.
    """
    dtype = torch.float32
    for t in tensors:
        dtype = torch.promote_types(dtype, t.dtype)
    return tuple(t.to(dtype) for t in tensors)


def non_target(logits: Tensor, labels: Tensor) -> Tensor:
    """The (B, C - 1) logits without each row's label column, the other classes in order.

    Indexing, not mdistiller's `- 1000 * mask`, which is exact only while |z| << 1000.
    """
    n, c = logits.shape
    others = torch.arange(c - 1, device=logits.device).expand(n, c - 1)
    others = others + (others >= labels.reshape(n, 1)).long()
    return logits.gather(1, others)


def match_spatial(f_s: Tensor, f_t: Tensor) -> tuple[Tensor, Tensor]:
    """Adaptive-average-pool the larger of two (B, C, H, W) maps to the smaller's H x W.

    The references (RepDistiller, mdistiller) do this for AT and NST, pooling to (h, h) from
    the heights alone; here each of H and W goes to the smaller of the two, which is the same
    for the square maps they assume.
    """
    size = (min(f_s.shape[2], f_t.shape[2]), min(f_s.shape[3], f_t.shape[3]))
    if tuple(f_s.shape[2:]) != size:
        f_s = F.adaptive_avg_pool2d(f_s, size)
    if tuple(f_t.shape[2:]) != size:
        f_t = F.adaptive_avg_pool2d(f_t, size)
    return f_s, f_t


def attention_map(f: Tensor, p: int) -> Tensor:
    """l2-normalised (over HW) mean_c f^p of a (B, C, H, W) map, shape (B, H*W).

    f^p, not |f|^p, as in the references: the two differ for odd p on pre-activation maps.
    """
    return F.normalize(f.pow(p).mean(dim=1).flatten(1), dim=1)


def kl_rows(log_p: Tensor, log_q: Tensor) -> Tensor:
    """KL(p || q) per row, from log-probabilities (finite ones: log_softmax of finite logits)."""
    return (log_p.exp() * (log_p - log_q)).sum(dim=1)


def kl_divergence(student_logits: Tensor, teacher_logits: Tensor, T: float) -> Tensor:
    """KL(p || q) at temperature T, summed over classes, mean over the batch ('batchmean')."""
    log_p = F.log_softmax(teacher_logits.float() / T, dim=1)
    log_q = F.log_softmax(student_logits.float() / T, dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1).mean()


def standardize_logits(z: Tensor, eps: float = 1e-7) -> Tensor:
    """(z - mean_c z) / (std_c z + eps) per row of (B, C) logits: logit standardisation
    (Sun, Ren, Li, Wang, Cao 2024, "Logit Standardization in Knowledge Distillation", CVPR),
    which lets teacher and student logits differ in range, only not in order.

    std is the unbiased (n - 1) standard deviation and eps is added to it, as in the paper's
    code, so published temperatures carry over.
    """
    (z,) = in_compute_dtype(z)
    return (z - z.mean(dim=1, keepdim=True)) / (z.std(dim=1, keepdim=True) + eps)
