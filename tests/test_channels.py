"""Channels come from the data: greyscale data sets train 1-channel models end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from harness import read_summary
from kdlab.data import build_data
from kdlab.data.imagefolder import write_image_folder
from kdlab.data.schedule import TrainSchedule
from kdlab.engine.checkpoint import Checkpoint
from kdlab.errors import KdlabError
from test_idx_data import write_idx_set

TINY_IDX = [
    "data.val_split=0.25",
    "trainer.batch_size=20",
    "trainer.eval_batch_size=40",
    "trainer.epochs=1",
    "trainer.log_every=2",
]


def first_conv_channels(state: dict) -> int:
    """in_channels of the first 4-D conv weight in a state dict (in forward order)."""
    return next(v.shape[1] for v in state.values() if v.dim() == 4)


def test_a_greyscale_data_set_trains_a_one_channel_model(kdlab, tmp_path):
    name = "fashion_mnist"  # the idx sets share their loader; mnist's flips: see below
    write_idx_set(tmp_path / "idx")
    run = tmp_path / "run"
    proc = kdlab(
        "train", f"data={name}", f"data.root={tmp_path / 'idx'}", "model=cnn_student",
        *TINY_IDX, f"hydra.run.dir={run}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    state = Checkpoint.read(run / "checkpoints" / "best.pt")
    assert state.in_channels == 1 and first_conv_channels(state.model) == 1
    assert state.build_model(run)(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert read_summary(run)["data"] == name


def test_digits_are_never_flipped_and_clothes_are():
    mnist = TrainSchedule(200, 20, seed=0, augment_pad=4, flips=False).plan(1)
    fashion = TrainSchedule(200, 20, seed=0, augment_pad=4).plan(1)
    assert not any(bool(view.flip.any()) for view in mnist.views)
    assert any(bool(view.flip.any()) for view in fashion.views)


def test_the_data_bundle_says_its_channels(tmp_path):
    write_idx_set(tmp_path)
    args = {"batch_size": 10, "eval_batch_size": 10, "device": "cpu", "seed": 0}
    bundle = build_data({"name": "kmnist", "root": str(tmp_path), "val_split": 0}, **args)
    x, _ = next(iter(bundle.train))
    assert bundle.in_channels == 1 and x.shape[1:] == (1, 28, 28)


def write_folder(root: Path) -> Path:
    return write_image_folder(root, ("cat", "dog"))


def test_an_image_folder_decodes_to_the_channels_asked_for(tmp_path):
    root = write_folder(tmp_path / "imgs")
    args = {"batch_size": 4, "eval_batch_size": 4, "device": "cpu", "seed": 0}
    grey = build_data({"name": "imagefolder", "root": str(root), "channels": 1}, **args)
    rgb = build_data({"name": "imagefolder", "root": str(root)}, **args)
    assert (grey.in_channels, rgb.in_channels) == (1, 3)
    assert next(iter(grey.test))[0].shape[1] == 1 and next(iter(rgb.test))[0].shape[1] == 3
    with pytest.raises(KdlabError, match=r"data\.channels must be 1"):
        build_data({"name": "imagefolder", "root": str(root), "channels": 2}, **args)


def test_a_teacher_of_other_channels_is_a_one_line_error(kdlab, tmp_path):
    root = write_folder(tmp_path / "imgs")
    common = [
        "data=imagefolder", f"data.root={root}", "data.image_size=16", "data.val_split=0.25",
        "trainer.batch_size=4", "trainer.eval_batch_size=4", "trainer.epochs=1",
    ]  # fmt: skip
    teacher = tmp_path / "teacher"
    made = kdlab("train", "model=resnet8", *common, "data.channels=1", f"hydra.run.dir={teacher}")
    assert made.returncode == 0, made.stderr
    proc = kdlab("distill", *common, f"teacher.ckpt={teacher}", f"hydra.run.dir={tmp_path / 's'}")
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "takes 1-channel images, the data has 3" in lines[0]
