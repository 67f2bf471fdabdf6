"""OFD and ReviewKD: their losses against independent float64 formulas (numpy, written from the
references' definitions), OFD's margin against a numerical integral and samples of the Gaussian,
the pre-activation taps, the trainable modules, and one CLI run each on tiny data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from conftest import TINY, read_summary, run_kdlab
from kdlab.engine.checkpoint import load_checkpoint
from kdlab.errors import KdlabError
from kdlab.methods.base import MethodContext, Outputs
from kdlab.methods.ofd import ofd_loss, ofd_margin
from kdlab.methods.registry import method
from kdlab.methods.reviewkd import ABF, hcl_loss
from kdlab.methods.teacher import FrozenTeacher
from kdlab.models import FeatureTap, build_model, check_feature_point
from kdlab.models.preact import preact_modules, preact_points
from test_cli import assert_one_line_error
from test_methods_losses import gradcheck, randn

# --- OFD's margin --------------------------------------------------------------------------


def ref_negative_mean(s: float, m: float) -> float:
    """E[x | x < 0] for x ~ N(m, s^2) by the trapezoid rule on [m - 12 s, 0]."""
    x = np.linspace(min(m, 0.0) - 12 * s, 0.0, 400_001)
    density = np.exp(-0.5 * ((x - m) / s) ** 2)
    return float(np.trapezoid(x * density, x) / np.trapezoid(density, x))


# (gamma, beta) pairs: P(x < 0) from ~0.999 down to ~1e-5 (the -3 s branch), gamma < 0 too
BN = [(1.0, 0.0), (0.5, 1.0), (2.0, -1.0), (-1.5, 0.3), (0.9, 0.2), (0.3, -0.9), (1.0, 2.5)]
BN_FAR = [(1.0, 4.0), (0.25, 1.5), (-2.0, 9.0)]  # P(x < 0) <= 0.001: margin -3 |gamma|


def test_ofd_margin_is_the_mean_of_the_negative_part_by_numerical_integration():
    gamma = torch.tensor([g for g, _ in BN], dtype=torch.float64)
    beta = torch.tensor([b for _, b in BN], dtype=torch.float64)
    got = ofd_margin(gamma, beta)
    expected = [ref_negative_mean(abs(g), b) for g, b in BN]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-8)
    assert (got < 0).all()


def test_ofd_margin_is_minus_three_std_where_the_negative_tail_is_below_a_thousandth():
    gamma = torch.tensor([g for g, _ in BN_FAR], dtype=torch.float64)
    beta = torch.tensor([b for _, b in BN_FAR], dtype=torch.float64)
    np.testing.assert_allclose(ofd_margin(gamma, beta).numpy(), [-3.0, -0.75, -6.0], rtol=1e-15)


def test_ofd_margin_matches_samples_of_the_bn_output_and_keeps_the_dtype():
    """BN output = gamma * x_hat + beta, x_hat ~ N(0, 1): the mean of its negative samples."""
    rng = np.random.default_rng(0)
    gamma = torch.tensor([0.7, 1.3, -0.4])
    beta = torch.tensor([0.2, -0.5, 0.1])
    got = ofd_margin(gamma, beta)
    assert got.dtype == torch.float32
    for g, b, margin in zip(gamma.tolist(), beta.tolist(), got.tolist(), strict=True):
        samples = g * rng.standard_normal(2_000_000) + b
        negative = samples[samples < 0]
        assert margin == pytest.approx(
            negative.mean(), abs=4 * negative.std() / len(negative) ** 0.5
        )


# --- OFD's loss ----------------------------------------------------------------------------


def block_mean(x: np.ndarray, h: int, w: int) -> np.ndarray:
    """Average-pool (B, C, H, W) to (h, w) when h, w divide H, W."""
    b, c, big_h, big_w = x.shape
    return x.reshape(b, c, h, big_h // h, w, big_w // w).mean(axis=(3, 5))


def ref_ofd(s: np.ndarray, t: np.ndarray, margin: np.ndarray) -> tuple[float, np.ndarray]:
    """mdistiller's feat_loss (three masked terms), summed over C, H, W, averaged over the
    batch, and its gradient with respect to s."""
    t = block_mean(t, *s.shape[2:])
    m = margin.reshape(1, -1, 1, 1)
    below = (s > m) & (t <= m)  # the target is under the margin: pull s down to the margin
    middle = (s > t) & (t > m) & (t <= 0)  # a negative target above the margin, s above it
    positive = t > 0
    loss = (s - m) ** 2 * below + (s - t) ** 2 * middle + (s - t) ** 2 * positive
    grad = 2 * (s - m) * below + 2 * (s - t) * (middle | positive)
    batch = s.shape[0]
    return float(loss.sum() / batch), grad / batch


OFD_SHAPES = [  # (student, teacher): equal maps, a teacher twice as large, non-square maps
    ((2, 3, 4, 4), (2, 3, 4, 4)),
    ((3, 5, 4, 4), (3, 5, 8, 8)),
    ((4, 2, 3, 5), (4, 2, 3, 5)),
    ((2, 4, 2, 2), (2, 4, 4, 6)),
]


@pytest.mark.parametrize(("s_shape", "t_shape"), OFD_SHAPES)
def test_ofd_loss_is_mdistillers_partial_l2_with_its_gradient(s_shape, t_shape):
    s = randn(*s_shape, seed=1)
    t = randn(*t_shape, seed=2)
    margin = -torch.rand(s_shape[1], generator=torch.Generator().manual_seed(3), dtype=s.dtype)
    expected, expected_grad = ref_ofd(s.numpy(), t.numpy(), margin.numpy())
    s.requires_grad_(True)
    got = ofd_loss(s, t, margin)
    got.backward()
    assert float(got.detach()) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(s.grad.numpy(), expected_grad, rtol=1e-12, atol=1e-15)
    gradcheck(lambda x: ofd_loss(x, t, margin), s.detach())


def test_ofd_loss_skips_a_student_below_a_negative_target_and_runs_in_float32():
    t = torch.tensor([-0.5, -2.0, 1.0, -0.5]).reshape(1, 4, 1, 1)
    margin = torch.full((4,), -1.0)
    s = torch.tensor([-0.9, -1.5, 0.0, 0.5]).reshape(1, 4, 1, 1)
    # s <= t' <= 0 costs nothing (channels 0, 1: t' = -0.5, -1); 1: (0 - 1)^2; 0.5 > -0.5: 1
    got = ofd_loss(s, t, margin)
    assert got.dtype == torch.float32
    assert float(got) == pytest.approx(0.0 + 0.0 + 1.0 + 1.0)


# --- ReviewKD's HCL and ABF ----------------------------------------------------------------


def ref_hcl(s: np.ndarray, t: np.ndarray) -> float:
    """The full-map MSE and the pooled MSEs at 4, 2, 1 below the map's size, weighted 1, 1/2,
    1/4, ... for the levels used, divided by the sum of the weights."""
    terms, weights = [((s - t) ** 2).mean()], [1.0]
    for level in (4, 2, 1):
        if level < min(s.shape[2:]):
            pooled = block_mean(s, level, level) - block_mean(t, level, level)
            terms.append((pooled**2).mean())
            weights.append(weights[-1] / 2)
    return float(sum(w * x for w, x in zip(weights, terms, strict=True)) / sum(weights))


@pytest.mark.parametrize(
    "shape", [(2, 3, 8, 8), (2, 3, 4, 4), (3, 2, 1, 1), (2, 2, 16, 8), (2, 3, 2, 2)]
)
def test_hcl_loss_matches_the_pyramid_formula_with_its_gradient(shape):
    s, t = randn(*shape, seed=4), randn(*shape, seed=5, scale=2)
    assert float(hcl_loss(s, t)) == pytest.approx(ref_hcl(s.numpy(), t.numpy()), rel=1e-12)
    gradcheck(lambda x: hcl_loss(x, t), s)


def test_hcl_loss_weights_an_8x8_map_as_the_references():
    s, t = randn(2, 3, 8, 8, seed=6), randn(2, 3, 8, 8, seed=7)
    mse = [
        ((block_mean(s.numpy(), k, k) - block_mean(t.numpy(), k, k)) ** 2).mean()
        for k in (8, 4, 2, 1)
    ]
    expected = (mse[0] + mse[1] / 2 + mse[2] / 4 + mse[3] / 8) / (1 + 1 / 2 + 1 / 4 + 1 / 8)
    assert float(hcl_loss(s, t)) == pytest.approx(expected, rel=1e-12)


def upsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Nearest-neighbour upsampling by an integer factor."""
    return x.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)


def test_abf_fuses_with_two_attention_maps_then_resizes_to_the_teacher():
    torch.manual_seed(0)
    abf = ABF(4, 3, 5, fuse=True).double().eval()
    x, review = randn(2, 4, 4, 4, seed=8), randn(2, 3, 2, 2, seed=9)
    out, fused = abf(x, review, (8, 8))
    reduced, up = abf.reduce(x), upsample(review, 2)
    z = abf.attention(torch.cat([reduced, up], dim=1))
    expected_fused = upsample(reduced * z[:, 0:1] + up * z[:, 1:2], 2)
    torch.testing.assert_close(fused, expected_fused, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out, abf.output(expected_fused), rtol=1e-12, atol=1e-12)
    assert out.shape == (2, 5, 8, 8)


# --- the pre-activation taps ---------------------------------------------------------------


LINEAR_STAGES = ("mobilenetv2", "shufflenetv2")  # no ReLU ends their stages


@pytest.mark.parametrize(
    "arch",
    ["resnet8", "resnet50", "wrn_16_2", "cnn_student", "shufflenetv1", *LINEAR_STAGES],
)
def test_preact_points_are_the_relu_inputs_and_their_bn_feeds_them(arch):
    """ResNet, ShuffleNetV1, plain CNN: ReLU(point) is the stage output; WRN: point = BN(stage
    output); MobileNetV2 and ShuffleNetV2: the point is the stage output itself."""
    torch.manual_seed(0)
    model = build_model(arch, 10).eval()
    points = preact_points(model)
    stages = [p.removesuffix(".preact") for p in points]
    assert len(points) >= 3
    with FeatureTap(model, [*points, *stages]) as tap:
        model(torch.randn(2, 3, 32, 32))
    for point, stage in zip(points, stages, strict=True):
        pre, out = tap.features[point], tap.features[stage]
        _, bn = preact_modules(model, point)
        if arch == "shufflenetv2":  # two branches shuffled: no one BN describes the output
            assert bn is None
        else:
            assert isinstance(bn, torch.nn.BatchNorm2d) and bn.num_features == pre.shape[1]
        if arch.startswith("wrn"):
            torch.testing.assert_close(pre, bn(out))
        elif arch in LINEAR_STAGES:
            torch.testing.assert_close(pre, out)
        else:
            torch.testing.assert_close(pre.relu(), out)
            assert (pre < 0).any()  # a copy taken before the in-place ReLU


def test_a_model_without_preact_points_says_so_in_one_line():
    model = build_model("torchvision", 10, name="resnet18")
    assert preact_points(model) == ()
    with pytest.raises(KdlabError, match=r"no pre-activation point 'layer1\.preact'.*none"):
        check_feature_point(model, "layer1.preact")


# --- the objectives ------------------------------------------------------------------------


def objective(name: str, student: str = "resnet8", teacher: str = "resnet14", seed: int = 0, **kw):
    torch.manual_seed(seed)
    s, t = build_model(student, 10), FrozenTeacher(build_model(teacher, 10))
    chosen = method(name)
    settings = chosen.settings_class(**kw)
    return chosen(settings, MethodContext(t, s, 4.0, 0.1, 16, 0.0)), s


def run(model, x, points):
    with torch.no_grad(), FeatureTap(model, points) as tap:
        logits = model(x)
    return Outputs(logits, [tap.features[p] for p in points])


def test_ofd_weighs_its_layers_by_halves_with_margins_from_the_teachers_bn():
    obj, student = objective("ofd")
    assert obj.tapped.teacher == ("layer1.preact", "layer2.preact", "layer3.preact")
    x = torch.randn(4, 3, 16, 16)
    s, t = run(student, x, obj.tapped.student), run(obj.teacher.model, x, obj.tapped.teacher)
    got = obj.loss(s, t, torch.zeros(4, dtype=torch.long))
    teacher_model = obj.teacher.model
    expected = 0.0
    for i, weight in enumerate([0.25, 0.5, 1.0]):
        bn = teacher_model.get_submodule(f"layer{i + 1}.1.body.1.1")  # resnet14: 2 blocks
        margin = ofd_margin(bn.weight, bn.bias)
        torch.testing.assert_close(obj.margins[i], margin)
        expected += weight * ofd_loss(obj.connectors[i](s.features[i]), t.features[i], margin)
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize(("name", "module"), [("ofd", "connectors"), ("reviewkd", "fusion")])
def test_the_trainable_modules_are_parameters_and_state_of_the_objective(name, module):
    """The stage's optimiser takes objective.parameters(); checkpoints keep its state_dict."""
    obj, student = objective(name, seed=0)
    params = list(getattr(obj, module).parameters())
    assert params and {id(p) for p in params} == {id(p) for p in obj.parameters()}
    state = obj.state_dict()
    assert state and all(key.startswith(f"{module}.") for key in state)
    x = torch.randn(4, 3, 16, 16)
    s, t = run(student, x, obj.tapped.student), run(obj.teacher.model, x, obj.tapped.teacher)
    other, _ = objective(name, seed=1)
    other.teacher = obj.teacher
    y = torch.zeros(4, dtype=torch.long)
    assert not torch.equal(other.loss(s, t, y), obj.loss(s, t, y))
    other.load_state_dict(state)
    torch.testing.assert_close(other.loss(s, t, y), obj.loss(s, t, y))


def test_reviewkd_taps_stages_and_embedding_and_warms_up_over_20_epochs():
    obj, student = objective("reviewkd")
    assert obj.tapped.student == ("layer1", "layer2", "layer3", "embedding")
    assert obj.tapped.teacher == ("layer1.preact", "layer2.preact", "layer3.preact", "embedding")
    abfs = obj.fusion.abfs
    assert [a.attention is None for a in abfs] == [False, False, False, True]
    assert abfs[0].reduce[0].out_channels == 64  # min(512, the student's embedding width)
    x = torch.randn(4, 3, 16, 16)
    s, t = run(student, x, obj.tapped.student), run(obj.teacher.model, x, obj.tapped.teacher)
    outputs = obj.fusion(s.features)
    assert [o.shape[1:] for o in outputs] == [(16, 16, 16), (32, 8, 8), (64, 4, 4), (64, 1, 1)]
    full = sum(
        hcl_loss(o, f if f.dim() == 4 else f[:, :, None, None])
        for o, f in zip(outputs, t.features, strict=True)
    )
    y = torch.zeros(4, dtype=torch.long)
    for epoch, factor in [(1, 1 / 20), (5, 1 / 4), (20, 1.0), (40, 1.0)]:
        obj.set_epoch(epoch)
        torch.testing.assert_close(obj.loss(s, t, y), factor * full)


def test_ofd_refuses_teacher_points_without_a_bn_before_relu():
    with pytest.raises(KdlabError) as error:
        objective("ofd", teacher_points=["layer1", "layer2", "layer3"])
    message = str(error.value)
    assert "\n" not in message
    assert "loss=ofd takes its margins from the teacher's BN" in message
    assert "'layer1'" in message and "layer1.preact, layer2.preact, layer3.preact" in message


# --- end to end ----------------------------------------------------------------------------

TEACHER = "resnet8"
SMALL = [
    *TINY,
    "data.train_size=32",
    "data.test_size=32",
    "data.val_split=0.0032",
    "trainer.epochs=1",
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A working dir whose outputs/ holds one finished (one-epoch) teacher run."""
    cwd = tmp_path_factory.mktemp("ofd_review")
    proc = run_kdlab("train", f"model={TEACHER}", *SMALL, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return cwd


@pytest.mark.parametrize(("name", "module"), [("ofd", "connectors"), ("reviewkd", "fusion")])
def test_ofd_and_reviewkd_train_write_their_part_and_checkpoint_their_modules(
    workdir, name, module
):
    run = workdir / name
    overrides = [*SMALL, f"loss={name}", f"model={TEACHER}", f"teacher.model={TEACHER}"]
    proc = run_kdlab("distill", *overrides, f"hydra.run.dir={run}", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    summary = read_summary(run)
    assert summary["loss_name"] == name
    assert {"loss", "loss_hard", "loss_kd", f"loss_{name}"} <= summary.keys()
    assert math.isfinite(summary[f"loss_{name}"]) and summary[f"loss_{name}"] > 0
    assert summary["teacher_features"][:3] == ["layer1.preact", "layer2.preact", "layer3.preact"]
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert {f"train/loss_{name}", f"val/loss_{name}"} <= last.keys()
    state = load_checkpoint(run / "checkpoints" / "last.pt")["objective"]
    assert any(key.startswith(f"{module}.") for key in state)


def test_ofd_on_a_student_without_preact_points_fails_in_one_line_and_writes_nothing(tmp_path):
    run = tmp_path / "run"
    proc = run_kdlab(
        "distill", *TINY, "loss=ofd", "model=torchvision", "model.name=resnet18",
        f"hydra.run.dir={run}", cwd=tmp_path,
    )  # fmt: skip
    assert_one_line_error(
        proc,
        "loss=ofd taps 3 pre-activation points",
        "of the student",
        "has 0 (none",
        "conv1, bn1",
    )
    assert not run.exists()
