"""loss=mlkd against an independent float64 formula (Jin et al. CVPR 2023, as the official
KD_ours.py computes it), with its gradients; the two views through the method and the data
(data.views=weak_strong); one CLI run, and optim=dot's from the same teacher. The refusals
are rows of the bad-input catalogue."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY, read_summary, run_kdlab
from kdlab.data.augment import PadCropFlip
from kdlab.data.device_loader import DeviceLoader
from kdlab.data.normalize import Normalizer
from kdlab.data.schedule import TrainSchedule
from kdlab.data.strong_view import StrongView, cutout
from kdlab.methods.base import Outputs
from kdlab.methods.mlkd import mlkd_terms
from test_methods_losses import approx, gradcheck, randn
from test_methods_losses_features import built

CPU = torch.device("cpu")


def softmax(row, T):
    m = max(row)
    e = [math.exp((v - m) / T) for v in row]
    return [v / sum(e) for v in e]


def median(values):
    """np.percentile(values, 50): linear interpolation between the middle order statistics."""
    v, pos = sorted(values), 0.5 * (len(values) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def zscore(row):
    mean = sum(row) / len(row)
    std = math.sqrt(sum((v - mean) ** 2 for v in row) / (len(row) - 1))
    return [(v - mean) / (std + 1e-7) for v in row]


def instance(s, t, T):
    """T^2 * mean over images of KL(softmax(t/T) || softmax(s/T))."""
    total = 0.0
    for zs, zt in zip(s, t, strict=True):
        p, q = softmax(zt, T), softmax(zs, T)
        total += sum(a * math.log(a / b) for a, b in zip(p, q, strict=True))
    return T * T * total / len(s)


def gram(s, t, T, level):
    """||G_t - G_s||_F^2 / n, G = P P^T (batch, n = B) or P^T P (class, n = C)."""
    P_s = [softmax(r, T) for r in s]
    P_t = [softmax(r, T) for r in t]
    if level == "class":
        P_s, P_t = (
            [list(c) for c in zip(*P_s, strict=True)],
            [list(c) for c in zip(*P_t, strict=True)],
        )
    n = len(P_s)
    total = 0.0
    for a in range(n):
        for b in range(n):
            g_t = sum(x * y for x, y in zip(P_t[a], P_t[b], strict=True))
            g_s = sum(x * y for x, y in zip(P_s[a], P_s[b], strict=True))
            total += (g_t - g_s) ** 2
    return total / n


def ref_mlkd(s_w, s_s, t_w, t_s, labels, temps, ce_weight, weight, standardize, official):
    """The paper's three levels with the official code's scalar masks (module doc of
    kdlab.methods.mlkd): the whole loss and its CE part."""
    s_w, s_s, t_w, t_s = (x.tolist() for x in (s_w, s_s, t_w, t_s))
    p = [softmax(r, 1.0) for r in t_w]
    confidence = [max(r) for r in p]
    per_class = [sum(r[c] for r in p) for c in range(len(p[0]))]
    m = sum(c <= median(confidence) for c in confidence) / len(confidence)
    m_c = sum(c <= median(per_class) for c in per_class) / len(per_class)
    z = [[zscore(r) for r in x] if standardize else x for x in (s_w, s_s, t_w, t_s)]
    weak = sum(instance(z[0], z[2], T) for T in temps)
    strong = sum(
        instance(z[0], z[2], T) if official and k in (3, 4) else instance(z[1], z[3], T)
        for k, T in enumerate(temps)
    )
    batch = sum(gram(s_w, t_w, T, "batch") for T in temps)
    classes = sum(gram(s_w, t_w, T, "class") for T in temps)
    pairs = [(r, y) for rows in (s_w, s_s) for r, y in zip(rows, labels.tolist(), strict=True)]
    hard = -sum(math.log(softmax(r, 1.0)[y]) for r, y in pairs) / len(labels)
    loss = ce_weight * hard + weight * (m * weak + strong + m * batch + m_c * classes)
    return loss, hard


CASES = [  # B, C, standardize, official_strong_kd
    (7, 10, False, True),
    (8, 5, True, True),
    (12, 30, False, False),
    (5, 60, True, False),
]


@pytest.mark.parametrize(("B", "C", "standardize", "official"), CASES)
def test_mlkd_matches_the_formula(B, C, standardize, official):
    views = [randn(B, C, seed=B + k, scale=3.0) for k in range(4)]
    labels = torch.arange(B) % C
    over = [f"loss.standardize={standardize}", f"loss.official_strong_kd={official}"]
    mlkd, _, _ = built("mlkd", "resnet8", "resnet8", "data.views=weak_strong", *over)
    temps = [mlkd.T, *mlkd.temperatures]
    assert temps == [4.0, 3.0, 5.0, 2.0, 6.0] and (mlkd.ce_weight, mlkd.weight) == (0.1, 0.9)
    student, teacher = [Outputs(v) for v in views[:2]], [Outputs(v) for v in views[2:]]
    losses = mlkd.combine(student, teacher, labels, mlkd.loss(student, teacher, labels))
    loss, hard = ref_mlkd(*views, labels, temps, 0.1, 0.9, standardize, official)
    assert approx(losses["loss"], loss) and approx(losses["loss_hard"], hard)
    task, distillation = mlkd.split(losses)  # what optim=dot steps apart
    assert approx(task, 0.1 * hard) and approx(task + distillation, loss)
    parts = ("loss_mlkd_instance", "loss_mlkd_batch", "loss_mlkd_class")
    assert approx(sum(losses[k] for k in parts), losses["loss_mlkd"])


@pytest.mark.parametrize("standardize", [False, True])
def test_mlkd_gradients_reach_both_student_views(standardize):
    s_w, s_s, t_w, t_s = (randn(6, 7, seed=k, scale=2.0) for k in range(4))
    temps = [4.0, 3.0, 5.0, 2.0, 6.0]

    def total(weak, strong):
        return mlkd_terms((weak, strong), (t_w, t_s), temps, standardize)["loss_mlkd"]

    gradcheck(lambda x: total(x, s_s), s_w)
    gradcheck(lambda x: total(s_w, x), s_s)


def test_mlkd_runs_both_models_on_each_view_and_evaluates_on_one():
    mlkd, student, _ = built("mlkd", "cnn_student", "cnn_student", "data.views=weak_strong")
    student.eval()  # the same logits on every call
    x, y = torch.randn(8, 3, 32, 32), torch.arange(4)
    out = mlkd(student, x, y)
    weak, strong = F.cross_entropy(student(x[:4]), y), F.cross_entropy(student(x[4:]), y)
    torch.testing.assert_close(out.logits, student(x[:4]))
    torch.testing.assert_close(out.losses["loss_hard"], weak + strong)
    torch.testing.assert_close(out.split[0], 0.1 * (weak + strong))
    single = mlkd(student, x[:4], y)  # an evaluation batch: its one view stands for both
    torch.testing.assert_close(single.losses["loss_hard"], 2 * weak)


def test_the_strong_view_is_drawn_apart_from_the_weak_one_and_replays_from_the_seed():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8, generator=g)
    strong = StrongView(PadCropFlip(4), fill=(125, 123, 114))
    loader = DeviceLoader(images, torch.arange(6), TrainSchedule(6, 3, seed=0, augment_pad=4),
                          Normalizer((0.0,) * 3, (1 / 255,) * 3, CPU), CPU, strong)  # fmt: skip
    loader.set_epoch(1)
    torch.manual_seed(5)
    first = [(x.clone(), y) for x, y in loader]
    torch.manual_seed(5)
    again = [x for x, _ in loader]
    for (x, y), x2 in zip(first, again, strict=True):
        assert x.shape == (6, 3, 16, 16) and y.shape == (3,)
        assert torch.equal(x, x2)  # a resumed run's global RNG replays the views
        assert not torch.equal(x[:3], x[3:])  # the strong view is not the weak one


def test_cutout_fills_a_clipped_square_with_the_mean_colour():
    images = torch.zeros(64, 3, 10, 10, dtype=torch.uint8)
    out = cutout(images, 0.5, (7, 8, 9), torch.Generator().manual_seed(1))
    filled = out[:, 0] == 7
    assert torch.equal(out[:, 1] == 8, filled) and torch.equal(out[:, 2] == 9, filled)
    sides = filled.sum(dim=(1, 2))
    assert sides.min() >= 1 and sides.max() <= 6 * 6  # side < 5 px, both corners included
    for mask in filled:  # one rectangle per image
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        assert mask.sum() == len(rows) * len(cols)


# --- CLI runs of loss=mlkd and of optim=dot, from one teacher ----------------------------------
SMALL = ["model=cnn_student", *TINY, "trainer.epochs=1", "data.train_size=64", "data.test_size=32"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("mlkd_dot")
    teacher = run_kdlab("train", *SMALL, "hydra.run.dir=t", cwd=cwd)
    assert teacher.returncode == 0, teacher.stderr
    return cwd


def test_kdlab_distill_trains_mlkd_on_weak_and_strong_views(workdir):
    mlkd = ["loss=mlkd", "data.views=weak_strong", "loss.standardize=true", "teacher.ckpt=t"]
    proc = run_kdlab("distill", *SMALL, *mlkd, "hydra.run.dir=mlkd", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    summary = read_summary(workdir / "mlkd")
    parts = {"loss_hard", "loss_mlkd_instance", "loss_mlkd_batch", "loss_mlkd_class"}
    assert parts <= set(summary)
    assert summary["method_settings"]["standardize"] is True
    assert "data.views=weak_strong" in summary["teacher"]["logit_cache_off"]


def test_kdlab_distill_trains_with_dot_from_the_logit_cache(workdir):
    proc = run_kdlab("distill", *SMALL, "optim=dot", "teacher.ckpt=t", "hydra.run.dir=dot",
                     cwd=workdir)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = read_summary(workdir / "dot")
    assert summary["teacher"]["logit_cache"]["views_computed"] > 0
    assert "optim=dot" in summary["overrides"]
