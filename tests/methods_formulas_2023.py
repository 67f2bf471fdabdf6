"""Independent float64 formulas for the 2023-2024 logit methods (NKD, TTM/WTTM, CTKD, WKD-L,
SDD), in Python loops from the papers' definitions, never from kdlab's vectorised code."""

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


def ref_cosine_cost(w, sharpen: float):
    """d_ij = 1 - <w_i, w_j> / (|w_i| |w_j|) of the classifier rows, sharpened to
    1 - exp(-sharpen d_ij) unless sharpen is 0 (the WKD code's switch)."""
    rows = w.tolist()
    norms = [math.sqrt(sum(x * x for x in r)) for r in rows]
    cost = []
    for ri, ni in zip(rows, norms, strict=True):
        dots = [sum(a * b for a, b in zip(ri, rj, strict=True)) for rj in rows]
        far = [1.0 - d / (ni * nj) for d, nj in zip(dots, norms, strict=True)]
        cost.append(far if sharpen == 0 else [1.0 - math.exp(-sharpen * x) for x in far])
    return cost


def sinkhorn_cost(a, b, cost, reg: float, iters: int, eps: float = 1e-8) -> float:
    """<P, C> of the plan diag(u) K diag(v) after `iters` scaling rounds from u = 1/n,
    K = exp(-C / reg) (Cuturi 2013), with the WKD code's eps in the denominators."""
    n = len(a)
    kern = [[math.exp(-cost[i][j] / reg) for j in range(n)] for i in range(n)]
    u, v = [1.0 / n] * n, [0.0] * n
    for _ in range(iters):
        v = [b[j] / (sum(kern[i][j] * u[i] for i in range(n)) + eps) for j in range(n)]
        u = [a[i] / (sum(kern[i][j] * v[j] for j in range(n)) + eps) for i in range(n)]
    return sum(u[i] * kern[i][j] * v[j] * cost[i][j] for i in range(n) for j in range(n))


def ref_wkd_l(z_s, z_t, labels, cost, T: float, gamma: float, reg: float, iters: int) -> float:
    """Lv et al. 2024, WKD-L: -p_t(y) log p_s(y) + gamma * WD over the non-target classes,
    with the cost max(C, 0) + 1e-8 restricted to them; mean over the batch."""
    total = 0.0
    for zs, zt, y in zip(z_s.tolist(), z_t.tolist(), labels.tolist(), strict=True):
        keep = [j for j in range(len(zs)) if j != y]
        a = softmax_row([zs[j] for j in keep], T)
        b = softmax_row([zt[j] for j in keep], T)
        sub = [[max(cost[i][j], 0.0) + 1e-8 for j in keep] for i in keep]
        total += -softmax_row(zt)[y] * math.log(softmax_row(zs)[y])
        total += gamma * sinkhorn_cost(a, b, sub, reg, iters)
    return total / len(labels)


def adaptive_average(x, s: int):
    """(D, H, W) nested lists -> (D, s, s): cell (i, j) the mean over rows floor(iH/s) ..
    ceil((i+1)H/s) - 1 and the same bounds for the columns (adaptive average pooling)."""
    h, w = len(x[0]), len(x[0][0])
    out = []
    for channel in x:
        grid = []
        for i in range(s):
            r0, r1 = (i * h) // s, -((-(i + 1) * h) // s)
            row = []
            for j in range(s):
                c0, c1 = (j * w) // s, -((-(j + 1) * w) // s)
                cells = [channel[r][c] for r in range(r0, r1) for c in range(c0, c1)]
                row.append(sum(cells) / len(cells))
            grid.append(row)
        out.append(grid)
    return out


def ref_region_logits(f, weight, bias, scales):
    """Wei et al. 2024: per sample, the map pooled to a 4 x 4 grid (the official SPP), then
    each scale s's s x s regions of that grid, row-major, through the classifier; returns
    [b][n] logit lists, region n in scale order."""
    out = []
    for sample in f.tolist():
        grid = adaptive_average(sample, 4)
        regions = []
        for s in scales:
            cells = adaptive_average(grid, s)
            for i in range(s):
                for j in range(s):
                    feat = [channel[i][j] for channel in cells]
                    regions.append(
                        [sum(wk * x for wk, x in zip(row, feat, strict=True)) + bk
                         for row, bk in zip(weight.tolist(), bias.tolist(), strict=True)]
                    )  # fmt: skip
        out.append(regions)
    return out


def ref_dkd_term(s, t, y: int, alpha: float, beta: float, T: float) -> float:
    """Zhao et al. 2022: T^2 [alpha KL(b_t || b_s) + beta KL(p^_t || p^_s)], b = [p_y, 1 - p_y],
    p^ the softmax over the non-target classes."""
    ps, pt = softmax_row(s, T), softmax_row(t, T)
    others = [j for j in range(len(s)) if j != y]
    tckd = kl([pt[y], 1.0 - pt[y]], [ps[y], 1.0 - ps[y]])
    nckd = kl(softmax_row([t[j] for j in others], T), softmax_row([s[j] for j in others], T))
    return T * T * (alpha * tckd + beta * nckd)


def ref_sdd(s_regions, t_regions, labels, T, variant, alpha, beta, comp) -> float:
    """Wei et al. 2024: the mean over samples and regions of w * (KD or DKD term), w = 1 when
    the teacher's region prediction is right exactly when its global (region 0) one is, else
    `comp`."""
    total, count = 0.0, 0
    for s_b, t_b, y in zip(s_regions, t_regions, labels.tolist(), strict=True):
        global_right = max(range(len(t_b[0])), key=lambda k: t_b[0][k]) == y
        for s, t in zip(s_b, t_b, strict=True):
            right = max(range(len(t)), key=lambda k: t[k]) == y
            w = 1.0 if right == global_right else comp
            if variant == "kd":
                term = T * T * kl(softmax_row(t, T), softmax_row(s, T))
            else:
                term = ref_dkd_term(s, t, y, alpha, beta, T)
            total += w * term
            count += 1
    return total / count
