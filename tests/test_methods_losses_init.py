"""AB, FT and FSP (the methods with an init stage): each loss against a float64 formula written
here from RepDistiller's definitions, their pre-activation taps, and what their init stages
train, in process."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from kdlab.errors import KdlabError
from kdlab.methods.ab import ab_loss
from kdlab.methods.fsp import fsp_loss
from kdlab.methods.ft import ft_loss
from kdlab.methods.registry import build_method
from kdlab.methods.teacher import FrozenTeacher
from kdlab.models import build_model
from kdlab.runs.preflight import compose_config
from methods_formulas import matched_np, pool_np
from test_methods_losses import approx, gradcheck, randn
from test_methods_objectives import batch, count_forwards, objective_for

# --- the formulas ----------------------------------------------------------------------------


def ref_ab(students, teachers, margin):
    """Per layer i of n: weight 2^(i-n+1), the margin loss summed per image, averaged over the
    batch, times 3/1000; summed over the layers."""
    n, total = len(students), 0.0
    for i, (s, t) in enumerate(zip(students, teachers, strict=True)):
        s, t = s.numpy(), t.numpy()
        per_image = []
        for s_b, t_b in zip(s, t, strict=True):
            off = np.where((s_b > -margin) & (t_b <= 0), (s_b + margin) ** 2, 0.0)
            on = np.where((s_b <= margin) & (t_b > 0), (s_b - margin) ** 2, 0.0)
            per_image.append(off.sum() + on.sum())
        total += 2.0 ** (i - n + 1) * np.mean(per_image) * 3 / 1000
    return total


def ref_ft(f_s, f_t):
    """|a_s - a_t| averaged over B * HW, a = channel mean of f^2 over HW, l2-normalised."""
    f_s, f_t = matched_np(f_s, f_t)
    total, count = 0.0, 0
    for b in range(f_s.shape[0]):
        maps = [(f[b] ** 2).mean(axis=0).ravel() for f in (f_s, f_t)]
        a_s, a_t = (m / max(np.sqrt((m * m).sum()), 1e-12) for m in maps)
        total += np.abs(a_s - a_t).sum()
        count += a_s.size
    return total / count


def ref_gram(bottom, top):
    """G[b, j, k] = mean over the pixels of top_j * bottom_k, the larger map pooled first."""
    bottom, top = bottom.numpy(), top.numpy()
    h, w = min(bottom.shape[2], top.shape[2]), min(bottom.shape[3], top.shape[3])
    bottom, top = pool_np(bottom, h, w), pool_np(top, h, w)
    g = np.zeros((top.shape[0], top.shape[1], bottom.shape[1]))
    for b in range(g.shape[0]):
        for j in range(g.shape[1]):
            for k in range(g.shape[2]):
                g[b, j, k] = (top[b, j] * bottom[b, k]).sum() / (h * w)
    return g


def ref_fsp(students, teachers):
    total = 0.0
    for i in range(len(students) - 1):
        g_s = ref_gram(students[i], students[i + 1])
        g_t = ref_gram(teachers[i], teachers[i + 1])
        total += ((g_s - g_t) ** 2).mean()
    return total


# --- the losses ------------------------------------------------------------------------------

AB_SHAPES = [
    [(2, 3, 4, 4)],
    [(3, 4, 8, 8), (3, 6, 4, 4)],
    [(2, 2, 6, 6), (2, 3, 4, 4), (2, 5, 2, 2)],
]


@pytest.mark.parametrize("shapes", AB_SHAPES)
@pytest.mark.parametrize("margin", [1.0, 0.5])
def test_ab_matches_the_formula(shapes, margin):
    students = [randn(*s, seed=i, scale=1.5) for i, s in enumerate(shapes)]
    teachers = [randn(*s, seed=10 + i) for i, s in enumerate(shapes)]
    assert approx(ab_loss(students, teachers, margin), ref_ab(students, teachers, margin))
    last = len(shapes) - 1
    gradcheck(lambda x: ab_loss([*students[:last], x], teachers, margin), students[last])


def test_ab_is_zero_once_the_student_is_past_the_margin_on_the_teachers_side():
    t = randn(2, 3, 4, 4, seed=3)
    s = torch.where(t > 0, 1.5, -1.5).double()  # |s| > m = 1 with the teacher's sign
    assert float(ab_loss([s], [t])) == 0.0
    assert float(ab_loss([-s], [t])) > 0


FT_SHAPES = [
    ((2, 4, 4, 4), (2, 6, 4, 4)),
    ((3, 3, 8, 8), (3, 5, 4, 4)),
    ((2, 2, 3, 3), (2, 4, 6, 6)),
]


@pytest.mark.parametrize(("s_shape", "t_shape"), FT_SHAPES)
def test_ft_matches_the_formula(s_shape, t_shape):
    f_s, f_t = randn(*s_shape, seed=1), randn(*t_shape, seed=2)
    assert approx(ft_loss(f_s, f_t), ref_ft(f_s, f_t))
    gradcheck(lambda x: ft_loss(x, f_t), f_s)


# Per side the stage maps in order; the channels agree point by point, the sizes need not.
FSP_SHAPES = [
    ([(2, 3, 4, 4), (2, 4, 4, 4)], [(2, 3, 4, 4), (2, 4, 4, 4)]),
    ([(2, 2, 8, 8), (2, 3, 8, 8), (2, 4, 4, 4), (2, 5, 2, 2)],) * 2,
    ([(3, 2, 6, 6), (3, 3, 3, 3), (3, 2, 3, 3)], [(3, 2, 4, 4), (3, 3, 4, 4), (3, 2, 2, 2)]),
]


@pytest.mark.parametrize(("s_shapes", "t_shapes"), FSP_SHAPES)
def test_fsp_matches_the_formula(s_shapes, t_shapes):
    students = [randn(*s, seed=i) for i, s in enumerate(s_shapes)]
    teachers = [randn(*s, seed=20 + i) for i, s in enumerate(t_shapes)]
    assert approx(fsp_loss(students, teachers), ref_fsp(students, teachers))
    gradcheck(lambda x: fsp_loss([x, *students[1:]], teachers), students[0])


def test_the_losses_compute_in_float32_from_half_precision():
    s, t = randn(2, 3, 4, 4, seed=1, dtype=torch.bfloat16), randn(2, 3, 4, 4, seed=2)
    assert ab_loss([s], [t.bfloat16()]).dtype == torch.float32
    assert ft_loss(s, t.float()).dtype == torch.float32
    assert fsp_loss([s, s], [t.bfloat16(), t.bfloat16()]).dtype == torch.float32


# --- pre-activation taps ---------------------------------------------------------------------


def test_ab_taps_pre_activations_and_a_wrn_init_stage_reaches_the_relu_in_its_head():
    """AB's points are the stages before their ReLU (RepDistiller's preact=True); a WRN's last
    one is the input of its head's BN-ReLU, so the init stage trains up to the head."""
    torch.manual_seed(0)
    student, teacher = build_model("wrn_16_1", 10), build_model("wrn_16_2", 10)
    objective = objective_for("loss=ab", student=student, teacher=teacher)
    points = ("layer1.preact", "layer2.preact", "layer3.preact")
    assert objective.tapped.student == objective.tapped.teacher == points
    init = objective.init_stage(student)
    assert init.modules == (student.stem, student.layer1, student.layer2, student.layer3,
                            student.head, objective.connectors)  # fmt: skip
    x, y = batch()
    out = init.objective(student, x.float(), y)
    out.losses["loss"].backward()
    assert student.head[0].weight.grad is not None  # the head's BN feeds layer3.preact
    assert student.head[-1].weight.grad is None  # its Linear is not in the term


# --- the objectives and their init stages ----------------------------------------------------


@pytest.fixture
def pair():
    torch.manual_seed(0)
    return build_model("resnet8", 10), build_model("resnet14", 10)


def test_ab_init_trains_the_connectors_and_the_students_layers_on_ab_alone(pair):
    student, teacher = pair
    objective = objective_for("loss=ab", student=student, teacher=teacher)
    assert (objective.weight, objective.margin) == (0.0, 1.0)  # RepDistiller's main stage
    init = objective.init_stage(student)
    assert (init.epochs, init.lr_scale) == (30, 1.0)
    assert init.modules == (student.stem, student.layer1, student.layer2, student.layer3,
                            objective.connectors)  # fmt: skip
    assert objective.fixed_modules() == (objective.connectors,)
    x, y = batch()
    out = init.objective(student, x.float(), y)
    assert out.logits is None and out.losses.keys() == {"loss", "loss_ab_init"}
    with torch.no_grad():  # the same term through the main objective's full forward
        main = objective(student.eval(), x.float(), y)
    torch.testing.assert_close(init.objective.eval()(student, x.float(), y).losses["loss"],
                               main.losses["loss_ab"])  # fmt: skip


def test_ft_init_trains_only_the_paraphraser_and_runs_no_student(pair):
    student, teacher = pair
    objective = objective_for("loss=ft", "loss.init_epochs=2", student=student, teacher=teacher)
    assert objective.weight == 200.0
    init = objective.init_stage(student)
    assert (init.epochs, init.lr_scale, init.modules) == (2, 0.2, (objective.paraphraser,))
    assert objective.fixed_modules() == (objective.paraphraser,)
    calls = count_forwards(student)
    x, y = batch()
    out = init.objective(student, x.float(), y)
    out.losses["loss"].backward()
    assert calls[0] == 0 and out.losses.keys() == {"loss", "loss_ft_rec"}
    assert all(p.grad is not None for p in objective.paraphraser.parameters())
    assert all(p.grad is None for p in objective.translator.parameters())


def test_fsp_taps_four_points_and_init_epochs_0_skips_the_init_stage(pair):
    student, teacher = pair
    objective = objective_for("loss=fsp", "loss.init_epochs=0", student=student, teacher=teacher)
    assert objective.tapped.student == ("stem", "layer1", "layer2", "layer3")
    assert objective.init_stage(student) is None
    x, y = batch()
    out = objective(student, x.float(), y)
    assert torch.isfinite(out.losses["loss_fsp"])


def test_fsp_refuses_a_pair_of_other_widths_in_one_line():
    student, teacher = build_model("resnet8", 10), build_model("resnet8x4", 10)
    with pytest.raises(KdlabError, match=r"same channels: student .* \(16, 16, 32, 64\)"):
        objective_for("loss=fsp", student=student, teacher=teacher)


@pytest.mark.parametrize(
    ("arch", "overrides", "scale", "logged"),
    [
        ("vgg8", [], 1.0, "1 of optim.lr (a VGG student vgg8"),
        ("resnet8", [], 0.2, "0.2 of optim.lr (not a VGG student resnet8"),
        ("vgg8", ["loss.init_lr_scale=0.5"], 0.5, "loss.init_lr_scale=0.5"),
    ],
)
def test_ft_init_lr_follows_repdistillers_rule_by_the_student_unless_set(
    arch, overrides, scale, logged, caplog
):
    """helper/pretrain.py @ b84f547: lr 0.01 for the ResNet/WRN students, the run's 0.05 for
    a VGG's; an explicit loss.init_lr_scale wins. Built as a run builds it (model.arch)."""
    cfg = compose_config("distill", [f"model={arch}", "loss=ft", *overrides])
    student = build_model(arch, 10)
    ft = build_method(cfg, FrozenTeacher(build_model("resnet8", 10)), student, 32)
    with caplog.at_level(logging.INFO, logger="kdlab"):
        assert ft.init_stage(student).lr_scale == scale
    assert logged in caplog.text
