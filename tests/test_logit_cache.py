"""The teacher-logit cache: exactly the online teacher's logits, computed once per view."""

from __future__ import annotations

import json
import logging
import os
import time

import numpy as np
import pytest
import torch

from harness import TINY, read_summary, run_kdlab
from kdlab.data import build_data
from kdlab.data.augment import CropFlip, crop_flip, view_count, view_ids, views_of
from kdlab.engine.checkpoint import load_checkpoint
from kdlab.engine.execution import seed_everything
from kdlab.engine.provenance import sha256_file
from kdlab.methods.logit_cache import CachedLogitLoader, LogitStore, cached_logit_loader
from kdlab.methods.teacher import FrozenTeacher
from kdlab.models import build_model

CPU = torch.device("cpu")


def test_view_ids_number_every_crop_and_flip_once_and_invert():
    pad = 4
    grid = torch.cartesian_prod(torch.arange(9), torch.arange(9), torch.arange(2))
    views = CropFlip(grid[:, 0], grid[:, 1], grid[:, 2].bool())
    ids = view_ids(views, pad)
    assert view_count(pad) == 162 and view_count(None) == 1
    assert sorted(ids.tolist()) == list(range(162))
    back = views_of(ids, pad)
    assert all(torch.equal(a, b) for a, b in zip(back, views, strict=True))


def test_the_plan_keys_name_the_image_and_view_each_batch_serves():
    data = tiny_data()
    train = data.train
    plan = train.epoch_plan()
    keys = plan.view_keys()
    assert keys.shape == (len(train), 16)
    served = [x for x, _ in train.serve(plan)]
    for step, x in enumerate(served):
        index = keys[step] // plan.num_views
        view = views_of(keys[step] % plan.num_views, plan.pad)
        rebuilt = train.normalize(crop_flip(train.images[index], *view, plan.pad))
        assert torch.equal(rebuilt, x)


def tiny_data(augment: bool = True, train_size: int = 96, seed: int = 0):
    cfg = {"name": "synthetic", "train_size": train_size, "test_size": 20, "val_split": 0.0}
    cfg["augment"] = augment
    return build_data(cfg, batch_size=16, eval_batch_size=40, device=CPU, seed=seed)


def teacher_file(tmp_path, seed: int = 0) -> tuple[FrozenTeacher, object]:
    seed_everything(seed)
    model = build_model("resnet8", 10)
    path = tmp_path / f"teacher{seed}.pt"
    torch.save(model.state_dict(), path)
    return FrozenTeacher(model), path


def open_loader(data, teacher, path, root, precision="32") -> CachedLogitLoader:
    loader = cached_logit_loader(
        data.train,
        teacher,
        {"teacher_sha256": sha256_file(path)},
        root,
        num_classes=10,
        precision=precision,
    )
    assert loader is not None
    return loader


@pytest.mark.parametrize("augment", [True, False])
def test_cached_logits_equal_the_online_teacher_and_are_computed_once(tmp_path, augment):
    data = tiny_data(augment)
    teacher, path = teacher_file(tmp_path)
    first = open_loader(data, teacher, path, tmp_path / "cache")
    seen = []
    for epoch in (1, 2):
        first.set_epoch(epoch)
        for x, _, cached in first:
            assert torch.equal(cached, teacher.logits(x))
            seen.append(cached)
    views = 2 * data.train.num_samples
    assert first.computed + first.reused == views
    if not augment:  # one view per image: epoch 2 reuses all of epoch 1's
        assert first.computed == data.train.num_samples

    second = open_loader(data, teacher, path, tmp_path / "cache")
    assert second.store.directory == first.store.directory
    replay = []
    for epoch in (1, 2):
        second.set_epoch(epoch)
        replay += [cached for _, _, cached in second]
    assert second.computed == 0 and second.reused == views
    assert all(torch.equal(a, b) for a, b in zip(seen, replay, strict=True))


@pytest.mark.parametrize("augment", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_steps_cached_logits_are_the_online_teachers_bit_for_bit(tmp_path, seed, augment):
    """97 images in batches of 16: each epoch leaves one out, so a later epoch often lacks
    just one view; a lone image takes other kernels than a batch (the last bits differ)."""
    data = tiny_data(augment, train_size=97, seed=seed)
    teacher, path = teacher_file(tmp_path, seed)
    loader = open_loader(data, teacher, path, tmp_path / "cache")
    for epoch in range(1, 5):
        loader.set_epoch(epoch)
        for step, (x, _, cached) in enumerate(loader):
            assert torch.equal(cached, teacher.logits(x)), f"epoch {epoch}, step {step}"
    assert loader.computed + loader.reused == 4 * 96


def test_another_teacher_or_precision_gets_its_own_store(tmp_path):
    data = tiny_data()
    teacher, path = teacher_file(tmp_path, seed=0)
    other, other_path = teacher_file(tmp_path, seed=1)
    a = open_loader(data, teacher, path, tmp_path / "c")
    b = open_loader(data, other, other_path, tmp_path / "c")
    c = open_loader(data, teacher, path, tmp_path / "c", precision="bf16")
    assert len({a.store.directory, b.store.directory, c.store.directory}) == 3
    assert c.store.dtype == torch.bfloat16  # kept in the teacher's own dtype: no rounding


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_the_store_keeps_every_bit_of_the_teachers_dtype(tmp_path, dtype):
    meta = {"test": str(dtype)}
    store = LogitStore.open(tmp_path, meta, rows=50, num_classes=7, dtype=dtype)
    values = (torch.randn(20, 7) * 30).to(dtype)
    keys = np.arange(0, 40, 2)
    assert set(store.missing(np.arange(50)).tolist()) == set(range(50))
    store.write(keys, values)
    assert len(store.missing(keys)) == len(keys)  # written, not yet committed
    store.commit(keys)
    assert torch.equal(store.read(keys), values)
    assert set(store.missing(np.arange(50)).tolist()) == set(range(50)) - set(keys.tolist())
    reopened = LogitStore.open(tmp_path, meta, rows=50, num_classes=7, dtype=dtype)
    assert torch.equal(reopened.read(keys), values)


def test_a_store_created_by_another_process_first_is_used_not_replaced(tmp_path):
    meta = {"race": 1}
    winner = LogitStore.open(tmp_path, meta, rows=4, num_classes=3, dtype=torch.float32)
    winner.write(np.array([1]), torch.ones(1, 3))
    winner.commit(np.array([1]))
    from kdlab.methods.logit_cache import store as store_module

    # The loser of a creation race builds its own copy, then finds the name taken.
    store_module._create(winner.directory, meta, 4, 3, torch.float32)
    again = LogitStore.open(tmp_path, meta, rows=4, num_classes=3, dtype=torch.float32)
    assert torch.equal(again.read(np.array([1])), torch.ones(1, 3))
    assert [p.name for p in tmp_path.iterdir()] == [winner.directory.name]  # no temp left


def test_temp_dirs_of_killed_creations_are_removed_once_old(tmp_path):
    old = tmp_path / ".0123456789abcdef.dead.tmp"
    fresh = tmp_path / ".0123456789abcdef.live.tmp"  # another process creating right now
    for tmp in (old, fresh):
        tmp.mkdir()
        (tmp / "logits.npy").write_bytes(b"x" * 1000)
    hours_ago = time.time() - 2 * 3600
    os.utime(old, (hours_ago, hours_ago))
    LogitStore.open(tmp_path, {"k": 1}, rows=2, num_classes=2, dtype=torch.float32)
    assert not old.exists() and fresh.exists()


# --- end to end -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("cache")
    proc = run_kdlab("train", "model=resnet8", *TINY, f"hydra.run.dir={cwd / 'teacher'}", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return cwd


def distill(cwd, name: str, *args: str):
    run = cwd / name
    common = [
        *TINY,
        "data.train_size=256",  # 8 batches of 32
        "trainer.epochs=1",
        "trainer.deterministic=true",
        f"teacher.ckpt={cwd / 'teacher'}",
    ]
    proc = run_kdlab("distill", *common, *args, f"hydra.run.dir={run}", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return run, proc.stdout + proc.stderr


def losses(run) -> list[float]:
    """Train and val loss of every epoch, in order."""
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [r[key] for r in records for key in ("train/loss", "val/loss") if key in r]


def test_a_second_distill_run_reuses_every_view_and_trains_like_the_online_teacher(teacher_run):
    cwd = teacher_run
    first, log = distill(cwd, "first")
    second, _ = distill(cwd, "second", "alpha=0.5")  # a sweep's next job: another alpha
    online, online_log = distill(cwd, "online", "teacher.cache=false")
    views = 256  # 1 epoch of 8 batches of 32
    a, b = (read_summary(r)["teacher"]["logit_cache"] for r in (first, second))
    assert (a["views_computed"], a["views_reused"]) == (views, 0)
    assert (b["views_computed"], b["views_reused"]) == (0, views)
    assert a["dir"] == b["dir"] and a["dir"].startswith(str(cwd / "teacher" / "checkpoints"))
    assert "teacher logits: cached in" in log
    assert read_summary(online)["teacher"]["logit_cache"] is None
    assert "teacher logits" not in online_log
    assert losses(first) == losses(online)


def final_weights(run) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoints" / "last.pt")["model"]


# one pair by default; the other two run the same path at other lengths (-m slow)
SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    ("seed", "epochs"), [pytest.param(0, 2, marks=SLOW), (1, 3), pytest.param(2, 4, marks=SLOW)]
)
def test_a_cached_run_ends_with_the_online_runs_weights_bit_for_bit(teacher_run, seed, epochs):
    """161 images in batches of 32, unaugmented: every epoch leaves out one image, which a
    later epoch then lacks alone."""
    args = [
        "data.train_size=161",
        "data.val_split=0",
        "data.augment=false",
        f"seed={seed}",
        f"trainer.epochs={epochs}",
    ]
    cached, _ = distill(teacher_run, f"cached{seed}", *args)
    online, _ = distill(teacher_run, f"online{seed}", *args, "teacher.cache=false")
    stats = read_summary(cached)["teacher"]["logit_cache"]
    assert stats["views_computed"] + stats["views_reused"] == epochs * 160
    ours, theirs = final_weights(cached), final_weights(online)
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours), "the weights differ"
    assert losses(cached) == losses(online)


def test_an_unusable_cache_dir_falls_back_to_the_online_teacher(tmp_path, caplog):
    data = tiny_data()
    teacher, path = teacher_file(tmp_path)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with caplog.at_level(logging.WARNING, logger="kdlab"):
        loader = cached_logit_loader(
            data.train,
            teacher,
            {"teacher_sha256": sha256_file(path)},
            blocker / "cache",
            num_classes=10,
            precision="32",
        )
    assert loader is None
    assert "teacher logits: computed every step, the cache is unusable" in caplog.text
    assert blocker.read_text() == "not a directory"
