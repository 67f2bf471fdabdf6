"""Several teachers (`teacher.ckpt=[A,B]`): the ensemble's logits against a formula written
here, every logit method on an ensemble, two tiny teachers end to end, the logit cache keyed
by every teacher and weight, and a resume pinned to every teacher."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest
import torch

from harness import TINY, read_summary, run_kdlab
from kdlab.data import build_data
from kdlab.engine.checkpoint import Checkpoint, read_header
from kdlab.engine.execution import seed_everything
from kdlab.engine.provenance import HASH_SHOWN, TRAINED_ON, record_path, sha256_file
from kdlab.errors import KdlabError
from kdlab.methods.base import METHODS
from kdlab.methods.logit_cache import cached_logit_loader
from kdlab.methods.registry import build_method
from kdlab.methods.teacher import FrozenTeacher, TeacherEnsemble
from kdlab.models import build_model
from kdlab.runs.preflight import compose_config
from kdlab.runs.teacher import read_teachers
from kdlab.runs.validation import check_teachers
from test_cli import assert_one_line_error

CPU = torch.device("cpu")
ARCH = "resnet8"
SMALL = [*TINY, "data.train_size=64", "trainer.epochs=1"]  # two batches of 32, one epoch


def tiny_models(count: int, dtype: torch.dtype = torch.float64) -> list[torch.nn.Module]:
    """`count` differently initialised teachers, trained-looking enough: their logits differ."""
    models = []
    for seed in range(count):
        seed_everything(seed)
        models.append(build_model(ARCH, 10).to(dtype).eval())
    return models


def ensemble_formula(logits: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """z = sum_k (w_k / sum w) z_k, in float64 numpy."""
    w = np.asarray(weights, dtype=np.float64)
    return np.einsum("k,kbc->bc", w / w.sum(), np.stack(logits))


def test_the_loss_gets_the_weighted_mean_of_the_teachers_logits_float64():
    """Three teachers, teacher.weights=[1,2,5]: what KD's loss receives is the formula's
    ensemble, and its loss and gradient are KD's on those logits (written out here)."""
    T, alpha = 4.0, 0.1
    cfg = compose_config(
        "distill",
        ["loss=kd", f"T={T}", f"alpha={alpha}", "teacher.ckpt=[a,b,c]", "teacher.weights=[1,2,5]"],
    )
    weights = cfg.teacher.normalised_weights(3)
    assert weights == pytest.approx([1 / 8, 2 / 8, 5 / 8], abs=0)
    models = tiny_models(3)
    teacher = FrozenTeacher(TeacherEnsemble(models, weights))
    seed_everything(7)
    student = build_model(ARCH, 10).double()
    method = build_method(cfg, teacher, student, 32)
    x = torch.randn(6, 3, 32, 32, dtype=torch.float64)
    y = torch.randint(0, 10, (6,))

    given = method.run_teacher(x).logits
    with torch.no_grad():
        each = [m(x).numpy() for m in models]
    expected = ensemble_formula(each, [1, 2, 5])
    assert given.dtype == torch.float64
    np.testing.assert_allclose(given.numpy(), expected, rtol=1e-13, atol=1e-13)

    out = method(student, x, y)
    z_s = out.logits
    z_s.retain_grad()
    out.losses["loss"].backward()
    z = z_s.detach().numpy()
    p_t = softmax(expected / T)
    log_q = log_softmax(z / T)
    soft = -(p_t * log_q).sum(axis=1).mean()
    hard = -log_softmax(z)[np.arange(6), y.numpy()].mean()
    loss = (1 - alpha) * T * T * soft + alpha * hard
    onehot = np.eye(10)[y.numpy()]
    grad = ((1 - alpha) * T * (softmax(z / T) - p_t) + alpha * (softmax(z) - onehot)) / 6
    # KD computes in float32 (kd_losses casts with .float()): float32 tolerances.
    assert out.losses["loss"].item() == pytest.approx(loss, rel=1e-5)
    np.testing.assert_allclose(z_s.grad.numpy(), grad, rtol=1e-4, atol=1e-7)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def log_softmax(z: np.ndarray) -> np.ndarray:
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def test_averaged_logits_give_the_weighted_geometric_mean_of_soft_targets_at_every_T():
    """What the docs promise: softmax(z / T) = prod_k softmax(z_k / T)^w_k, renormalised;
    the arithmetic mean of the soft targets it is not (unless the teachers agree)."""
    rng = np.random.default_rng(0)
    logits = [rng.normal(size=(5, 7)) * 3 for _ in range(3)]
    weights = [0.2, 0.3, 0.5]
    z = ensemble_formula(logits, weights)
    given = TeacherEnsemble([FixedLogits(torch.from_numpy(z_k)) for z_k in logits], weights)
    np.testing.assert_allclose(given(torch.zeros(5)).numpy(), z, rtol=1e-13, atol=1e-13)
    for T in (1.0, 4.0):
        soft = [softmax(z_k / T) for z_k in logits]
        geometric = np.prod([p**w for p, w in zip(soft, weights, strict=True)], axis=0)
        geometric /= geometric.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(softmax(z / T), geometric, rtol=1e-12)
        arithmetic = sum(w * p for p, w in zip(soft, weights, strict=True))
        assert np.abs(softmax(z / T) - arithmetic).max() > 1e-3


class FixedLogits(torch.nn.Module):
    """A 'teacher' whose logits are given: the ensemble's arithmetic alone under test."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits


def test_the_ensemble_sums_in_float32_and_returns_the_teachers_dtype():
    models = tiny_models(2, torch.bfloat16)
    x = torch.randn(4, 3, 32, 32, dtype=torch.bfloat16)
    with torch.no_grad():
        out = TeacherEnsemble(models, [0.25, 0.75])(x)
        expected = (0.25 * models[0](x).float() + 0.75 * models[1](x).float()).bfloat16()
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, expected)


# The logit methods that average several teachers; the others refuse (Method.one_teacher).
LOGIT_METHODS = sorted(n for n, c in METHODS.items() if c.taps == "logits" and not c.one_teacher)


@pytest.mark.parametrize("name", LOGIT_METHODS)
def test_every_logit_method_that_takes_several_teachers_steps_on_an_ensemble(name):
    views = METHODS[name].uses_views  # MLKD: a weak and a strong view of each image
    overrides = [f"loss={name}", "teacher.ckpt=[a,b]"]
    cfg = compose_config("distill", [*overrides, *(["data.views=weak_strong"] * (views > 1))])
    teacher = FrozenTeacher(TeacherEnsemble(tiny_models(2, torch.float32), [0.5, 0.5]))
    student = build_model(ARCH, 10)
    method = build_method(cfg, teacher, student, 16, train_images=8)
    x, y = torch.randn(8 * views, 3, 16, 16), torch.randint(0, 10, (8,))
    loss = method(student, x, y).losses["loss"]
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in student.parameters())


def test_every_other_method_takes_one_teacher_and_says_so_in_one_line():
    """Feature methods (and wkd_l, whose cost is the teacher's classifier): refused by the
    pre-flight's check (one catalogue row runs it through the CLI)."""
    cfg = compose_config("distill", ["teacher.ckpt=[a,b,c]"])
    refused = []
    for name, cls in METHODS.items():
        cfg.loss = cls.settings_class()
        if cls.one_teacher:
            with pytest.raises(KdlabError, match=rf"^loss={name} takes one teacher \(.+\); "):
                check_teachers(cfg)
            refused.append(name)
        else:
            check_teachers(cfg)
    feature = {name for name, cls in METHODS.items() if cls.taps not in ("none", "logits")}
    assert set(refused) == feature | {"wkd_l"}


# --- two tiny teachers, end to end -------------------------------------------------------


@pytest.fixture(scope="module")
def two_teachers(tmp_path_factory):
    """A working dir with two finished resnet8 teacher runs (seeds 0 and 1), a and b."""
    cwd = tmp_path_factory.mktemp("teachers")
    for name, seed in (("a", 0), ("b", 1)):
        args = [f"model={ARCH}", *SMALL, f"seed={seed}"]
        proc = run_kdlab("train", *args, f"hydra.run.dir={name}", cwd=cwd)
        assert proc.returncode == 0, proc.stderr
    return cwd


def best(cwd, name: str):
    return cwd / name / "checkpoints" / "best.pt"


def distill_args(cwd, ckpts: str | None, weights: str | None, *more: str) -> list[str]:
    """A KD student of teachers `ckpts` (names under cwd: "a,b") with teacher.weights."""
    args = ["distill", *SMALL, *more]
    if ckpts:
        args.append(f"teacher.ckpt=[{','.join(str(cwd / n) for n in ckpts.split(','))}]")
    return [*args, f"teacher.weights=[{weights}]"] if weights else args


@pytest.fixture(scope="module")
def ensemble_run(two_teachers):
    proc = run_kdlab(
        *distill_args(two_teachers, "a,b", "1,3", "hydra.run.dir=kd"), cwd=two_teachers
    )
    assert proc.returncode == 0, proc.stderr
    return two_teachers / "kd", proc.stdout + proc.stderr


def test_a_distill_from_two_teachers_logs_records_and_pins_each(two_teachers, ensemble_run):
    run, log = ensemble_run
    summary = read_summary(run)["teacher"]
    assert summary["weights"] == [0.25, 0.75]
    assert 0 <= summary["val_acc"] <= 100
    pins = []
    for i, (name, record) in enumerate(zip("ab", summary["teachers"], strict=True)):
        path, sha = best(two_teachers, name), sha256_file(best(two_teachers, name))
        own = read_summary(two_teachers / name)
        assert record["ckpt"] == str(path) and record["model"] == ARCH
        assert record["sha256"] == sha and record["intact"] is True
        assert record["recorded_test_acc"] == own["test_acc"]
        assert f"teacher {i + 1}/2: {path} ({ARCH}), val acc" in log
        assert f"teacher {i + 1}/2 record: sha256 {sha[:HASH_SHOWN]}" in log
        pins.append({"path": str(path), "sha256": sha})
    assert "teachers: 2, their logits averaged with weights 0.25, 0.75: val acc" in log
    assert Checkpoint.read(run / "checkpoints" / "last.pt").teacher == {"teachers": pins}
    cache = summary["logit_cache"]
    assert cache["views_computed"] > 0
    stores = best(two_teachers, "a").with_name("best.logits")
    (meta,) = (json.loads(p.read_text()) for p in stores.glob("*/meta.json"))
    assert meta["teacher_sha256"] == [p["sha256"] for p in pins]
    assert meta["teacher_weights"] == [0.25, 0.75]


def test_a_resume_reads_both_pinned_teachers_and_refuses_others(two_teachers, ensemble_run):
    run = two_teachers / "resumed"
    shutil.copytree(ensemble_run[0], run)
    resume = ["resume=true", f"hydra.run.dir={run}"]
    proc = run_kdlab(*distill_args(two_teachers, "b,a", "1,3", *resume), cwd=two_teachers)
    assert_one_line_error(
        proc, f"resume=true but teacher {best(two_teachers, 'b')} is not the one this run"
    )
    proc = run_kdlab(*distill_args(two_teachers, "a", None, *resume), cwd=two_teachers)
    assert_one_line_error(proc, "teacher.ckpt names 1 teacher(s), this run started with 2")
    # No teacher.ckpt: the pinned paths are read (and hashed again).
    proc = run_kdlab(
        *distill_args(two_teachers, None, "1,3", *resume, "trainer.epochs=2"), cwd=two_teachers
    )
    assert proc.returncode == 0, proc.stderr
    assert read_summary(run)["epochs"] == 2


def cache_loader(two_teachers, root, data, ckpts: str, weights: str):
    """The logit-cache loader a run of teachers `ckpts` (names under the working dir) with
    teacher.weights=`weights` opens on `data`, and its ensemble."""
    paths = ",".join(str(two_teachers / name) for name in ckpts.split(","))
    cfg = compose_config(
        "distill", ["data=synthetic", f"teacher.ckpt=[{paths}]", f"teacher.weights=[{weights}]"]
    )
    teachers = read_teachers(cfg)
    models = [member.state.build_model().eval() for member in teachers.members]
    ensemble = FrozenTeacher(TeacherEnsemble(models, teachers.weights))
    key = teachers.cache_key()
    loader = cached_logit_loader(data.train, ensemble, key, root, num_classes=10, precision="32")
    assert loader is not None
    return loader, models


def test_the_cache_holds_the_ensembles_logits_under_every_teachers_hash_and_weight(
    two_teachers, tmp_path
):
    data = build_data(
        {"name": "synthetic", "train_size": 32, "test_size": 16, "val_split": 0.0},
        batch_size=16,
        eval_batch_size=16,
        device=CPU,
        seed=0,
    )
    root = tmp_path / "cache"
    first, models = cache_loader(two_teachers, root, data, "a,b", "1,3")
    doubles = [copy.deepcopy(m).double() for m in models]
    first.set_epoch(1)
    for x, _, cached in first:
        with torch.no_grad():
            each = [m(x.double()).numpy() for m in doubles]
        np.testing.assert_allclose(cached.numpy(), ensemble_formula(each, [1, 3]), atol=1e-5)
    assert first.computed == data.train.num_samples

    def reuses(ckpts: str, weights: str) -> bool:
        """Whether teachers `ckpts` with `weights` find the first run's store and all of it."""
        loader, _ = cache_loader(two_teachers, root, data, ckpts, weights)
        loader.set_epoch(1)
        for _ in loader:
            pass
        same = loader.store.directory == first.store.directory
        assert same == (loader.computed == 0)
        return same

    assert reuses("a,b", "2,6")  # the same normalised weights: the same logits
    assert not reuses("a,b", "1,1")
    assert not reuses("b,a", "3,1")
    assert not reuses("a", "1")


def test_the_preflight_reads_a_teachers_facts_from_its_record_not_its_file(two_teachers, tmp_path):
    """read_header: the record's copy of the data facts, the file neither loaded nor hashed
    (the run's own read checks it); the file where the record does not hold them."""
    ckpt = tmp_path / "best.pt"
    shutil.copy(best(two_teachers, "a"), ckpt)
    shutil.copy(record_path(best(two_teachers, "a")), record_path(ckpt))
    full, header = Checkpoint.read(ckpt), read_header(ckpt)
    assert header.model == {} and header.config == full.config
    assert data_facts_of(header) == data_facts_of(full)
    assert (header.data, header.num_classes, header.in_channels) == ("synthetic", 10, 3)
    ckpt.write_bytes(b"not the file its record describes")
    assert data_facts_of(read_header(ckpt)) == data_facts_of(full)  # not read
    with pytest.raises(KdlabError, match="is not a checkpoint"):
        read_header(ckpt, allow_modified=True)  # the record is not the file's: read it
    record = json.loads(record_path(ckpt).read_text())
    del record[TRAINED_ON]  # a record from before the facts were copied
    record_path(ckpt).write_text(json.dumps(record))
    with pytest.raises(KdlabError, match=r"is not the file its record best\.pt\.json describes"):
        read_header(ckpt)


def data_facts_of(state: Checkpoint) -> tuple:
    return (state.data, state.num_classes, state.in_channels, state.class_names,
            state.image_size, state.mean, state.std)  # fmt: skip


def test_a_teacher_of_an_unknown_model_or_without_the_points_read_fails_before_the_run_dir(
    two_teachers, tmp_path
):
    """The teacher's model is built on the meta device by the pre-flight: an architecture
    this kdlab does not know, or a feature point it lacks, is one line and no run dir."""
    state = Checkpoint.read(best(two_teachers, "a"))
    state.config = {**state.config, "model": {**state.config["model"], "arch": "nosuch"}}
    unknown = tmp_path / "unknown.pt"
    state.write(unknown)
    untouched = tmp_path.stat().st_mtime_ns
    run_dir = f"hydra.run.dir={tmp_path / 'r'}"
    proc = run_kdlab("distill", *SMALL, f"teacher.ckpt={unknown}", run_dir, cwd=two_teachers)
    assert_one_line_error(proc, f"cannot rebuild the model of {unknown}: unknown model 'nosuch'")
    points = ["loss=at", "loss.teacher_points=[nosuch]", f"teacher.ckpt={two_teachers / 'a'}"]
    proc = run_kdlab("distill", *SMALL, *points, run_dir, cwd=two_teachers)
    assert_one_line_error(proc, "loss.teacher_points: ", "nosuch")
    assert tmp_path.stat().st_mtime_ns == untouched, "a run dir was made"


def test_a_teacher_trained_at_another_image_size_fails_before_the_run_dir(two_teachers, tmp_path):
    """The teacher sees the student's batches: a synthetic-set teacher trained at 16 px (the
    suite's size) and a run that serves the set's own 32 px is one line and no run dir."""
    untouched = tmp_path.stat().st_mtime_ns
    args = [*SMALL, "data.image_size=32", f"teacher.ckpt={two_teachers / 'a'}"]
    proc = run_kdlab("distill", *args, f"hydra.run.dir={tmp_path / 'r'}", cwd=two_teachers)
    assert_one_line_error(proc, "was trained on 16x16 images, this run serves 32x32",
                          "set data.image_size=16")  # fmt: skip
    assert tmp_path.stat().st_mtime_ns == untouched, "a run dir was made"
