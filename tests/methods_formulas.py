"""Independent formulas for the method losses: numpy float64 and Python loops, written from
the papers' and references' definitions, never from kdlab's vectorised code."""

from __future__ import annotations

import math

import numpy as np


def log_softmax_row(v):
    m = max(v)
    lse = m + math.log(sum(math.exp(x - m) for x in v))
    return [x - lse for x in v]


def ref_dkd(z_s, z_t, labels, alpha, beta, T):
    """Per sample, in log space, with the target class dropped from a Python list."""
    total = 0.0
    for zs, zt, y in zip(z_s.tolist(), z_t.tolist(), labels.tolist(), strict=True):
        parts = []
        for z in (zs, zt):
            lp = log_softmax_row([x / T for x in z])
            others = [lp[i] for i in range(len(z)) if i != y]
            log_rest = log_softmax_row(others)  # log p^: the others minus their logsumexp
            log_not = others[0] - log_rest[0]  # that logsumexp: log(1 - p_gt)
            parts.append(([lp[y], log_not], log_rest))
        (b_s, h_s), (b_t, h_t) = parts
        tckd = sum(math.exp(t) * (t - s) for s, t in zip(b_s, b_t, strict=True))
        nckd = sum(math.exp(t) * (t - s) for s, t in zip(h_s, h_t, strict=True))
        total += alpha * tckd + beta * nckd
    return T * T * total / len(labels)


def ref_pearson(a, b):
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (math.sqrt((a * a).sum()) * math.sqrt((b * b).sum()) + 1e-8))


def softmax_np(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def ref_dist(z_s, z_t, beta, gamma, T):
    y_s, y_t = softmax_np(z_s.numpy() / T), softmax_np(z_t.numpy() / T)
    n, c = y_s.shape
    inter = 1 - sum(ref_pearson(y_s[i], y_t[i]) for i in range(n)) / n
    intra = 1 - sum(ref_pearson(y_s[:, j], y_t[:, j]) for j in range(c)) / c
    return T * T * (beta * inter + gamma * intra)


def pool_np(f, h, w):
    """Adaptive average pooling by its definition: windows [floor(iH/h), ceil((i+1)H/h))."""
    H, W = f.shape[2:]
    out = np.zeros((*f.shape[:2], h, w))
    for i in range(h):
        for j in range(w):
            rows = slice(i * H // h, -(-(i + 1) * H // h))
            cols = slice(j * W // w, -(-(j + 1) * W // w))
            out[:, :, i, j] = f[:, :, rows, cols].mean(axis=(2, 3))
    return out


def matched_np(f_s, f_t):
    f_s, f_t = f_s.numpy(), f_t.numpy()
    h, w = min(f_s.shape[2], f_t.shape[2]), min(f_s.shape[3], f_t.shape[3])
    return pool_np(f_s, h, w), pool_np(f_t, h, w)


def ref_at(f_s, f_t, p):
    f_s, f_t = matched_np(f_s, f_t)
    total, count = 0.0, 0
    for b in range(f_s.shape[0]):
        maps = [(f[b] ** p).mean(axis=0).ravel() for f in (f_s, f_t)]
        a_s, a_t = (m / max(np.sqrt((m * m).sum()), 1e-12) for m in maps)
        total += ((a_s - a_t) ** 2).sum()
        count += a_s.size
    return total / count


def ref_nst(f_s, f_t):
    f_s, f_t = matched_np(f_s, f_t)
    n = f_s.shape[0]
    unit = [
        [[c.ravel() / np.sqrt((c * c).sum()) for c in f[b]] for b in range(n)] for f in (f_s, f_t)
    ]

    def mean_k(x, y):
        return np.mean([[(u @ v) ** 2 for u in x[b] for v in y[b]] for b in range(n)])

    s, t = unit
    return mean_k(t, t) + mean_k(s, s) - 2 * mean_k(s, t)


def ref_sp(f_s, f_t):
    n = f_s.shape[0]
    grams = []
    for f in (f_s.reshape(n, -1).numpy(), f_t.reshape(n, -1).numpy()):
        g = np.array([[f[i] @ f[j] for j in range(n)] for i in range(n)])
        grams.append(g / np.sqrt((g * g).sum(axis=1, keepdims=True)))
    return ((grams[1] - grams[0]) ** 2).sum() / n**2


def ref_pkt(x_s, x_t, eps=1e-7):
    probs = []
    for x in (x_s.numpy(), x_t.numpy()):
        unit = [r / (math.sqrt((r * r).sum()) + eps) for r in x]
        k = np.array([[(u @ v + 1) / 2 for v in unit] for u in unit])
        probs.append(k / k.sum(axis=1, keepdims=True))
    p_s, p_t = probs
    return float(np.mean(p_t * np.log((p_t + eps) / (p_s + eps))))


def smooth_l1(a, b):
    d = np.abs(np.asarray(a) - np.asarray(b))
    return float(np.mean(np.where(d < 1, 0.5 * d * d, d - 0.5)))


def ref_rkd(x_s, x_t, w_d, w_a):
    rel = []
    for x in (x_s.numpy(), x_t.numpy()):
        n = len(x)
        d = np.array(
            [
                [
                    0.0 if i == j else math.sqrt(max(((x[i] - x[j]) ** 2).sum(), 1e-12))
                    for j in range(n)
                ]
                for i in range(n)
            ]
        )
        if n > 1:
            d /= d.sum() / (n * (n - 1))
        e = [
            [(x[j] - x[i]) / max(np.sqrt(((x[j] - x[i]) ** 2).sum()), 1e-12) for j in range(n)]
            for i in range(n)
        ]
        angles = [e[i][j] @ e[i][k] for i in range(n) for j in range(n) for k in range(n)]
        rel.append((d, angles))
    (d_s, a_s), (d_t, a_t) = rel
    return w_d * smooth_l1(d_s, d_t) + w_a * smooth_l1(a_s, a_t)
