"""Methods as published, reached through `preset=`: logit standardisation's KD and DKD (Sun
et al. 2024), KD's mdistiller weights they need, and standardisation on ctkd."""

from __future__ import annotations

import math

import pytest
import torch

from kdlab.errors import KdlabError
from kdlab.methods.base import MethodContext, Outputs
from kdlab.methods.ctkd import CTKD
from kdlab.methods.kd import KD
from kdlab.methods.teacher import FrozenTeacher
from kdlab.models import build_model
from kdlab.runs.preflight import compose_config
from methods_formulas_2023 import cross_entropy, ref_kd_at, softmax_row
from test_methods_losses import approx, randn


def zscore(z: torch.Tensor) -> torch.Tensor:
    """Sun et al. 2024, Eq. 6 as their code: (z - mean) / (unbiased std + 1e-7), per row."""
    rows = []
    for row in z.tolist():
        mean = sum(row) / len(row)
        std = math.sqrt(sum((v - mean) ** 2 for v in row) / (len(row) - 1))
        rows.append([(v - mean) / (std + 1e-7) for v in row])
    return torch.tensor(rows, dtype=torch.float64)


def built(cls, overrides: list[str]):
    cfg = compose_config("distill", ["model=resnet8", *overrides])
    context = MethodContext(
        FrozenTeacher(build_model("resnet8", 10)), build_model("resnet8", 10), cfg.T, cfg.alpha,
        32, 0.0,
    )  # fmt: skip
    return cls(cfg.loss, context), cfg


def test_the_presets_compose_the_papers_settings():
    ls_kd = compose_config("distill", ["preset=ls_kd"])
    assert (ls_kd.loss.name, ls_kd.T, ls_kd.loss.standardize) == ("kd", 2.0, True)
    assert (ls_kd.loss.ce_weight, ls_kd.loss.kd_weight) == (0.1, 9.0)
    ls_dkd = compose_config("distill", ["preset=ls_dkd", "loss.warmup=5"])
    assert (ls_dkd.loss.name, ls_dkd.T, ls_dkd.loss.standardize) == ("dkd", 2.0, True)
    assert (ls_dkd.loss.alpha, ls_dkd.loss.beta, ls_dkd.loss.ce_weight) == (9.0, 72.0, 1.0)
    assert ls_dkd.loss.warmup == 5  # the command line still wins


def test_kd_with_ce_and_kd_weights_is_their_weighted_sum():
    kd, _ = built(KD, ["preset=ls_kd"])
    z_s, z_t = randn(6, 10, seed=1, scale=3.0), randn(6, 10, seed=2, scale=5.0)
    y = torch.tensor([0, 3, 9, 2, 2, 7])
    parts = kd.loss(Outputs(z_s), Outputs(z_t), y)
    pairs = zip(z_s.tolist(), y.tolist(), strict=True)
    ce = sum(-math.log(softmax_row(r)[c]) for r, c in pairs) / 6
    rows = zip(zscore(z_s).tolist(), zscore(z_t).tolist(), strict=True)
    soft = sum(cross_entropy(softmax_row(t, 2.0), softmax_row(s, 2.0)) for s, t in rows) / 6
    assert approx(parts["loss"].detach(), 0.1 * ce + 9.0 * 4.0 * soft, rel=1e-6)
    assert kd.summary_fields() == {
        "T": 2.0,
        "ce_weight": 0.1,
        "kd_weight": 9.0,
        "standardize": True,
    }
    hinton, _ = built(KD, ["loss=kd", "alpha=0.1"])  # unset: alpha's form, unchanged
    parts = hinton.loss(Outputs(z_s), Outputs(z_t), y)
    rows = zip(z_s.tolist(), z_t.tolist(), strict=True)
    soft = sum(cross_entropy(softmax_row(t, 4.0), softmax_row(s, 4.0)) for s, t in rows) / 6
    assert approx(parts["loss"].detach(), 0.1 * ce + 0.9 * 16.0 * soft, rel=1e-6)


def test_kd_refuses_one_weight_without_the_other():
    with pytest.raises(KdlabError, match=r"takes loss\.ce_weight and loss\.kd_weight together"):
        compose_config("distill", ["loss=kd", "loss.kd_weight=9"])


def test_ctkd_standardises_the_logits_before_its_temperature():
    ctkd, _ = built(CTKD, ["loss=ctkd", "loss.standardize=true"])
    z_s, z_t = randn(5, 8, seed=3, scale=4.0), randn(5, 8, seed=4, scale=6.0)
    ctkd.epoch = 1
    got = ctkd.loss(Outputs(z_s), Outputs(z_t), torch.zeros(5, dtype=torch.long))
    tau = 1 + 20 / (1 + math.exp(-1))
    assert approx(got.detach(), ref_kd_at(zscore(z_s), zscore(z_t), tau), rel=1e-6)


def test_distill_help_lists_the_presets(tmp_path):
    from conftest import run_kdlab

    proc = run_kdlab("distill", "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "preset: ls_dkd, ls_kd" in proc.stdout
