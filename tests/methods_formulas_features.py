"""Independent float64 formulas for CAT-KD, ICKD, SRD and KDSVD: numpy and Python loops,
written from the papers' and the official code's definitions, never from kdlab's code."""

from __future__ import annotations

import math

import numpy as np

from methods_formulas import pool_np

# --- CAT-KD -------------------------------------------------------------------------------


def ref_cams(x, w):
    """CAM[b, k] = sum_c W[k, c] x[b, c] (the classifier as a 1x1 conv, no bias)."""
    b, c, h, wd = x.shape
    out = np.zeros((b, w.shape[0], h, wd))
    for bi in range(b):
        for k in range(w.shape[0]):
            for ci in range(c):
                out[bi, k] += w[k, ci] * x[bi, ci]
    return out


def ref_catkd(x_s, x_t, w_s, w_t, r, normalize):
    """mean over (b, k, i, j) of the squared difference of the r x r pooled CAMs, each map
    divided by max(its l2 norm, 1e-12) when normalised."""
    pooled = [pool_np(ref_cams(x, w), r, r) for x, w in ((x_s, w_s), (x_t, w_t))]
    total = 0.0
    p_s, p_t = pooled
    for bi in range(p_s.shape[0]):
        for k in range(p_s.shape[1]):
            a, b = p_s[bi, k], p_t[bi, k]
            if normalize:
                a = a / max(math.sqrt((a * a).sum()), 1e-12)
                b = b / max(math.sqrt((b * b).sum()), 1e-12)
            total += ((a - b) ** 2).sum()
    return total / p_s.size


# --- ICKD and SRD's embeds -------------------------------------------------------------------


def ref_conv1x1(x, w):
    """y[b, o] = sum_i W[o, i] x[b, i]; W is (O, I) or (O, I, 1, 1)."""
    w = w.reshape(w.shape[0], -1)
    y = np.zeros((x.shape[0], w.shape[0], *x.shape[2:]))
    for o in range(w.shape[0]):
        for i in range(w.shape[1]):
            y[:, o] += w[o, i] * x[:, i]
    return y


def ref_batch_norm(y, gamma, beta, eps=1e-5):
    """Training mode: each channel by its batch mean and biased variance over (B, H, W)."""
    out = np.empty_like(y)
    for c in range(y.shape[1]):
        mu = y[:, c].mean()
        var = ((y[:, c] - mu) ** 2).mean()
        out[:, c] = gamma[c] * (y[:, c] - mu) / math.sqrt(var + eps) + beta[c]
    return out


def ref_correlation(f):
    """G[b, i, j] = <f[b, i], f[b, j]> over the positions, each row divided by max(norm, 1e-12)."""
    b, c = f.shape[:2]
    flat = f.reshape(b, c, -1)
    g = np.zeros((b, c, c))
    for bi in range(b):
        for i in range(c):
            for j in range(c):
                g[bi, i, j] = float(np.dot(flat[bi, i], flat[bi, j]))
            g[bi, i] /= max(math.sqrt((g[bi, i] ** 2).sum()), 1e-12)
    return g


def ref_ickd(s_embedded, t):
    """sum_{b,i,j} (G_s - G_t)^2 / (C * B)."""
    b, c = s_embedded.shape[:2]
    d = ref_correlation(s_embedded) - ref_correlation(t)
    return float((d**2).sum()) / (c * b)


# --- SRD -----------------------------------------------------------------------------------


def ref_pooled(f):
    b, c = f.shape[:2]
    return np.array([[f[bi, ci].sum() / f[bi, ci].size for ci in range(c)] for bi in range(b)])


def ref_srd(s_connected, t, w, bias, z_t, feat_weight):
    """feat_weight * mean_{b,c} (pool(s) - pool(t))^2 + mean_{b,k} (W pool(s) + b - z_t)^2."""
    d = ref_pooled(s_connected) - ref_pooled(t)
    z_s = ref_pooled(s_connected) @ w.T + bias
    return feat_weight * float((d**2).sum()) / d.size + float(((z_s - z_t) ** 2).sum()) / z_s.size


# --- KDSVD ---------------------------------------------------------------------------------


def _matrix(f, layout):
    b, c, h, w = f.shape
    if layout == "channels":
        return np.transpose(f.reshape(b, c, h * w), (0, 2, 1))  # (B, HW, C)
    return f.reshape(b, c * h, w)


def _right_vectors(x, n):
    """(s[:n] / ||s[:n]||, V[:, :n] with unit columns) of one matrix, by numpy's SVD."""
    _, s, vh = np.linalg.svd(x, full_matrices=False)
    v = vh.T[:, :n].copy()
    for j in range(v.shape[1]):
        v[:, j] /= max(np.linalg.norm(v[:, j]), 1e-12)
    return s[:n] / max(np.linalg.norm(s[:n]), 1e-12), v


def _canonical(v):
    """Each column's largest-magnitude entry made positive."""
    v = v.copy()
    for j in range(v.shape[1]):
        if v[int(np.argmax(np.abs(v[:, j]))), j] < 0:
            v[:, j] = -v[:, j]
    return v


def _aligned(v_s, v_t):
    """For each teacher vector, the student vector of largest |cosine|, times its sign."""
    out = np.zeros_like(v_t)
    for j in range(v_t.shape[1]):
        cos = [float(np.dot(v_s[:, i], v_t[:, j])) for i in range(v_s.shape[1])]
        i = int(np.argmax(np.abs(cos)))
        out[:, j] = math.copysign(1.0, cos[i]) * v_s[:, i]
    return out


def ref_kdsvd(fs_list, ft_list, k=1, layout="channels", teacher_signs=None):
    """sum over consecutive layers and samples of sum_{a,c,j} (R_s - R_t)^2, / B, with
    R[a, c, j] = exp(-(v^l[a, j] - v^{l-1}[c, j])^2 / 8). The teacher's vectors take the
    canonical sign, or `teacher_signs[l][b][j]` times the canonical one."""
    batch = fs_list[0].shape[0]
    total = 0.0
    for b in range(batch):
        prev = None
        for layer, (f_s, f_t) in enumerate(zip(fs_list, ft_list, strict=True)):
            s_t, v_t = _right_vectors(_matrix(f_t, layout)[b], k)
            _, v_s = _right_vectors(_matrix(f_s, layout)[b], k + 3)
            v_t = _canonical(v_t)
            if teacher_signs is not None:
                v_t = v_t * np.asarray(teacher_signs[layer][b])[None, :]
            v_s = _aligned(v_s, v_t)
            v_t, v_s = v_t * s_t[None, :], v_s * s_t[None, :]
            if prev is not None:
                p_s, p_t = prev
                for j in range(k):
                    r_s = np.exp(-((v_s[:, j][:, None] - p_s[:, j][None, :]) ** 2) / 8)
                    r_t = np.exp(-((v_t[:, j][:, None] - p_t[:, j][None, :]) ** 2) / 8)
                    total += float(((r_s - r_t) ** 2).sum())
            prev = (v_s, v_t)
    return total / batch
