"""CRD, CC and VID: the losses against independent float64 formulas (Python loops written from
RepDistiller's definitions), CRD's memory bank and negatives, and the objectives' own modules."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kdlab.errors import KdlabError
from kdlab.methods.base import MethodContext
from kdlab.methods.cc import cc_loss
from kdlab.methods.contrast_memory import ContrastMemory, draw_negatives, momentum_rows
from kdlab.methods.crd import contrast_loss, crd_loss
from kdlab.methods.registry import method
from kdlab.methods.teacher import FrozenTeacher
from kdlab.methods.vid import VidHead, vid_loss
from kdlab.models import FeatureTap, build_model
from kdlab.runs.preflight import compose_config
from methods_formulas import pool_np
from test_methods_losses import approx, gradcheck, randn


def unit_rows(*shape, seed):
    """Random rows of unit norm along the last axis (CRD's embeddings and bank rows)."""
    return F.normalize(randn(*shape, seed=seed), dim=-1)


# --- the independent formulas ----------------------------------------------------------------


def ref_contrast(p, n_data, eps=1e-7):
    """RepDistiller's ContrastLoss, one score at a time."""
    rows = p.tolist()
    noise = (len(rows[0]) - 1) / n_data
    total = 0.0
    for row in rows:
        total += math.log(row[0] / (row[0] + noise + eps))
        total += sum(math.log(noise / (q + noise + eps)) for q in row[1:])
    return -total / len(rows)


def ref_scores(v, rows, T):
    """exp(<rows[b][k], v[b]> / T) with Python sums."""
    return [
        [math.exp(sum(a * b for a, b in zip(r, vb, strict=True)) / T) for r in rb]
        for vb, rb in zip(v.tolist(), rows.tolist(), strict=True)
    ]


def ref_crd(v_s, v_t, rows_t, rows_s, n_data, T, z=(-1.0, -1.0)):
    total = 0.0
    for v, rows, zi in ((v_s, rows_t, z[0]), (v_t, rows_s, z[1])):
        e = ref_scores(v, rows, T)
        if zi <= 0:  # the first batch's estimate: the mean score times N
            zi = sum(map(sum, e)) / (len(e) * len(e[0])) * n_data
        total += ref_contrast(np.array(e) / zi, n_data)
    return total


def ref_cc(f_s, f_t):
    d = [[abs(a - b) for a, b in zip(rs, rt, strict=True)] for rs, rt in zip(f_s, f_t, strict=True)]
    if len(d) < 2:
        return 0.0
    pairs = [sum(a * b for a, b in zip(d[i], d[i + 1], strict=True)) for i in range(len(d) - 1)]
    return sum(pairs) / len(pairs)


def ref_vid(mu, t, alpha, eps):
    """1/2 [(mu - t)^2 / var_c + log var_c] over every element, var = log(1 + e^a) + eps."""
    var = [math.log1p(math.exp(a)) + eps for a in alpha.tolist()]
    mu, t = mu.numpy(), t.numpy()
    total = 0.0
    for index in np.ndindex(mu.shape):
        v = var[index[1]]
        total += 0.5 * ((mu[index] - t[index]) ** 2 / v + math.log(v))
    return total / mu.size


# --- CRD ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("batch", "k", "n_data"), [(1, 1, 2), (4, 8, 50), (6, 31, 50000)])
def test_contrast_loss_matches_the_formula(batch, k, n_data):
    p = randn(batch, 1 + k, seed=batch + k).abs() / k
    assert approx(contrast_loss(p, n_data), ref_contrast(p, n_data))
    gradcheck(lambda x: contrast_loss(x.abs() + 1e-3, n_data), p)


@pytest.mark.parametrize(("batch", "k", "dim"), [(1, 1, 3), (3, 7, 5), (5, 16, 8)])
@pytest.mark.parametrize("T", [0.07, 0.5])
def test_crd_loss_matches_the_formula(batch, k, dim, T):
    v_s, v_t = unit_rows(batch, dim, seed=1), unit_rows(batch, dim, seed=2)
    rows_t, rows_s = unit_rows(batch, 1 + k, dim, seed=3), unit_rows(batch, 1 + k, dim, seed=4)
    n_data = 40
    loss, z = crd_loss(v_s, v_t, rows_t, rows_s, n_data, T)  # z estimated from this batch
    assert approx(loss, ref_crd(v_s, v_t, rows_t, rows_s, n_data, T))
    e_s, e_t = ref_scores(v_s, rows_t, T), ref_scores(v_t, rows_s, T)
    assert approx(z[0], np.mean(e_s) * n_data) and approx(z[1], np.mean(e_t) * n_data)
    given = torch.tensor([3.0, -1.0])  # Z_s kept, Z_t estimated
    loss, z = crd_loss(v_s, v_t, rows_t, rows_s, n_data, T, given)
    assert approx(loss, ref_crd(v_s, v_t, rows_t, rows_s, n_data, T, (3.0, -1.0)))
    assert z[0].item() == 3.0 and approx(z[1], np.mean(e_t) * n_data)
    fixed = torch.tensor([5.0, 7.0], dtype=torch.float64)
    gradcheck(lambda x: crd_loss(x, v_t, rows_t, rows_s, n_data, T, fixed)[0], v_s)
    gradcheck(lambda x: crd_loss(v_s, x, rows_t, rows_s, n_data, T, fixed)[0], v_t)


def test_crd_normalisers_carry_no_gradient():
    """RepDistiller takes Z with .item(): a constant. The gradient of the estimated-Z loss is
    that of the loss with Z given as that constant."""
    v_s, v_t = unit_rows(3, 4, seed=5), unit_rows(3, 4, seed=6)
    rows_t, rows_s = unit_rows(3, 6, 4, seed=7), unit_rows(3, 6, 4, seed=8)
    grads = []
    for z in (None, crd_loss(v_s, v_t, rows_t, rows_s, 30)[1]):
        x = v_s.clone().requires_grad_(True)
        grads.append(torch.autograd.grad(crd_loss(x, v_t, rows_t, rows_s, 30, z=z)[0], x)[0])
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-12, atol=1e-12)


def test_negatives_are_uniform_over_the_others_and_never_the_positive():
    positives = torch.tensor([0, 3, 4, 4])
    drawn = draw_negatives(positives, 5, 4000)
    assert drawn.shape == (4, 4000) and drawn.dtype == torch.int64
    for row, positive in zip(drawn, positives.tolist(), strict=True):
        counts = torch.bincount(row, minlength=5)
        assert counts[positive] == 0
        others = counts[torch.arange(5) != positive].double()
        assert (others - 1000).abs().max() < 150  # 1000 each, sd ~27
    memory = ContrastMemory(n_data=5, dim=3, k=7, momentum=0.5)
    indices = memory.contrast_indices(positives)
    assert indices.shape == (4, 8) and torch.equal(indices[:, 0], positives)
    assert not (indices[:, 1:] == positives[:, None]).any()


def test_the_bank_starts_uniform_and_moves_its_rows_with_momentum_then_renormalises():
    torch.manual_seed(0)
    memory = ContrastMemory(n_data=6, dim=12, k=5, momentum=0.3).double()
    bound = 1 / math.sqrt(12 / 3)
    assert memory.student.abs().max() <= bound and memory.teacher.abs().max() <= bound
    assert memory.z.tolist() == [-1.0, -1.0]
    before = {name: getattr(memory, name).clone() for name in ("student", "teacher")}
    samples = torch.tensor([4, 1])
    new = {"student": randn(2, 12, seed=9), "teacher": randn(2, 12, seed=10)}
    memory.update(samples, new["student"], new["teacher"])
    for name, old in before.items():
        bank = getattr(memory, name)
        for row, sample in enumerate(samples.tolist()):
            moved = 0.3 * old[sample].numpy() + 0.7 * new[name][row].numpy()
            np.testing.assert_allclose(bank[sample].numpy(), moved / np.linalg.norm(moved))
        untouched = [i for i in range(6) if i not in samples.tolist()]
        assert torch.equal(bank[untouched], old[untouched])
    row = randn(1, 12, seed=11)
    np.testing.assert_allclose(momentum_rows(row, row, 0.5).norm().item(), 1.0)


def crd_objective(train_images: int, **settings):
    torch.manual_seed(0)
    student, teacher = build_model("resnet8", 10).double(), build_model("resnet8", 10).double()
    context = MethodContext(FrozenTeacher(teacher), student, 4.0, 0.1, 16, 0.0, train_images)
    crd = method("crd")
    return crd(crd.settings_class(**settings), context).double(), student, teacher


def embedding(model, x):
    with FeatureTap(model, ("embedding",)) as tap:
        model(x)
    return tap.features["embedding"]


def test_a_crd_step_contrasts_each_sample_with_its_bank_rows_and_updates_them(caplog):
    """The step's loss is crd_loss of the heads' embeddings against the bank rows of the
    sample and of its drawn negatives (the same draws, replayed from the seed); then Z is
    kept and exactly the batch's rows move. Evaluation changes nothing."""
    with caplog.at_level(logging.INFO, logger="kdlab"):
        objective, student, teacher = crd_objective(30, feat_dim=16)
    assert "loss.nce_k=16384 is more than the 29 other training images: 29 negatives" in (
        caplog.text
    )
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(4, 3, 16, 16, generator=g).double(), torch.randint(0, 10, (4,))
    samples = torch.tensor([7, 0, 29, 12])
    bank = {k: v.clone() for k, v in objective.memory.state_dict().items()}
    objective.train()
    student.eval()  # the same embeddings when recomputed below
    torch.manual_seed(2)
    out = objective(student, x, y, indices=samples)
    torch.manual_seed(2)
    indices = objective.memory.contrast_indices(samples)
    with torch.no_grad():
        v_s = objective.embed_s(embedding(student, x))
        v_t = objective.embed_t(embedding(teacher.eval(), x))
        rows_t, rows_s = bank["teacher"][indices], bank["student"][indices]
        expected, z = crd_loss(v_s, v_t, rows_t, rows_s, 30, 0.07)
    assert approx(out.losses["loss_crd"].detach(), expected, rel=1e-10)
    assert torch.equal(objective.memory.z, z)
    for side, v in (("student", v_s), ("teacher", v_t)):
        moved = momentum_rows(bank[side][samples], v, 0.5)
        torch.testing.assert_close(getattr(objective.memory, side)[samples], moved)
        others = torch.ones(30, dtype=torch.bool).index_fill(0, samples, False)
        assert torch.equal(getattr(objective.memory, side)[others], bank[side][others])
    objective(student, x, y, indices=torch.tensor([1, 2, 3, 4]))
    assert torch.equal(objective.memory.z, z)  # estimated once, then kept
    after = {k: v.clone() for k, v in objective.memory.state_dict().items()}
    objective.eval()
    loss = objective(student, x, y).losses["loss_crd"]  # no indices: images outside the bank
    assert torch.isfinite(loss)
    assert all(torch.equal(v, after[k]) for k, v in objective.memory.state_dict().items())


def test_crd_heads_and_bank_belong_to_the_objective():
    """The heads are parameters (trained with the student), the bank and Z buffers: both are
    in the objective's state_dict, which every checkpoint stores."""
    objective, _, _ = crd_objective(10)
    assert {n.split(".")[0] for n, _ in objective.named_parameters()} == {"embed_s", "embed_t"}
    assert objective.embed_s.linear.weight.shape == (128, 64)
    assert objective.embed_t.linear.weight.shape == (128, 64)
    state = objective.state_dict()
    assert state["memory.student"].shape == state["memory.teacher"].shape == (10, 128)
    assert objective.memory.k == 9


def test_crd_needs_two_training_images():
    with pytest.raises(KdlabError, match=r"raise data\.train_size to 2 or more"):
        crd_objective(1)


# --- CC ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("batch", "dim"), [(1, 4), (2, 3), (7, 16)])
def test_cc_matches_the_formula(batch, dim):
    f_s, f_t = randn(batch, dim, seed=batch), randn(batch, dim, seed=batch + 1)
    assert approx(cc_loss(f_s, f_t), ref_cc(f_s.tolist(), f_t.tolist()))
    gradcheck(lambda x: cc_loss(x, f_t), f_s)
    gradcheck(lambda x: cc_loss(f_s, x), f_t)


def test_cc_objective_embeds_both_sides_with_a_linear_layer():
    torch.manual_seed(0)
    student, teacher = build_model("resnet8", 10), build_model("resnet14", 10)
    context = MethodContext(FrozenTeacher(teacher), student, 4.0, 0.1, 16, 0.0)
    objective = method("cc")(method("cc").settings_class(feat_dim=5), context)
    x, y = torch.randn(3, 3, 16, 16), torch.randint(0, 10, (3,))
    student.eval()
    out = objective(student, x, y)
    with torch.no_grad():
        f_s = objective.embed_s(embedding(student, x)).double()
        f_t = objective.embed_t(embedding(teacher.eval(), x)).double()
    assert objective.embed_s.weight.shape == (5, 64)
    assert approx(out.losses["loss_cc"].detach(), ref_cc(f_s.tolist(), f_t.tolist()), rel=1e-5)


# --- VID ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 2, 3, 3), (3, 4, 2, 5), (2, 5)])
@pytest.mark.parametrize("eps", [1e-5, 0.1])
def test_vid_matches_the_formula(shape, eps):
    mu, t = randn(*shape, seed=shape[0]), randn(*shape, seed=shape[0] + 1)
    alpha = randn(shape[1], seed=3, scale=2)
    assert approx(vid_loss(mu, t, alpha, eps), ref_vid(mu, t, alpha, eps))
    gradcheck(lambda x: vid_loss(x, t, alpha, eps), mu)
    gradcheck(lambda a: vid_loss(mu, t, a, eps), alpha)


@pytest.mark.parametrize(("s_shape", "t_shape"), [((3, 4, 4), (5, 4, 4)), ((3, 8, 8), (5, 4, 4))])
def test_vid_head_starts_at_the_initial_variance_and_pools_the_larger_map(s_shape, t_shape):
    torch.manual_seed(0)
    head = VidHead(s_shape[0], t_shape[0], init_pred_var=5.0, eps=1e-5).double()
    variance = F.softplus(head.variance_param) + 1e-5
    torch.testing.assert_close(variance, torch.full((t_shape[0],), 5.0, dtype=torch.float64))
    convs = [m for m in head.regressor if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.bias) for c in convs] == [
        (s_shape[0], t_shape[0], (1, 1), None),
        (t_shape[0], t_shape[0], (1, 1), None),
        (t_shape[0], t_shape[0], (1, 1), None),
    ]
    f_s, f_t = randn(2, *s_shape, seed=4), randn(2, *t_shape, seed=5)
    pooled = torch.from_numpy(pool_np(f_s.numpy(), *t_shape[1:]))
    with torch.no_grad():
        mu = head.regressor(pooled)
    expected = ref_vid(mu, f_t, head.variance_param.detach(), 1e-5)
    assert approx(head(f_s, f_t).detach(), expected)


# --- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["loss=crd", "loss.nce_m=1"], r"loss.nce_m must be in \[0, 1\) for loss=crd, got 1.0"),
        (["loss=crd", "loss.nce_t=0"], "loss.nce_t must be > 0 for loss=crd"),
        (["loss=crd", "loss.nce_k=0"], "loss.nce_k must be >= 1 for loss=crd"),
        (["loss=cc", "loss.feat_dim=0"], "loss.feat_dim must be >= 1 for loss=cc"),
        (["loss=vid", "loss.init_pred_var=0"], "0 < loss.eps < loss.init_pred_var"),
        (["loss=vid", "loss.eps=-1"], "loss.eps must be >= 0 for loss=vid"),
    ],
)
def test_bad_settings_are_one_line_errors(overrides, message):
    with pytest.raises(KdlabError, match=message) as error:
        compose_config("distill", overrides)
    assert "\n" not in str(error.value)


def test_crd_refuses_torchrun(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # what torchrun announces before the group exists
    with pytest.raises(KdlabError, match="loss=crd keeps one memory bank"):
        compose_config("distill", ["loss=crd", "trainer.batch_size=32"])


def test_reference_defaults():
    crd = compose_config("distill", ["loss=crd"]).loss
    assert (crd.weight, crd.feat_dim, crd.nce_k, crd.nce_t, crd.nce_m) == (
        0.8,
        128,
        16384,
        0.07,
        0.5,
    )
    assert (crd.ce_weight, crd.kd_weight) == (1.0, 0.0)
    cc = compose_config("distill", ["loss=cc"]).loss
    assert (cc.weight, cc.feat_dim) == (0.02, 128)
    vid = compose_config("distill", ["loss=vid"]).loss
    assert (vid.weight, vid.init_pred_var, vid.eps) == (1.0, 5.0, 1e-5)
    assert [method(n).taps for n in ("crd", "cc", "vid")] == ["embedding", "embedding", "stages"]
