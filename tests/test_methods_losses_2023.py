"""The 2023-2024 logit methods' losses against the independent float64 formulas of
methods_formulas_2023.py, with their gradients (gradcheck)."""

from __future__ import annotations

import math

import pytest
import torch

from kdlab.engine.optim import build_optimizer
from kdlab.engine.settings import OptimConfig
from kdlab.errors import KdlabError
from kdlab.methods.base import MethodContext
from kdlab.methods.ctkd import CTKD, GlobalTemperature, ctkd_kd_loss, curriculum_lambda
from kdlab.methods.dkd import dkd_loss
from kdlab.methods.nkd import nkd_loss
from kdlab.methods.sdd import multiscale_logits, region_weights, sdd_loss
from kdlab.methods.teacher import FrozenTeacher
from kdlab.methods.ttm import ttm_loss
from kdlab.methods.wkd_l import classifier_cost, decayed_weight, target_term, wasserstein_term
from kdlab.methods.wttm import wttm_loss
from kdlab.models import build_model
from kdlab.runs.preflight import compose_config
from methods_formulas_2023 import (
    ref_cosine_cost,
    ref_curriculum_lambda,
    ref_kd_at,
    ref_nkd,
    ref_region_logits,
    ref_sdd,
    ref_tau,
    ref_ttm,
    ref_wkd_l,
)
from test_methods_losses import approx, gradcheck, randn
from test_methods_losses_features import built, outputs

SHAPES = [(1, 5), (7, 10), (16, 100)]


def logits(shape, seed, scale=3.0):
    """Student and teacher logits and labels, float64."""
    labels = torch.randint(0, shape[1], (shape[0],), generator=torch.Generator().manual_seed(seed))
    return randn(*shape, seed=seed, scale=3), randn(*shape, seed=seed + 1, scale=scale), labels


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("T", "gamma"), [(3.0, 3.5), (1.0, 1.5), (0.5, 2.0)])
def test_nkd_matches_the_formula(shape, T, gamma):
    z_s, z_t, y = logits(shape, seed=shape[1])
    assert approx(nkd_loss(z_s, z_t, y, T, gamma), ref_nkd(z_s, z_t, y, T, gamma))
    gradcheck(lambda x: nkd_loss(x, z_t[:4, :12], y[:4] % 12, T, gamma), z_s[:4, :12])


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("gamma", [0.1, 0.2, 0.5, 1.0, 2.0])
def test_ttm_and_wttm_match_the_formula(shape, gamma):
    z_s, z_t, _ = logits(shape, seed=shape[0], scale=10.0)
    assert approx(ttm_loss(z_s, z_t, gamma), ref_ttm(z_s, z_t, gamma, weighted=False))
    assert approx(wttm_loss(z_s, z_t, gamma), ref_ttm(z_s, z_t, gamma, weighted=True))
    small_t = z_t[:4, :12]
    gradcheck(lambda x: ttm_loss(x, small_t, gamma), z_s[:4, :12])
    gradcheck(lambda x: wttm_loss(x, small_t, gamma), z_s[:4, :12])


def test_ttm_keeps_the_classes_whose_teacher_probability_underflows_in_float32():
    """p = 1e-50 underflows in float32 but p^0.1 = 1e-5 does not: the log-space form keeps it."""
    z_s, z_t, _ = logits((8, 100), seed=3, scale=40.0)
    exact = ref_ttm(z_s, z_t, 0.1, weighted=True)
    assert wttm_loss(z_s.float(), z_t.float(), 0.1).item() == pytest.approx(exact, rel=1e-5)


@pytest.mark.parametrize("loops", [1, 5, 10])
def test_ctkd_curriculum_is_the_papers_cosine(loops):
    for epoch in range(1, 3 * loops):
        expected = ref_curriculum_lambda(epoch, loops, 1.0, 0.0)
        assert curriculum_lambda(epoch, loops, 1.0, 0.0) == pytest.approx(expected, abs=1e-15)
    assert curriculum_lambda(1, 10, 1.0, 0.0) == pytest.approx(0.02447, abs=1e-5)
    assert curriculum_lambda(7, 0, 1.0, 0.0) == 1.0


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("theta", "strength"), [(1.0, 0.0245), (-0.5, 1.0), (2.0, 0.5)])
def test_ctkd_loss_and_the_reversed_temperature_gradient_match_the_formula(shape, theta, strength):
    z_s, z_t, _ = logits(shape, seed=shape[1] + 5)
    module = GlobalTemperature(1.0, 20.0, theta).double()
    tau = module(strength)
    assert tau.item() == pytest.approx(ref_tau(theta, 1.0, 20.0), rel=1e-14)
    loss = ctkd_kd_loss(z_s, z_t, tau)
    assert approx(loss.detach(), ref_kd_at(z_s, z_t, ref_tau(theta, 1.0, 20.0)))
    loss.backward()
    h = 1e-4
    up = ref_kd_at(z_s, z_t, ref_tau(theta + h, 1.0, 20.0))
    down = ref_kd_at(z_s, z_t, ref_tau(theta - h, 1.0, 20.0))
    expected = -strength * (up - down) / (2 * h)  # the GRL: theta climbs the loss
    assert module.theta.grad.item() == pytest.approx(expected, rel=1e-5, abs=1e-9)
    fixed = tau.detach()
    gradcheck(lambda x: ctkd_kd_loss(x, z_t[:4, :12], fixed), z_s[:4, :12])
    gradcheck(lambda t: ctkd_kd_loss(z_s[:4, :12], z_t[:4, :12], t), fixed)


def test_ctkd_temperature_is_trained_with_weight_decay_as_the_official():
    """kdlab's optimiser decays matrices only; the official SGD decays theta too."""
    cfg = compose_config("distill", ["model=resnet8", "loss=ctkd"])
    student = build_model("resnet8", 10)
    context = MethodContext(FrozenTeacher(build_model("resnet8", 10)), student, 4.0, 0.1, 32, 0.0)
    ctkd = CTKD(cfg.loss, context)
    params = [*student.parameters(), *ctkd.parameters()]
    optimizer = build_optimizer([{"params": params}], OptimConfig(), torch.device("cpu"))
    theta = ctkd.temperature.theta
    group = next(g for g in optimizer.param_groups if any(p is theta for p in g["params"]))
    assert group["weight_decay"] == 5e-4
    assert ctkd.temperature(0.0).item() == pytest.approx(1 + 20 / (1 + math.exp(-1)))


def wkd_inputs(shape, seed):
    z_s, z_t, y = logits(shape, seed=seed)
    weight = randn(shape[1], 16, seed=seed + 7)
    return z_s, z_t, y, weight


@pytest.mark.parametrize("shape", [(1, 5), (5, 10), (3, 100)])
@pytest.mark.parametrize(("T", "gamma", "sharpen"), [(8.0, 600.0, 1.0), (2.0, 30.0, 0.0)])
def test_wkd_l_matches_the_formula(shape, T, gamma, sharpen):
    z_s, z_t, y, weight = wkd_inputs(shape, seed=shape[1] + int(T))
    cost = classifier_cost(weight, sharpen)
    expected = ref_cosine_cost(weight, sharpen)
    torch.testing.assert_close(
        cost, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-13
    )
    got = target_term(z_s, z_t, y) + gamma * wasserstein_term(z_s, z_t, y, cost, T, 0.05, 10)
    assert approx(got, ref_wkd_l(z_s, z_t, y, expected, T, gamma, 0.05, 10), rel=1e-10)


def test_wkd_l_gradients_run_through_the_sinkhorn_iterations():
    z_s, z_t, y, weight = wkd_inputs((4, 8), seed=2)
    cost = classifier_cost(weight, 1.0)
    gradcheck(lambda x: wasserstein_term(x, z_t, y, cost, 2.0, 0.05, 10), z_s)
    gradcheck(lambda x: target_term(x, z_t, y), z_s)


def test_wkd_l_weight_decays_along_a_half_cosine_after_its_start():
    assert [decayed_weight(600.0, e, 150, 240) for e in (1, 150, 240)] == [600.0, 600.0, 0.0]
    assert decayed_weight(600.0, 195, 150, 240) == pytest.approx(300.0)
    assert decayed_weight(600.0, 9, 0, 0) == 600.0  # the run's length unknown: no decay


# --- SDD -----------------------------------------------------------------------------------


def sdd_inputs(b, d, k, h, w, seed):
    """Student and teacher maps (B, D, H, W), classifiers and labels, float64."""
    f_s, f_t = randn(b, d, h, w, seed=seed), randn(b, d, h, w, seed=seed + 1, scale=2.0)
    w_s, w_t = randn(k, d, seed=seed + 2), randn(k, d, seed=seed + 3, scale=2.0)
    b_s, b_t = randn(k, seed=seed + 4), randn(k, seed=seed + 5)
    labels = torch.randint(0, k, (b,), generator=torch.Generator().manual_seed(seed))
    return f_s, f_t, (w_s, b_s), (w_t, b_t), labels


@pytest.mark.parametrize(
    ("h", "w", "scales"), [(8, 8, [1, 2, 4]), (5, 3, [1, 2]), (2, 2, [1, 2, 4])]
)
def test_sdd_region_logits_pool_a_4x4_grid_then_each_scale(h, w, scales):
    f_s, _, (w_s, b_s), _, _ = sdd_inputs(2, 3, 5, h, w, seed=h + w)
    got = multiscale_logits(f_s, w_s, b_s, scales)
    expected = torch.tensor(ref_region_logits(f_s, w_s, b_s, scales), dtype=torch.float64)
    expected = expected.transpose(1, 2)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-13)


@pytest.mark.parametrize(
    ("variant", "T", "alpha", "beta"),
    [("kd", 4.0, 1.0, 8.0), ("dkd", 4.0, 1.0, 8.0), ("dkd", 2.0, 9.0, 72.0)],
)
@pytest.mark.parametrize(("b", "k", "scales"), [(6, 5, [1, 2, 4]), (3, 100, [1, 2]), (4, 7, [1])])
def test_sdd_matches_the_formula_with_complementary_regions(variant, T, alpha, beta, b, k, scales):
    f_s, f_t, (w_s, b_s), (w_t, b_t), y = sdd_inputs(b, 4, k, 8, 8, seed=k + b)
    multi_s = multiscale_logits(f_s, w_s, b_s, scales)
    multi_t = multiscale_logits(f_t, w_t, b_t, scales)
    comp = 2.0 if len(scales) > 1 else 1.0
    got = sdd_loss(multi_s, multi_t, y, T, variant, alpha, beta, comp)
    regions_s = multi_s.transpose(1, 2).tolist()
    regions_t = multi_t.transpose(1, 2).tolist()
    assert approx(got, ref_sdd(regions_s, regions_t, y, T, variant, alpha, beta, comp), rel=1e-11)
    if b == 6:  # both kinds of region are there: the weights matter
        assert set(region_weights(multi_t, y, 2.0).tolist()) == {1.0, 2.0}


def test_sdd_on_one_global_region_is_kd_and_dkd():
    f_s, f_t, (w_s, b_s), (w_t, b_t), y = sdd_inputs(5, 4, 10, 8, 8, seed=9)
    z_s, z_t = f_s.mean(dim=(2, 3)) @ w_s.T + b_s, f_t.mean(dim=(2, 3)) @ w_t.T + b_t
    multi_s = multiscale_logits(f_s, w_s, b_s, [1])
    multi_t = multiscale_logits(f_t, w_t, b_t, [1])
    dkd = sdd_loss(multi_s, multi_t, y, 4.0, "dkd", 1.0, 8.0)
    assert approx(dkd, dkd_loss(z_s, z_t, y, 1.0, 8.0, 4.0), rel=1e-12)
    assert approx(sdd_loss(multi_s, multi_t, y, 4.0, "kd"), ref_kd_at(z_s, z_t, 4.0), rel=1e-11)


@pytest.mark.parametrize("variant", ["kd", "dkd"])
def test_sdd_gradients_reach_the_student_map_and_region_logits(variant):
    f_s, f_t, (w_s, b_s), (w_t, b_t), y = sdd_inputs(3, 3, 6, 8, 8, seed=4)
    multi_t = multiscale_logits(f_t, w_t, b_t, [1, 2])
    multi_s = multiscale_logits(f_s, w_s, b_s, [1, 2])
    gradcheck(lambda x: sdd_loss(x, multi_t, y, 4.0, variant, 1.0, 8.0), multi_s)
    gradcheck(
        lambda x: sdd_loss(multiscale_logits(x, w_s, b_s, [1, 2]), multi_t, y, 4.0, variant), f_s
    )


@pytest.mark.parametrize(("variant", "ce_weight", "weight"), [("kd", 0.1, 0.9), ("dkd", 1.0, 1.0)])
def test_sdd_reads_both_classifiers_with_the_official_weights_per_variant(
    variant, ce_weight, weight
):
    sdd, student, teacher = built("sdd", "resnet8", "resnet14", f"loss.variant={variant}")
    assert (sdd.ce_weight, sdd.weight, sdd.beta) == (ce_weight, weight, 8.0)
    assert sdd.tapped.student == ("prepool",) and list(sdd.parameters()) == []
    x = randn(4, 3, 32, 32, seed=5, dtype=torch.float32)
    y = torch.tensor([0, 1, 2, 3])
    s = outputs(student, sdd.tapped.student, x)
    with torch.no_grad():
        t = outputs(teacher.eval(), sdd.tapped.teacher, x)
    sdd.epoch = 5
    got = sdd.loss(s, t, y)
    ramp = 5 / 20 if variant == "dkd" else 1.0
    multi = [
        multiscale_logits(
            o.features[0].double(), m.head[-1].weight.double(), m.head[-1].bias.double(), [1, 2, 4]
        )
        for o, m in ((s, student), (t, teacher))
    ]
    regions = [r.transpose(1, 2).tolist() for r in multi]
    expected = ramp * ref_sdd(*regions, y, 4.0, variant, 1.0, 8.0, 2.0)
    assert approx(got.detach(), expected, rel=1e-5)
    got.backward()
    assert student.head[-1].weight.grad.abs().sum() > 0


def test_sdd_refuses_an_unknown_variant_and_empty_scales():
    with pytest.raises(KdlabError, match=r"loss\.variant must be one of kd, dkd"):
        compose_config("distill", ["loss=sdd", "loss.variant=nkd"]).loss.check()
    with pytest.raises(KdlabError, match=r"loss\.scales must be a non-empty list"):
        compose_config("distill", ["loss=sdd", "loss.scales=[]"]).loss.check()
