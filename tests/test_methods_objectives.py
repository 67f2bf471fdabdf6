"""The method objectives built from the registry: the combination, the epoch, the taps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from kdlab.errors import KdlabError
from kdlab.methods.base import MethodContext
from kdlab.methods.registry import METHODS, method
from kdlab.methods.teacher import FrozenTeacher
from kdlab.models import build_model
from kdlab.runs.preflight import compose_config
from methods_formulas import ref_at, ref_dkd


def objective_for(*overrides: str, student: nn.Module, teacher: nn.Module):
    cfg = compose_config("distill", ["model=resnet8", *overrides])
    context = MethodContext(FrozenTeacher(teacher), student, cfg.T, cfg.alpha, 32, 0.0)
    return method(cfg.loss.name)(cfg.loss, context)


@pytest.fixture
def pair():
    torch.manual_seed(0)
    return build_model("resnet8", 10).double(), build_model("resnet14", 10).double()


def batch(n: int = 6):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, 32, 32, generator=g).double(), torch.randint(0, 10, (n,), generator=g)


def log_softmax_np(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def test_at_combination_is_ce_plus_kd_plus_beta_times_the_layer_sum(pair):
    """L = ce_weight * CE + kd_weight * T^2 * KL_T + beta * sum_layers AT, recomputed in numpy
    from the three stages' outputs, which the test taps itself."""
    student, teacher = pair
    objective = objective_for(
        "loss=at",
        "loss.ce_weight=0.7",
        "loss.kd_weight=0.3",
        "loss.beta=500",
        "T=3",
        student=student,
        teacher=teacher,
    )
    x, y = batch()
    feats = {}
    hooks = [
        m.get_submodule(p).register_forward_hook(
            lambda mod, i, o, key=(side, p): feats.__setitem__(key, o.detach())
        )
        for side, m in (("s", student), ("t", teacher))
        for p in ("layer1", "layer2", "layer3")
    ]
    student.train()
    out = objective(student, x, y)
    for h in hooks:
        h.remove()
    z_s, z_t = out.logits.detach().numpy(), teacher.eval()(x).detach().numpy()
    ce = -log_softmax_np(z_s)[np.arange(len(y)), y.numpy()].mean()
    log_p, log_q = log_softmax_np(z_t / 3), log_softmax_np(z_s / 3)
    kd = 9 * (np.exp(log_p) * (log_p - log_q)).sum(axis=1).mean()
    at = sum(ref_at(feats["s", p], feats["t", p], 2) for p in ("layer1", "layer2", "layer3"))
    expected = 0.7 * ce + 0.3 * kd + 500 * at
    # CE and KD are computed in float32 (kdlab.methods.losses), the method term in float64
    assert out.losses["loss"].item() == pytest.approx(expected, rel=1e-6)
    assert out.losses["loss_at"].item() == pytest.approx(at, rel=1e-9)
    assert out.losses["loss_hard"].item() == pytest.approx(ce, rel=1e-6)
    assert out.losses["loss_kd"].item() == pytest.approx(kd, rel=1e-5)


def test_dkd_term_is_scaled_by_the_epoch_over_the_warmup(pair):
    """mdistiller's warm-up: min(epoch / warmup, 1) with epochs counted from 1."""
    student, teacher = pair
    objective = objective_for("loss=dkd", "loss.warmup=4", student=student, teacher=teacher)
    student.eval()
    x, y = batch()
    z_t = teacher.eval()(x).detach().numpy()
    values = {}
    for epoch in (1, 2, 4, 9):
        objective.set_epoch(epoch)
        out = objective(student, x, y)
        values[epoch] = out.losses["loss_dkd"].item()
    full = ref_dkd(out.logits.detach().numpy(), z_t, y.numpy(), 1.0, 8.0, 4.0)
    assert values == pytest.approx({1: full / 4, 2: full / 2, 4: full, 9: full}, rel=1e-9)


def count_forwards(model: nn.Module) -> list[int]:
    calls = [0]
    model.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize(
    "name", ["at", "nst", "sp", "pkt", "rkd", "hint", "dkd", "dist", "ab", "ft", "fsp"]
)
def test_one_teacher_and_one_student_forward_per_step(pair, name):
    student, teacher = pair
    objective = objective_for(f"loss={name}", student=student.float(), teacher=teacher.float())
    s_calls, t_calls = count_forwards(student), count_forwards(teacher)
    x, y = batch()
    out = objective(student, x.float(), y)
    out.losses["loss"].backward()
    assert (s_calls[0], t_calls[0]) == (1, 1)
    assert torch.isfinite(out.losses["loss"])
    assert f"loss_{name}" in out.losses


def test_embedding_is_the_input_of_the_final_linear_layer(pair):
    student, teacher = pair
    objective = objective_for("loss=pkt", student=student, teacher=teacher)
    assert objective.tapped.student == ("embedding",)
    assert objective.tapped.student_shapes == ((64,),)


VGG_STAGES = ("block2", "block3", "block4", "block5")
MOBILE_STAGES = RESNET50_STAGES = ("layer1", "layer2", "layer3", "layer4")


@pytest.mark.parametrize(
    ("student", "teacher", "loss", "student_points", "teacher_points"),
    [
        ("vgg8", "vgg13", "at", VGG_STAGES, VGG_STAGES),  # RepDistiller's feat[1:-1]: f1..f4
        ("mobilenetv2", "resnet50", "nst", MOBILE_STAGES, RESNET50_STAGES),
        ("vgg8", "resnet8", "at", VGG_STAGES[:3], ("layer1", "layer2", "layer3")),  # zip
        ("shufflenetv1", "wrn_40_2", "sp", ("layer3",), ("layer3",)),  # feat[-2]
        ("mobilenetv2", "vgg13", "hint", ("layer2",), ("block3",)),  # hint_layer=2: f2
    ],
)
def test_the_zoo_is_tapped_where_the_references_tap_it(
    student, teacher, loss, student_points, teacher_points
):
    torch.manual_seed(0)
    s_model, t_model = build_model(student, 10), build_model(teacher, 10)
    objective = objective_for(f"loss={loss}", student=s_model, teacher=t_model)
    assert objective.tapped.student == student_points
    assert objective.tapped.teacher == teacher_points
    x, y = batch(2)
    out = objective(s_model, x.float(), y)
    out.losses["loss"].backward()
    assert torch.isfinite(out.losses[f"loss_{loss}"])


def test_given_points_of_unequal_count_are_refused(pair):
    student, teacher = pair
    with pytest.raises(KdlabError, match=r"got 2 student .* and 3 teacher points"):
        objective_for(
            "loss=at", "loss.student_points=[layer1,layer2]", student=student, teacher=teacher
        )


def test_the_loss_group_is_the_registry():
    cfg = compose_config("distill", ["loss=dkd", "loss.beta=2", "loss.warmup=5"])
    assert (cfg.loss.name, cfg.loss.beta, cfg.loss.warmup, cfg.loss.alpha) == ("dkd", 2, 5, 1)
    assert {"ce", "kd", "dkd", "dist", "at", "nst", "sp", "pkt", "rkd", "hint"} <= set(METHODS)


def test_kd_standardize_zscores_the_soft_terms_logits_only(pair):
    """Sun et al. 2024: each row's logits z-scored (unbiased std + 1e-7) before T; the hard
    term keeps the raw logits."""
    student, teacher = pair
    objective = objective_for("loss=kd", "loss.standardize=true", student=student, teacher=teacher)
    student.eval()
    x, y = batch()
    out = objective(student, x, y)
    z_s, z_t = out.logits.detach().numpy(), teacher.eval()(x).detach().numpy()

    def zscore(z):
        return (z - z.mean(axis=1, keepdims=True)) / (z.std(axis=1, ddof=1, keepdims=True) + 1e-7)

    p = np.exp(log_softmax_np(zscore(z_t) / 4))
    soft = -(p * log_softmax_np(zscore(z_s) / 4)).sum(axis=1).mean()
    hard = -log_softmax_np(z_s)[np.arange(len(y)), y.numpy()].mean()
    assert out.losses["loss_soft"].item() == pytest.approx(soft, rel=1e-5)
    assert out.losses["loss_hard"].item() == pytest.approx(hard, rel=1e-5)
