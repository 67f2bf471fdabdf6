"""The 2023-2024 logit methods' losses against the independent float64 formulas of
methods_formulas_2023.py, with their gradients (gradcheck)."""

from __future__ import annotations

import math

import pytest
import torch

from kdlab.engine.optim import OptimConfig, build_optimizer
from kdlab.methods.base import MethodContext
from kdlab.methods.ctkd import CTKD, GlobalTemperature, ctkd_kd_loss, curriculum_lambda
from kdlab.methods.nkd import nkd_loss
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
    ref_tau,
    ref_ttm,
    ref_wkd_l,
)
from test_methods_losses import approx, gradcheck, randn

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
