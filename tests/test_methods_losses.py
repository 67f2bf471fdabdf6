"""The method losses against the independent float64 formulas of methods_formulas.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdlab.errors import KdlabError
from kdlab.methods.at import at_loss
from kdlab.methods.dist import dist_loss
from kdlab.methods.dkd import dkd_loss, dkd_warmup
from kdlab.methods.hint import ConvReg, hint_mse_loss
from kdlab.methods.losses import standardize_logits
from kdlab.methods.nst import nst_loss
from kdlab.methods.pkt import pkt_loss
from kdlab.methods.rkd import rkd_loss
from kdlab.methods.sp import sp_loss
from methods_formulas import (
    ref_at,
    ref_dist,
    ref_dkd,
    ref_nst,
    ref_pkt,
    ref_rkd,
    ref_sp,
)


def randn(*shape, seed, scale=1.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)


def gradcheck(fn, x):
    """The analytic gradient of fn at x (float64) against finite differences (fast mode: along
    random directions, which keeps the feature maps' checks quick)."""
    x = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-5, fast_mode=True)


def approx(value, expected, rel=1e-9, abs=1e-12):
    return pytest.approx(float(expected), rel=rel, abs=abs) == float(value)


# --- logit methods -------------------------------------------------------------------------


def test_standardize_logits_is_a_per_row_z_score_with_unbiased_std():
    z = randn(5, 9, seed=1, scale=4)
    out = standardize_logits(z)
    for row, got in zip(z.numpy(), out.numpy(), strict=True):
        expected = (row - row.mean()) / (row.std(ddof=1) + 1e-7)
        np.testing.assert_allclose(got, expected, rtol=1e-12)
    torch.testing.assert_close(standardize_logits(3 * z - 7), out, rtol=1e-7, atol=1e-7)


DKD_SHAPES = [(1, 5), (6, 10), (4, 100)]
DKD_PARAMS = [(1.0, 8.0, 4.0), (1.0, 2.0, 4.0), (0.5, 6.0, 1.0)]


@pytest.mark.parametrize("shape", DKD_SHAPES)
@pytest.mark.parametrize(("alpha", "beta", "T"), DKD_PARAMS)
def test_dkd_matches_the_formula(shape, alpha, beta, T):
    seed = shape[1] + int(beta)
    z_s, z_t = randn(*shape, seed=seed, scale=3), randn(*shape, seed=seed + 1, scale=3)
    labels = torch.randint(0, shape[1], (shape[0],), generator=torch.Generator().manual_seed(seed))
    got = dkd_loss(z_s, z_t, labels, alpha, beta, T)
    assert approx(got, ref_dkd(z_s, z_t, labels, alpha, beta, T))
    small_t, small_y = z_t[:4, :12], labels[:4] % 12
    gradcheck(lambda x: dkd_loss(x, small_t, small_y, alpha, beta, T), z_s[:4, :12])


def test_dkd_parts_recompose_kd_for_one_sample():
    """The paper's identity KL(p_t||p_s) = TCKD + (1 - p_t[gt]) * NCKD, with beta = 1 - p_t[gt]."""
    z_s, z_t, y = randn(1, 8, seed=3, scale=2), randn(1, 8, seed=4, scale=2), torch.tensor([2])
    p_t, log_p_s = torch.softmax(z_t, 1), torch.log_softmax(z_s, 1)
    kd = (p_t * (p_t.log() - log_p_s)).sum()
    assert approx(dkd_loss(z_s, z_t, y, 1.0, 1.0 - p_t[0, 2].item(), 1.0), kd)


@pytest.mark.parametrize("who", ["student", "teacher", "both"])
def test_dkd_survives_an_underflowing_target_probability(who):
    """A target logit 2000 below the others at T=1 gives p_gt = 0 in float32: loss and grads
    stay finite and equal the float64 value (mdistiller's log(softmax) gives inf here)."""
    z_s, z_t = randn(3, 10, seed=5, scale=2), randn(3, 10, seed=6, scale=2)
    labels = torch.tensor([0, 4, 9])
    for z in {"student": [z_s], "teacher": [z_t], "both": [z_s, z_t]}[who]:
        z[torch.arange(3), labels] -= 2000.0
    expected = ref_dkd(z_s, z_t, labels, 1.0, 8.0, 1.0)
    grads = {}
    for dtype in (torch.float32, torch.float64):
        x = z_s.to(dtype).requires_grad_(True)
        loss = dkd_loss(x, z_t.to(dtype), labels, 1.0, 8.0, 1.0)
        (grads[dtype],) = torch.autograd.grad(loss, x)
        assert loss.dtype == dtype and math.isfinite(loss.item())
        loss = loss.detach()
        assert approx(loss, expected, rel=1e-5 if dtype == torch.float32 else 1e-12)
        assert torch.isfinite(grads[dtype]).all()
    torch.testing.assert_close(
        grads[torch.float32].double(), grads[torch.float64], atol=1e-5, rtol=1e-4
    )


def test_dkd_warmup_counts_epochs_from_one():
    assert [dkd_warmup(e, 20) for e in (1, 10, 20, 21, 240)] == [0.05, 0.5, 1.0, 1.0, 1.0]
    assert dkd_warmup(1, 0) == 1.0
    with pytest.raises(KdlabError, match="warmup"):
        dkd_warmup(1, -1)


@pytest.mark.parametrize("shape", [(1, 5), (8, 10), (16, 100)])
@pytest.mark.parametrize(("beta", "gamma", "T"), [(1.0, 1.0, 4.0), (2.0, 0.5, 1.0)])
def test_dist_matches_the_formula(shape, beta, gamma, T):
    z_s, z_t = randn(*shape, seed=shape[0], scale=3), randn(*shape, seed=shape[0] + 1, scale=3)
    assert approx(dist_loss(z_s, z_t, beta, gamma, T), ref_dist(z_s, z_t, beta, gamma, T))
    gradcheck(lambda x: dist_loss(x, z_t[:4, :12], beta, gamma, T), z_s[:4, :12])


def test_dist_adds_eps_to_the_product_of_norms():
    """Near-uniform probabilities make ||a|| ||b|| ~ 1e-8: the eps placement decides the value,
    and the official + 1e-8 differs from F.cosine_similarity's per-norm clamp."""
    z_s, z_t = randn(4, 6, seed=7, scale=1e-3), randn(4, 6, seed=8, scale=1e-3)
    got = dist_loss(z_s, z_t, 1.0, 1.0, 4.0)
    assert approx(got, ref_dist(z_s, z_t, 1.0, 1.0, 4.0))
    y_s, y_t = torch.softmax(z_s / 4, 1), torch.softmax(z_t / 4, 1)
    cos = [
        torch.nn.functional.cosine_similarity(a - a.mean(1, True), b - b.mean(1, True)).mean()
        for a, b in ((y_s, y_t), (y_s.t(), y_t.t()))
    ]
    assert abs(got.item() - 16 * (2 - sum(cos).item())) > 1e-3 * got.item()


def test_dist_with_a_batch_of_one_has_a_constant_intra_term():
    z_s = randn(1, 7, seed=9).requires_grad_(True)
    z_t = randn(1, 7, seed=10)
    loss = dist_loss(z_s, z_t, 0.0, 1.0, 4.0)
    (grad,) = torch.autograd.grad(loss, z_s)
    assert loss.item() == 16.0 and torch.isfinite(grad).all() and not grad.any()


# --- feature methods -----------------------------------------------------------------------

# (student (C, H, W), teacher (C, H, W)): equal sizes, either side larger, a non-integer ratio
MAP_PAIRS = [
    ((3, 4, 4), (5, 4, 4)),
    ((3, 8, 8), (5, 4, 4)),
    ((4, 4, 4), (2, 8, 8)),
    ((2, 7, 7), (3, 3, 3)),
    ((2, 6, 4), (3, 3, 4)),
]


def feature_pair(batch, pair, seed):
    (cs, hs, ws), (ct, ht, wt) = pair
    return randn(batch, cs, hs, ws, seed=seed), randn(batch, ct, ht, wt, seed=seed + 1)


@pytest.mark.parametrize("pair", MAP_PAIRS)
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("p", [2, 3])
def test_at_matches_the_formula(pair, batch, p):
    f_s, f_t = feature_pair(batch, pair, seed=batch + p)
    assert approx(at_loss(f_s, f_t, p), ref_at(f_s, f_t, p))
    gradcheck(lambda x: at_loss(x, f_t, p), f_s)


@pytest.mark.parametrize("pair", MAP_PAIRS)
@pytest.mark.parametrize("batch", [1, 3])
def test_nst_matches_the_formula(pair, batch):
    f_s, f_t = feature_pair(batch, pair, seed=10 + batch)
    assert approx(nst_loss(f_s, f_t), ref_nst(f_s, f_t))
    gradcheck(lambda x: nst_loss(x, f_t), f_s)


@pytest.mark.parametrize(("shape_s", "shape_t"), [((4, 3, 2, 2), (4, 5, 1, 1)), ((6, 8), (6, 3))])
def test_sp_matches_the_formula(shape_s, shape_t):
    f_s, f_t = randn(*shape_s, seed=20), randn(*shape_t, seed=21)
    loss = sp_loss(f_s, f_t)
    assert loss.dim() == 0 and approx(loss, ref_sp(f_s, f_t))
    gradcheck(lambda x: sp_loss(x, f_t), f_s)


def test_sp_of_one_sample_is_zero():
    assert sp_loss(randn(1, 3, 2, 2, seed=22), randn(1, 4, 2, 2, seed=23)).item() == 0.0


@pytest.mark.parametrize(("batch", "dim_s", "dim_t"), [(1, 4, 6), (5, 4, 6), (8, 16, 3)])
def test_pkt_matches_the_formula(batch, dim_s, dim_t):
    x_s, x_t = randn(batch, dim_s, seed=30 + batch), randn(batch, dim_t, seed=31 + batch)
    assert approx(pkt_loss(x_s, x_t), ref_pkt(x_s, x_t))
    assert approx(pkt_loss(x_s, x_t, eps=1e-3), ref_pkt(x_s, x_t, eps=1e-3))
    gradcheck(lambda x: pkt_loss(x, x_t), x_s)


@pytest.mark.parametrize(("batch", "dim_s", "dim_t"), [(2, 3, 5), (5, 4, 6), (6, 7, 3)])
@pytest.mark.parametrize(("w_d", "w_a"), [(25.0, 50.0), (1.0, 0.0), (0.0, 1.0)])
def test_rkd_matches_the_formula(batch, dim_s, dim_t, w_d, w_a):
    x_s, x_t = randn(batch, dim_s, seed=40 + batch), randn(batch, dim_t, seed=41 + batch, scale=3)
    assert approx(rkd_loss(x_s, x_t, w_d, w_a), ref_rkd(x_s, x_t, w_d, w_a))
    gradcheck(lambda x: rkd_loss(x, x_t, w_d, w_a), x_s)


def test_rkd_with_duplicate_rows_is_finite_and_exact():
    x_s, x_t = randn(5, 4, seed=50), randn(5, 6, seed=51)
    x_s[3], x_t[1] = x_s[0], x_t[4]
    x = x_s.clone().requires_grad_(True)
    loss = rkd_loss(x, x_t)
    (grad,) = torch.autograd.grad(loss, x)
    assert approx(loss.detach(), ref_rkd(x_s, x_t, 25.0, 50.0))
    assert torch.isfinite(grad).all()


def test_rkd_near_duplicate_rows_in_float32_match_float64():
    """Rows of norm ~1e3 that differ by ~1e-3: |a|^2 + |b|^2 - 2ab cancels to noise in float32."""
    base = randn(1, 8, seed=52, scale=1e3)
    x_s = base + randn(6, 8, seed=53, scale=1e-3)
    x_t = base + randn(6, 8, seed=54, scale=1e-3)
    expected = ref_rkd(x_s, x_t, 25.0, 0.0)
    assert approx(rkd_loss(x_s.float(), x_t.float(), 25.0, 0.0), expected, rel=1e-2)


def test_rkd_detaches_the_teacher_and_a_batch_of_one_is_zero():
    x_s, x_t = randn(4, 3, seed=55).requires_grad_(True), randn(4, 5, seed=56).requires_grad_(True)
    grad_s, grad_t = torch.autograd.grad(rkd_loss(x_s, x_t), (x_s, x_t), allow_unused=True)
    assert grad_s is not None and grad_t is None
    one = x_s[:1]
    loss = rkd_loss(one, x_t[:1])
    (grad,) = torch.autograd.grad(loss, x_s)
    assert loss.item() == 0.0 and not grad.any()


def test_hint_mse_is_the_mean_over_all_elements():
    r, t = randn(2, 3, 4, 5, seed=60), randn(2, 3, 4, 5, seed=61)
    pairs = zip(r.flatten().tolist(), t.flatten().tolist(), strict=True)
    expected = sum((a - b) ** 2 for a, b in pairs)
    assert approx(hint_mse_loss(r, t), expected / 120)
    gradcheck(lambda x: hint_mse_loss(x, t), r)


@pytest.mark.parametrize(
    ("s_hw", "t_hw", "conv"),
    [
        ((16, 16), (8, 8), torch.nn.Conv2d),
        ((4, 4), (8, 8), torch.nn.ConvTranspose2d),
        ((8, 8), (8, 8), torch.nn.Conv2d),
        ((10, 9), (8, 8), torch.nn.Conv2d),
    ],
)
def test_conv_reg_maps_the_student_map_onto_the_teacher_shape(s_hw, t_hw, conv):
    reg = ConvReg((2, 6, *s_hw), (2, 10, *t_hw))
    out = reg(torch.randn(2, 6, *s_hw))
    assert type(reg.conv) is conv and out.shape == (2, 10, *t_hw) and (out >= 0).all()


def test_conv_reg_rejects_a_smaller_student_map_it_cannot_upsample():
    with pytest.raises(KdlabError, match="4x4 student map to a 6x6 teacher map"):
        ConvReg((2, 6, 4, 4), (2, 10, 6, 6))
