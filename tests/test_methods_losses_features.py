"""CAT-KD, ICKD, SRD and KDSVD against the independent float64 formulas of
methods_formulas_features.py (values and gradients), and their classes on zoo models: the
pre-pool map they tap, the classifiers they read and the modules they train."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdlab.errors import KdlabError
from kdlab.methods.base import MethodContext, Outputs
from kdlab.methods.catkd import cat_loss, class_activation_maps
from kdlab.methods.ickd import ICKDEmbed, ickd_loss
from kdlab.methods.kdsvd import kdsvd_loss
from kdlab.methods.registry import method
from kdlab.methods.srd import SRDConnector, srd_loss
from kdlab.methods.teacher import FrozenTeacher
from kdlab.models import build_model
from kdlab.runs.preflight import compose_config
from methods_formulas_features import (
    ref_batch_norm,
    ref_cams,
    ref_catkd,
    ref_conv1x1,
    ref_ickd,
    ref_kdsvd,
    ref_pooled,
    ref_srd,
)
from test_methods_losses import approx, gradcheck, randn


def built(name: str, student: str, teacher: str, *overrides: str):
    """Method `name` on a fresh `student` and `teacher` (10 classes, 32x32), and the two."""
    torch.manual_seed(0)
    s, t = build_model(student, 10), build_model(teacher, 10)
    cfg = compose_config("distill", [f"model={student}", f"loss={name}", *overrides])
    context = MethodContext(FrozenTeacher(t), s, cfg.T, cfg.alpha, 32, 0.0)
    return method(name)(cfg.loss, context), s, t


def outputs(model, points, x) -> Outputs:
    from kdlab.methods.points import run_tapped

    return Outputs(*run_tapped(model, x, points))


# --- CAT-KD --------------------------------------------------------------------------------

CATKD_CASES = [  # C_s, C_t, K, H_s, H_t, r, normalize
    (5, 6, 7, 4, 4, 2, False),
    (5, 6, 7, 4, 8, 4, True),
    (3, 4, 5, 5, 7, 2, True),
    (3, 4, 5, 5, 7, 3, False),
]


def catkd_inputs(case, seed):
    c_s, c_t, k, h_s, h_t = case[:5]
    return (
        randn(3, c_s, h_s, h_s, seed=seed),
        randn(3, c_t, h_t, h_t, seed=seed + 1).relu(),
        randn(k, c_s, seed=seed + 2, scale=0.5),
        randn(k, c_t, seed=seed + 3, scale=0.5),
    )


@pytest.mark.parametrize("case", CATKD_CASES)
def test_catkd_loss_matches_the_formula(case):
    x_s, x_t, w_s, w_t = catkd_inputs(case, seed=len(case) + case[3])
    r, normalize = case[5:]
    cams_s, cams_t = class_activation_maps(x_s, w_s), class_activation_maps(x_t, w_t)
    np.testing.assert_allclose(cams_t.numpy(), ref_cams(x_t.numpy(), w_t.numpy()), atol=1e-13)
    got = cat_loss(cams_s, cams_t, r, normalize)
    assert got.dtype == torch.float64
    expected = ref_catkd(x_s.numpy(), x_t.numpy(), w_s.numpy(), w_t.numpy(), r, normalize)
    assert approx(got, expected, rel=1e-12)


@pytest.mark.parametrize("normalize", [False, True])
def test_catkd_gradients_reach_the_student_map_and_classifier_weight(normalize):
    x_s, x_t, w_s, w_t = catkd_inputs((2, 3, 4, 4, 8), seed=3)
    cams_t = class_activation_maps(x_t, w_t)
    gradcheck(lambda x: cat_loss(class_activation_maps(x, w_s), cams_t, 2, normalize), x_s)
    gradcheck(lambda w: cat_loss(class_activation_maps(x_s, w), cams_t, 2, normalize), w_s)


def test_catkd_takes_the_pre_pool_maps_through_the_classifiers_without_bias():
    """WRN student (its head's BN-ReLU map) and ResNet teacher: the method's term is the
    formula on the maps the classifiers pool and their weights, the teacher's bias left out;
    the student's classifier weight gets a gradient but is no parameter of the method."""
    catkd, student, teacher = built("catkd", "wrn_16_1", "resnet14")
    assert catkd.tapped.student == ("prepool",) and list(catkd.parameters()) == []
    x = randn(4, 3, 32, 32, seed=5, dtype=torch.float32)
    student.train()
    s = outputs(student, catkd.tapped.student, x)
    with torch.no_grad():
        t = outputs(teacher.eval(), catkd.tapped.teacher, x)
    pooled = s.features[0].mean(dim=(2, 3))
    torch.testing.assert_close(pooled @ student.head[-1].weight.T + student.head[-1].bias, s.logits)
    assert s.features[0].min() >= 0  # after the head's ReLU, not the raw last stage
    got = catkd.loss(s, t, torch.zeros(4, dtype=torch.long))
    expected = ref_catkd(
        *(a.detach().double().numpy() for a in (s.features[0], t.features[0])),
        student.head[-1].weight.detach().double().numpy(),
        teacher.head[-1].weight.double().numpy(),
        2,
        False,
    )
    assert approx(got.detach(), expected, rel=1e-5)
    got.backward()
    assert student.head[-1].weight.grad.abs().sum() > 0
    assert student.head[-1].bias.grad is None


def test_catkd_refuses_a_tapped_map_its_classifier_does_not_take():
    with pytest.raises(KdlabError, match=r"student's classifier \(64 inputs\).*16 channels"):
        built("catkd", "resnet8", "resnet14", "loss.student_points=[layer1]")


# --- ICKD ----------------------------------------------------------------------------------


def embedded_formula(embed, x):
    """The embed (1x1 conv, BN in training mode) by the formulas."""
    w, gamma, beta = (p.detach().double().numpy() for p in embed.parameters())
    return ref_batch_norm(ref_conv1x1(x.detach().numpy(), w), gamma, beta)


@pytest.mark.parametrize(("student", "teacher"), [((5, 4), (7, 4)), ((6, 6), (4, 3))])
def test_ickd_loss_through_the_embed_matches_the_formula(student, teacher):
    """(channels, size) of each side: the sizes may differ, the Gram is C x C."""
    torch.manual_seed(0)
    embed = ICKDEmbed(student[0], teacher[0]).double().train()
    torch.nn.init.normal_(embed.bn.weight, 1.0, 0.2)
    torch.nn.init.normal_(embed.bn.bias, 0.0, 0.2)
    x = randn(3, student[0], student[1], student[1], seed=1)
    t = randn(3, teacher[0], teacher[1], teacher[1], seed=2).relu()
    got = ickd_loss(embed(x), t)
    assert got.dtype == torch.float64
    expected = ref_ickd(embedded_formula(embed, x), t.numpy())
    assert approx(got.detach(), expected, rel=1e-11)


def test_ickd_gradients_through_the_embed_and_teacher_scale_invariance():
    torch.manual_seed(0)
    embed = ICKDEmbed(3, 4).double().train()
    t = randn(2, 4, 3, 3, seed=2).relu()
    gradcheck(lambda x: ickd_loss(embed(x), t), randn(2, 3, 4, 4, seed=1))
    gradcheck(
        lambda w: ickd_loss(torch.nn.functional.conv2d(randn(2, 3, 4, 4, seed=1), w), t),
        randn(4, 3, 1, 1, seed=3),
    )
    s = randn(2, 4, 4, 4, seed=4)
    assert approx(ickd_loss(s, 3.0 * t), ickd_loss(s, t), rel=1e-12)


def test_ickd_embeds_the_student_pre_pool_map_to_the_teacher_channels():
    """ResNet student, WRN teacher: the teacher's map is its head's BN-ReLU output (ICKD's own
    WRN returns it as feat[-2]); the embed is the method's only module."""
    ickd, _, _ = built("ickd", "resnet8", "wrn_16_2")
    assert ickd.tapped.teacher == ("prepool",) and ickd.tapped.teacher_shapes == ((128, 8, 8),)
    assert (ickd.embed.conv.in_channels, ickd.embed.conv.out_channels) == (64, 128)
    assert {n for n, _ in ickd.named_parameters()} == {
        "embed.conv.weight",
        "embed.bn.weight",
        "embed.bn.bias",
    }


# --- SRD -----------------------------------------------------------------------------------


def srd_inputs(h_s, h_t, seed):
    """A connected student map, the teacher's map and classifier, its logits (of its map)."""
    s = randn(3, 6, h_s, h_s, seed=seed).relu()
    t = randn(3, 6, h_t, h_t, seed=seed + 1).relu()
    w, b = randn(5, 6, seed=seed + 2, scale=0.5), randn(5, seed=seed + 3)
    z_t = torch.from_numpy(ref_pooled(t.numpy()) @ w.numpy().T + b.numpy())
    return s, t, z_t, w, b


@pytest.mark.parametrize(("h_s", "h_t", "feat_weight"), [(4, 4, 1.0), (2, 4, 10.0), (3, 5, 0.0)])
def test_srd_loss_matches_the_formula(h_s, h_t, feat_weight):
    s, t, z_t, w, b = srd_inputs(h_s, h_t, seed=h_s + h_t)
    got = srd_loss(s, t, z_t, w, b, feat_weight)
    assert got.dtype == torch.float64
    expected = ref_srd(s.numpy(), t.numpy(), w.numpy(), b.numpy(), z_t.numpy(), feat_weight)
    assert approx(got, expected, rel=1e-12)


def test_srd_connector_matches_the_formula_and_passes_gradients():
    torch.manual_seed(0)
    connector = SRDConnector(4, 6).double().train()
    assert connector.bn.weight.eq(1).all() and connector.bn.bias.eq(0).all()
    x = randn(3, 4, 4, 4, seed=7)
    w, gamma, beta = (p.detach().numpy() for p in connector.parameters())
    expected = np.maximum(ref_batch_norm(ref_conv1x1(x.numpy(), w), gamma, beta), 0.0)
    np.testing.assert_allclose(connector(x).detach().numpy(), expected, atol=1e-12)
    _, t, z_t, w_t, b_t = srd_inputs(4, 4, seed=8)
    gradcheck(lambda x: srd_loss(connector(x), t, z_t, w_t, b_t), x)


def test_srd_reads_the_teachers_classifier_and_trains_only_its_connector():
    """WRN teacher: its pre-pool map (after its head's BN-ReLU) has the classifier's width."""
    srd, student, teacher = built("srd", "resnet8", "wrn_16_2")
    (classifier,) = srd.teacher_classifier
    assert classifier is teacher.head[-1] and srd.tapped.teacher_shapes == ((128, 8, 8),)
    assert {n.split(".")[0] for n, _ in srd.named_parameters()} == {"connector"}
    x = randn(4, 3, 32, 32, seed=5, dtype=torch.float32)
    s = outputs(student.train(), srd.tapped.student, x)
    with torch.no_grad():
        t = outputs(teacher.eval(), srd.tapped.teacher, x)
    got = srd.loss(s, t, torch.zeros(4, dtype=torch.long))
    expected = srd_loss(
        srd.connector(s.features[0]), t.features[0], t.logits, classifier.weight, classifier.bias
    )
    assert approx(got.detach(), expected.detach(), rel=1e-6)
    got.backward()
    assert classifier.weight.grad is None and srd.connector.conv.weight.grad.abs().sum() > 0


# --- KDSVD ---------------------------------------------------------------------------------

STAGES = [(4, 4), (5, 3), (6, 3)]  # (C, H = W) per stage: HW >= C, thin SVDs of C vectors


def stage_maps(seed, shapes=STAGES, batch=3):
    """Each side's post-ReLU stage maps, float64."""
    student = [randn(batch, c, h, h, seed=seed + i).relu() for i, (c, h) in enumerate(shapes)]
    teacher = [randn(batch, c, h, h, seed=seed + 9 + i).relu() for i, (c, h) in enumerate(shapes)]
    return student, teacher


def separated(batch, c, h, seed):
    """A (batch, c, h, h) map whose (HW, C) matrices have singular values 8, 4, 2, ...: the
    SVD's gradient is smooth there (it is not at repeated singular values)."""
    g = torch.Generator().manual_seed(seed)
    r = min(h * h, c)
    s = torch.diag(8.0 * 0.5 ** torch.arange(r, dtype=torch.float64))
    out = []
    for _ in range(batch):
        u = torch.linalg.qr(torch.randn(h * h, r, generator=g, dtype=torch.float64))[0]
        v = torch.linalg.qr(torch.randn(c, r, generator=g, dtype=torch.float64))[0]
        out.append((u @ s @ v.T).T.reshape(c, h, h))
    return torch.stack(out)


def numpy_maps(maps):
    return [f.detach().numpy() for f in maps]


@pytest.mark.parametrize(("k", "seed"), [(1, 0), (1, 1), (2, 2)])
@pytest.mark.parametrize("layout", ["channels", "mdistiller"])
def test_kdsvd_loss_matches_the_formula(k, seed, layout):
    student, teacher = stage_maps(seed)
    got = kdsvd_loss(student, teacher, k, "canonical", layout)
    assert got.dtype == torch.float64
    expected = ref_kdsvd(numpy_maps(student), numpy_maps(teacher), k, layout)
    assert approx(got, expected, rel=1e-10, abs=1e-13)


def test_kdsvd_with_the_svd_sign_is_the_formula_with_the_backends_teacher_signs():
    """The official behaviour: the teacher's vectors keep the sign torch's SVD gives them (at
    this seed the backend's signs differ between samples, so the two choices differ)."""
    student, teacher = stage_maps(6)
    signs = []
    for f in teacher:
        v = torch.linalg.svd(f.flatten(2).transpose(1, 2), full_matrices=False)[2][:, :1, :]
        largest = v.abs().argmax(dim=2, keepdim=True)
        signs.append(torch.sign(torch.gather(v, 2, largest))[:, :, 0].numpy())
    got = kdsvd_loss(student, teacher, 1, "svd")
    expected = ref_kdsvd(numpy_maps(student), numpy_maps(teacher), 1, teacher_signs=signs)
    assert approx(got, expected, rel=1e-10, abs=1e-13)
    assert not approx(got, kdsvd_loss(student, teacher), rel=1e-3)


def test_kdsvd_canonical_sign_makes_the_loss_independent_of_either_maps_sign_and_precision():
    student, teacher = stage_maps(2)
    base = kdsvd_loss(student, teacher)
    assert approx(kdsvd_loss(student, [-f for f in teacher]), base, rel=1e-10)
    assert approx(kdsvd_loss([-f for f in student], teacher), base, rel=1e-10)
    single = kdsvd_loss([f.float() for f in student], [f.float() for f in teacher])
    assert single.dtype == torch.float32 and approx(single, base, rel=1e-4)


@pytest.mark.parametrize("sign", ["canonical", "svd"])
def test_kdsvd_gradients_of_each_stage(sign):
    student = [separated(2, c, h, seed=i) for i, (c, h) in enumerate(STAGES)]
    teacher = [separated(2, c, h, seed=10 + i) for i, (c, h) in enumerate(STAGES)]
    for i in range(len(STAGES)):

        def loss(x, i=i):
            return kdsvd_loss([*student[:i], x, *student[i + 1 :]], teacher, 1, sign)

        gradcheck(loss, student[i])


def test_kdsvd_refuses_stages_of_unequal_widths_and_unknown_choices():
    with pytest.raises(KdlabError, match=r"loss=kdsvd relates .* channels agree .*\(16, 32, 32\)"):
        built("kdsvd", "resnet8", "wrn_16_2")
    kdsvd, _, _ = built("kdsvd", "resnet8", "resnet14", "loss.layout=mdistiller")
    assert kdsvd.tapped.student == ("layer1", "layer2", "layer3")
    for bad in ("loss.teacher_sign=backend", "loss.layout=rows", "loss.k=0"):
        with pytest.raises(KdlabError, match=bad.split("=")[0]):
            compose_config("distill", ["loss=kdsvd", bad]).loss.check()
