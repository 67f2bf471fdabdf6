"""The losses against formulas written independently here, on random inputs."""

from __future__ import annotations

import math

import pytest
import torch

from kdlab.methods.fitnets import hint_loss
from kdlab.methods.kd import kd_losses, soft_cross_entropy
from kdlab.methods.losses import kl_divergence


def reference_kd(z, v, y, T, alpha):
    """Note 1, written out per sample with Python floats."""
    total_soft = total_hard = total_kl = 0.0
    n, c = z.shape
    for b in range(n):
        ev = [math.exp(v[b, i].item() / T) for i in range(c)]
        ez = [math.exp(z[b, i].item() / T) for i in range(c)]
        p = [e / sum(ev) for e in ev]
        q = [e / sum(ez) for e in ez]
        total_soft += -sum(p[i] * math.log(q[i]) for i in range(c))
        total_kl += sum(p[i] * math.log(p[i] / q[i]) for i in range(c))
        e1 = [math.exp(z[b, i].item()) for i in range(c)]
        total_hard += -math.log(e1[y[b]] / sum(e1))
    soft, hard, kl = total_soft / n, total_hard / n, total_kl / n
    return (1 - alpha) * T * T * soft + alpha * hard, soft, hard, kl


@pytest.mark.parametrize("T", [1.0, 2.0, 4.0, 8.0])
@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_kd_loss_matches_the_formula(T, alpha):
    g = torch.Generator().manual_seed(int(T * 10 + alpha * 100))
    z = torch.randn(6, 7, generator=g, dtype=torch.float64) * 3
    v = torch.randn(6, 7, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 7, (6,), generator=g)
    out = kd_losses(z, v, y, T, alpha)
    loss, soft, hard, kl = reference_kd(z, v, y.tolist(), T, alpha)
    assert out["loss"].item() == pytest.approx(loss, rel=1e-5)
    assert out["loss_soft"].item() == pytest.approx(soft, rel=1e-5)
    assert out["loss_hard"].item() == pytest.approx(hard, rel=1e-5)
    assert out["loss_kl"].item() == pytest.approx(kl, rel=1e-4, abs=1e-6)


def test_alpha_weighs_the_hard_term():
    z, v = torch.randn(4, 5), torch.randn(4, 5)
    y = torch.tensor([0, 1, 2, 3])
    only_hard = kd_losses(z, v, y, T=4.0, alpha=1.0)
    assert only_hard["loss"].item() == pytest.approx(
        torch.nn.functional.cross_entropy(z, y).item(), rel=1e-6
    )
    only_soft = kd_losses(z, v, y, T=4.0, alpha=0.0)
    assert only_soft["loss"].item() == pytest.approx(16 * only_soft["loss_soft"].item(), rel=1e-6)


def test_soft_cross_entropy_and_kl_have_the_same_gradient():
    z = torch.randn(5, 10, requires_grad=True)
    v = torch.randn(5, 10)
    (g_ce,) = torch.autograd.grad(soft_cross_entropy(z, v, 3.0), z)
    (g_kl,) = torch.autograd.grad(kl_divergence(z, v, 3.0), z)
    torch.testing.assert_close(g_ce, g_kl)


def test_kl_is_batchmean_not_mean_over_classes():
    z, v = torch.randn(8, 100), torch.randn(8, 100)
    reference = torch.nn.functional.kl_div(
        torch.log_softmax(z / 2, 1),
        torch.log_softmax(v / 2, 1),
        reduction="batchmean",
        log_target=True,
    )
    assert kl_divergence(z, v, 2.0).item() == pytest.approx(reference.item(), rel=1e-5)


def test_t_squared_keeps_the_soft_gradient_scale():
    """Without T^2 the soft gradient shrinks ~1/T^2; with it, its size stays about constant."""
    torch.manual_seed(0)
    z = torch.randn(256, 10, requires_grad=True)
    v = torch.randn(256, 10) * 2
    y = torch.randint(0, 10, (256,))
    norms = {}
    for T in (2.0, 4.0, 8.0, 16.0):
        (grad,) = torch.autograd.grad(kd_losses(z, v, y, T, alpha=0.0)["loss"], z)
        norms[T] = grad.norm().item()
    assert max(norms.values()) / min(norms.values()) < 2.5
    (raw,) = torch.autograd.grad(soft_cross_entropy(z, v, 16.0), z)
    assert raw.norm().item() < norms[16.0] / 100


def test_hint_loss_is_half_squared_l2_per_image():
    g = torch.Generator().manual_seed(3)
    hint = torch.randn(3, 4, 5, 5, generator=g)
    regressed = torch.randn(3, 4, 5, 5, generator=g)
    expected = (
        sum(
            0.5
            * sum(
                (h - r) ** 2
                for h, r in zip(
                    hint[b].flatten().tolist(), regressed[b].flatten().tolist(), strict=True
                )
            )
            for b in range(3)
        )
        / 3
    )
    assert hint_loss(regressed, hint).item() == pytest.approx(expected, rel=1e-5)


def test_losses_are_float32_under_bf16_logits():
    z = torch.randn(4, 10).bfloat16()
    v = torch.randn(4, 10).bfloat16()
    out = kd_losses(z, v, torch.tensor([1, 2, 3, 4]), 4.0, 0.1)
    assert all(t.dtype == torch.float32 for t in out.values())
