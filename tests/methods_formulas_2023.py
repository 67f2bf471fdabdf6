"""Independent float64 formulas for the 2023-2024 logit methods (NKD, TTM/WTTM, CTKD, WKD-L),
in Python loops from the papers' definitions, never from kdlab's vectorised code."""

from __future__ import annotations

import math


def softmax_row(z, T: float = 1.0) -> list[float]:
    m = max(float(v) for v in z)
    e = [math.exp((float(v) - m) / T) for v in z]
    s = sum(e)
    return [v / s for v in e]


def kl(p, q) -> float:
    return sum(pj * math.log(pj / qj) for pj, qj in zip(p, q, strict=True) if pj > 0.0)


def cross_entropy(p, q) -> float:
    return -sum(pj * math.log(qj) for pj, qj in zip(p, q, strict=True) if pj > 0.0)


def ref_nkd(z_s, z_t, labels, T: float, gamma: float) -> float:
    """Yang et al. 2023, Eq. 8: -t_y log s_y - gamma T^2 sum_{i != y} N(t_i^T) log N(s_i^T),
    N the softmax renormalised over the non-target classes; mean over the batch."""
    total = 0.0
    for zs, zt, y in zip(z_s.tolist(), z_t.tolist(), labels.tolist(), strict=True):
        total += -softmax_row(zt)[y] * math.log(softmax_row(zs)[y])
        others = [j for j in range(len(zs)) if j != y]
        s_hat = softmax_row([zs[j] for j in others], T)
        t_hat = softmax_row([zt[j] for j in others], T)
        total += gamma * T * T * cross_entropy(t_hat, s_hat)
    return total / len(labels)


def ref_ttm(z_s, z_t, gamma: float, weighted: bool) -> float:
    """Zheng and Yang 2024: p~ = p^gamma / sum_k p_k^gamma, KL(p~ || softmax(z)); WTTM times
    U = sum_k p_k^gamma; mean over the batch."""
    total = 0.0
    for zs, zt in zip(z_s.tolist(), z_t.tolist(), strict=True):
        powered = [pj**gamma for pj in softmax_row(zt)]
        u = sum(powered)
        term = kl([v / u for v in powered], softmax_row(zs))
        total += u * term if weighted else term
    return total / len(z_s)


def ref_curriculum_lambda(n: int, E: int, lambda_max: float, lambda_min: float) -> float:
    """Li et al. 2023: lambda_n = lambda_min + (lambda_max - lambda_min)(1 + cos((1 + min(n,
    E) / E) pi)) / 2."""
    return lambda_min + 0.5 * (lambda_max - lambda_min) * (
        1.0 + math.cos((1.0 + min(n, E) / E) * math.pi)
    )


def ref_tau(theta: float, t_start: float, t_range: float) -> float:
    return t_start + t_range / (1.0 + math.exp(-theta))


def ref_kd_at(z_s, z_t, tau: float) -> float:
    """tau^2 KL(softmax(v / tau) || softmax(z / tau)), mean over the batch."""
    rows = zip(z_s.tolist(), z_t.tolist(), strict=True)
    return tau * tau * sum(kl(softmax_row(t, tau), softmax_row(s, tau)) for s, t in rows) / len(z_s)
