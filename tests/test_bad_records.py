"""Records kdlab did not write as they are (crafted checkpoints, damaged metrics.jsonl, a
teacher search through unreadable summaries), a device that is not there, and a disk that
is full: each is one KdlabError line (the API's too) or, where legitimate, handled; a failed
command leaves nothing it created."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path
from typing import BinaryIO

import pytest
import torch

from catalogue import CRAFTED, CRAFTED_SAYS
from harness import FAST, run_kdlab_limited
from kdlab.api import load_run
from kdlab.data.imagefolder import write_image_folder
from kdlab.engine.checkpoint import Checkpoint
from kdlab.engine.run_logger import read_metrics
from kdlab.errors import KdlabError
from kdlab.models import build_model
from kdlab.paths import write_atomic
from kdlab.runs.teacher_files import newest_teacher_run
from test_cli import assert_one_line_error


@pytest.fixture(scope="module")
def resnet8_state(tmp_path_factory) -> dict:
    """A kdlab checkpoint's dict of a 3-class resnet8 (no training: its init weights)."""
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    model = build_model("resnet8", 3)
    config = {"model": {"arch": "resnet8"}}
    Checkpoint(model=model.state_dict(), config=config, num_classes=3, image_size=16).write(path)
    return torch.load(path, weights_only=True)


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_load_run_of_a_crafted_checkpoint_raises_one_kdlab_line(resnet8_state, tmp_path, name):
    state = {**resnet8_state, "model": dict(resnet8_state["model"])}
    state["config"] = {"model": {"arch": "resnet8"}}
    CRAFTED[name](state)
    torch.save(state, tmp_path / f"{name}.pt")
    with pytest.raises(KdlabError) as raised:
        load_run(tmp_path / f"{name}.pt")
    message = str(raised.value)
    assert "\n" not in message and f"{name}.pt" in message
    for fragment in CRAFTED_SAYS[name]:
        assert fragment in message


@pytest.mark.parametrize(
    ("device", "says"),
    [
        ("banana", "unknown device 'banana': load onto cpu, cuda, cuda:N or mps"),
        ("cuda:99", "cannot load onto cuda:99: this machine has"),
    ],
)
def test_load_run_onto_a_device_that_is_not_there_says_so(resnet8_state, tmp_path, device, says):
    torch.save(resnet8_state, tmp_path / "best.pt")
    with pytest.raises(KdlabError) as raised:
        load_run(tmp_path / "best.pt", device=device)
    assert says in str(raised.value) and "corrupt" not in str(raised.value)


def test_a_torn_last_metrics_line_is_skipped_with_a_warning_and_any_other_bad_line_named(
    tmp_path, caplog
):
    metrics = tmp_path / "metrics.jsonl"
    whole = '{"epoch": 1, "train/loss": 1.5}\n{"epoch": 2, "train/loss": 1.25}\n'
    metrics.write_text(whole + '{"epoch": 3, "train/lo')  # a kill mid-write
    with caplog.at_level(logging.WARNING, logger="kdlab"):
        assert [r["epoch"] for r in read_metrics(metrics)] == [1, 2]
    assert "skipped its last line 3, cut short" in caplog.text
    for lines, bad in (('{"epoch": 1, "tr\n' + whole, 1), (whole + "[1, 2]\n", 3)):
        metrics.write_text(lines)
        with pytest.raises(KdlabError, match=rf"metrics\.jsonl line {bad} is not an epoch record"):
            read_metrics(metrics)
    metrics.write_bytes(b'{"epoch": 1, "x": "\xff"}\n')
    with pytest.raises(KdlabError, match=r"cannot read .*metrics\.jsonl"):
        read_metrics(metrics)


def test_the_teacher_search_skips_summaries_it_cannot_read(tmp_path, caplog):
    for name, content in (("list", b"[]"), ("latin1", b'{"model": "\xff"}')):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_bytes(content)
    good = tmp_path / "good"
    (good / "checkpoints").mkdir(parents=True)
    (good / "checkpoints" / "best.pt").write_bytes(b"")  # found by name; read later
    (good / "summary.json").write_text('{"command": "train", "data": "d", "model": "m"}')
    with caplog.at_level(logging.WARNING, logger="kdlab"):
        assert newest_teacher_run(tmp_path, "d", "m") == good
    assert (
        f"skipped {tmp_path / 'list' / 'summary.json'}, which holds no JSON object" in caplog.text
    )
    assert f"skipped {tmp_path / 'latin1' / 'summary.json'}, unreadable" in caplog.text


def test_a_disk_full_before_the_first_epoch_is_one_line_and_leaves_nothing_created(tmp_path):
    """Hydra's record (.hydra/config.yaml) is the first write past 100 bytes: in a user's own
    run dir only what was there is left (a new dir goes the same way as every failure before
    the first epoch: the catalogue's rows check that no run dir is left)."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    proc = run_kdlab_limited(
        "train", *FAST, f"hydra.run.dir={mine}", cwd=tmp_path, file_size_limit=100
    )
    assert_one_line_error(proc, "(File too large): free some disk space", "hydra.run.dir")
    assert sorted(os.listdir(tmp_path)) == ["mine"]
    assert os.listdir(mine) == ["notes.txt"]


def test_a_failed_atomic_write_leaves_neither_its_file_nor_the_dirs_it_made(tmp_path):
    def fill_the_disk(file: BinaryIO) -> None:
        file.write(b"image,rank")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(KdlabError, match=r"No space left on device.*pick another --csv"):
        write_atomic(tmp_path / "new" / "deeper" / "top.csv", fill_the_disk, "--csv")
    assert os.listdir(tmp_path) == []


# The same write path as the test above, through the CLI under the kernel's file-size limit.
@pytest.mark.slow
def test_a_predict_csv_on_a_full_disk_is_one_line_and_leaves_no_file(tmp_path_factory):
    images = write_image_folder(tmp_path_factory.mktemp("images") / "ab", ("a", "b")) / "test"
    tmp_path = tmp_path_factory.mktemp("out")
    csv = tmp_path / "new" / "top.csv"
    run = Path(__file__).parent / "fixtures" / "old_run"
    proc = run_kdlab_limited(
        "predict", str(run), str(images), "--csv", str(csv), cwd=tmp_path, file_size_limit=10
    )
    assert_one_line_error(proc, f"cannot write {csv} (File too large)", "pick another --csv")
    assert os.listdir(tmp_path) == []


def test_load_run_of_a_run_whose_summary_is_not_utf8_raises_one_kdlab_line(resnet8_state, tmp_path):
    (tmp_path / "checkpoints").mkdir()
    torch.save(resnet8_state, tmp_path / "checkpoints" / "best.pt")
    (tmp_path / "summary.json").write_bytes(b'{"model": "\xff"}')
    with pytest.raises(
        KdlabError, match=r"cannot read .*summary\.json .*fix or delete that run dir"
    ):
        load_run(tmp_path)
