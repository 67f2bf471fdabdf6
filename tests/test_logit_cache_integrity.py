"""A damaged logit store is never trained on; a read-only one is still used; counts resume."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from kdlab.methods.logit_cache import CachedLogitLoader
from kdlab.methods.logit_cache.integrity import row_checks
from test_logit_cache import open_loader, teacher_file, tiny_data
from test_reliability import tmpfs


def run_epoch(loader: CachedLogitLoader, epoch: int) -> None:
    """One epoch of the loader, every batch's logits checked against the online teacher."""
    loader.set_epoch(epoch)
    for x, _, cached in loader:
        assert torch.equal(cached, loader.teacher.logits(x))


@pytest.fixture
def filled(tmp_path):
    """A store holding every view of epoch 1 (unaugmented: all 96 images), and its parts."""
    data = tiny_data(augment=False)
    teacher, path = teacher_file(tmp_path)
    loader = open_loader(data, teacher, path, tmp_path / "cache")
    run_epoch(loader, 1)
    return data, teacher, path, loader.store.directory


def flip_bit(directory: Path, row: int, bit: int) -> None:
    logits = np.load(directory / "logits.npy", mmap_mode="r+")
    words = logits.view(np.uint32)
    words[row, 3] ^= np.uint32(1 << bit)
    logits.flush()


def nan_row(directory: Path, row: int, bit: int) -> None:
    logits = np.load(directory / "logits.npy", mmap_mode="r+")
    logits[row, 0] = np.nan
    logits.flush()


def truncate(name: str) -> Callable[[Path, int, int], None]:
    def damage(directory: Path, row: int, bit: int) -> None:
        path = directory / name
        os.truncate(path, path.stat().st_size // 2)

    return damage


def bad_flag(directory: Path, row: int, bit: int) -> None:
    flags = np.load(directory / "filled.npy", mmap_mode="r+")
    flags[row] = 7
    flags.flush()


def garbled_meta(directory: Path, row: int, bit: int) -> None:
    (directory / "meta.json").write_text('{"format": 2, ')


DAMAGE = {
    "an exponent bit flipped": flip_bit,
    "a NaN in a row": nan_row,
    "logits.npy cut to half": truncate("logits.npy"),
    "check.npy cut to half": truncate("check.npy"),
    "a fill flag of 7": bad_flag,
    "meta.json cut short": garbled_meta,
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_store_is_set_aside_rebuilt_and_never_trained_on(filled, tmp_path, caplog, kind):
    data, teacher, path, directory = filled
    DAMAGE[kind](directory, 5, 30)
    with caplog.at_level(logging.WARNING, logger="kdlab"):
        loader = open_loader(data, teacher, path, tmp_path / "cache")
        run_epoch(loader, 1)  # reads every row: each must be the online teacher's
    aside = [p for p in directory.parent.iterdir() if p.name.startswith(f"{directory.name}.")]
    assert len(aside) == 1 and aside[0].name.startswith(f"{directory.name}.damaged-")
    assert f"teacher logits: the store {directory} is damaged" in caplog.text
    assert str(aside[0]) in caplog.text
    assert loader.store.directory == directory and loader.computed == 96  # rebuilt
    assert np.load(directory / "filled.npy").all()


def test_every_single_bit_flip_of_a_row_fails_its_check():
    rows = (np.random.default_rng(0).standard_normal((3, 10)) * 20).astype(np.float32)
    keys = np.array([7, 123456, 2**33])
    store, other_store = 0x9E3779B97F4A7C15, 0x9E3779B97F4A7C16  # names one bit apart
    checks = row_checks(rows, keys, store)
    words = rows.view(np.uint32)
    for column in range(10):
        for bit in range(32):
            damaged = words.copy()
            damaged[1, column] ^= np.uint32(1 << bit)
            assert (row_checks(damaged.view(np.float32), keys, store) != checks).tolist() == [
                False,
                True,
                False,
            ]
    assert (row_checks(rows, np.roll(keys, 1), store) != checks).all()  # in the wrong places
    assert (row_checks(rows, keys, other_store) != checks).all()  # another teacher's rows
    assert (row_checks(np.zeros_like(rows), keys, store) != checks).all()
    halves = rows.astype(np.float16)
    assert (row_checks(halves, keys, store) != row_checks(halves[:, ::-1], keys, store)).all()


def test_another_teachers_rows_copied_into_a_store_are_never_trained_on(filled, tmp_path):
    """The arrays of teacher B's store (same shapes) copied over teacher A's: every row fails
    its check in A's store, which is set aside and rebuilt from teacher A."""
    data, teacher, path, directory = filled
    other, other_path = teacher_file(tmp_path, seed=1)
    other_loader = open_loader(data, other, other_path, tmp_path / "cache")
    run_epoch(other_loader, 1)
    other_directory = other_loader.store.directory
    for name in ("logits.npy", "check.npy", "filled.npy"):
        (directory / name).write_bytes((other_directory / name).read_bytes())
    loader = open_loader(data, teacher, path, tmp_path / "cache")
    run_epoch(loader, 1)  # every batch equals teacher A's own logits
    assert loader.computed == 96  # all of them recomputed: none of B's was used
    assert any(p.name.startswith(f"{directory.name}.damaged-") for p in directory.parent.iterdir())


@contextlib.contextmanager
def freezable(directory: Path) -> Iterator[Callable[[], None]]:
    """A directory and a function that makes it refuse writes: a read-only remount of a
    tmpfs for root (mode bits do not stop root), mode bits otherwise."""
    if os.geteuid() == 0:
        with tmpfs(directory, "size=8m"):
            yield lambda: subprocess.run(["mount", "-o", "remount,ro", str(directory)], check=True)
        return
    directory.mkdir()
    frozen = []

    def freeze() -> None:
        for path in [directory, *directory.rglob("*")]:
            path.chmod(0o555 if path.is_dir() else 0o444)
            frozen.append(path)

    try:
        yield freeze
    finally:
        for path in frozen:
            path.chmod(0o755 if path.is_dir() else 0o644)


def fill_epoch(tmp_path: Path, root: Path, epoch: int, damage_row: int | None = None) -> None:
    """A store under `root` holding every view of `epoch` (unaugmented: all 96 images);
    nothing of it stays mapped once this returns (a mapped file keeps a mount busy)."""
    data = tiny_data(augment=False)
    teacher, path = teacher_file(tmp_path)
    loader = open_loader(data, teacher, path, root)
    run_epoch(loader, epoch)
    if damage_row is not None:
        flip_bit(loader.store.directory, damage_row, 30)
    del loader
    gc.collect()


def epochs_on(tmp_path: Path, root: Path, epochs: range) -> CachedLogitLoader:
    """A new run's loader (as on another host, or a resume) through `epochs`."""
    data = tiny_data(augment=False)
    teacher, path = teacher_file(tmp_path)
    loader = open_loader(data, teacher, path, root)
    for epoch in epochs:
        run_epoch(loader, epoch)
    return loader


def test_a_complete_store_on_read_only_storage_is_reused(tmp_path):
    with freezable(tmp_path / "ro") as freeze:
        fill_epoch(tmp_path, tmp_path / "ro", 1)
        freeze()
        loader = epochs_on(tmp_path, tmp_path / "ro", range(2, 3))
        writable, counts = loader.store.writable, (loader.computed, loader.reused)
        del loader
        gc.collect()
    assert not writable and counts == (0, 96)


def test_a_damaged_store_that_cannot_be_moved_is_bypassed(tmp_path, caplog):
    with freezable(tmp_path / "ro") as freeze:
        fill_epoch(tmp_path, tmp_path / "ro", 1, damage_row=10)
        freeze()
        with caplog.at_level(logging.WARNING, logger="kdlab"):
            loader = epochs_on(tmp_path, tmp_path / "ro", range(2, 4))
        bypassed, counts = loader.store is None, (loader.computed, loader.reused)
        del loader
        gc.collect()
    assert "teacher logits: computed every step from now on" in caplog.text
    assert bypassed and counts == (192, 0)


def test_the_view_counts_continue_across_a_resume(tmp_path):
    data = tiny_data(augment=False)
    teacher, path = teacher_file(tmp_path)
    first = open_loader(data, teacher, path, tmp_path / "cache")
    run_epoch(first, 1)
    saved = first.state_dict()  # what the checkpoint of epoch 1 keeps
    resumed = open_loader(data, teacher, path, tmp_path / "cache")
    resumed.load_state_dict(saved)
    run_epoch(resumed, 2)
    stats = resumed.stats()
    assert (stats["views_computed"], stats["views_reused"]) == (96, 96)
