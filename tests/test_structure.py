"""The house's structure: one data-set registry, one validation, one typed checkpoint."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
import torch

from harness import TINY, run_kdlab
from kdlab.data import DATASETS, build_data, dataset_names
from kdlab.engine.checkpoint import Checkpoint, load_checkpoint
from kdlab.errors import KdlabError
from kdlab.runs.config import register_configs
from kdlab.runs.preflight import checked_config, compose_job


def test_an_unknown_data_set_lists_every_registered_one():
    with pytest.raises(KdlabError) as error:
        build_data({"name": "nosuch"}, batch_size=4, eval_batch_size=4, device="cpu", seed=0)
    message = str(error.value)
    assert message.startswith("unknown data set 'nosuch'")
    assert all(name in message for name in dataset_names()) and "(data=NAME)" in message


def test_the_cli_lists_the_registry_s_data_sets(kdlab):
    proc = kdlab("train", "data=nosuch")
    assert proc.returncode == 2
    assert all(name in proc.stderr for name in DATASETS), proc.stderr


def test_every_registered_data_set_is_a_config_group_option_with_its_own_fields():
    register_configs()
    for name, spec in DATASETS.items():
        _, typed = compose_job("train", [f"data={name}", "data.root=somewhere"])
        assert type(typed.data) is spec.settings and typed.data.name == name
    _, cifar = compose_job("train", ["data=cifar10"])
    assert cifar.data.download is True
    with pytest.raises(KdlabError, match="download"):
        compose_job("train", ["data=synthetic", "data.download=false"])


def test_the_task_takes_the_pre_flight_s_typed_config_without_checking_again():
    cfg, typed = compose_job("distill", ["T=2", *TINY])
    assert checked_config(cfg) is typed
    assert typed.T == 2.0 and typed.trainer.epochs == 2


@pytest.mark.parametrize(
    "bad, message",
    [
        ("trainer.epochs=0", "trainer.epochs must be positive"),
        ("optim.lr=-1", "optim.lr must be positive"),
        ("data.val_split=1.5", "data.val_split must be in [0, 1)"),
    ],
)
def test_a_bad_value_is_reported_once_before_hydra_writes_anything(kdlab, tmp_path, bad, message):
    run_dir = tmp_path / "run"
    proc = kdlab("train", *TINY, bad, f"hydra.run.dir={run_dir}")
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr
    assert not run_dir.exists() and not (tmp_path / "outputs").exists()


def test_a_bad_value_in_a_later_sweep_job_starts_no_job(kdlab, tmp_path):
    proc = kdlab("train", *TINY, "-m", "trainer.epochs=1,0", f"hydra.sweep.dir={tmp_path / 's'}")
    assert proc.returncode == 2 and "trainer.epochs must be positive" in proc.stderr
    assert not (tmp_path / "s").exists()


def test_a_checkpoint_round_trips_through_its_typed_record(tmp_path):
    record = Checkpoint(
        model={"w": torch.arange(6.0).view(2, 3)},
        config={"model": {"arch": "resnet8"}, "seed": 3},
        num_classes=10,
        class_names=[str(i) for i in range(10)],
        data="synthetic",
        stage="stage2",
        epoch=7,
        stage_epoch=5,
        history=[{"name": "stage1", "epochs": 2}],
        best_score=81.5,
        best_record={"epoch": 6, "val/acc": 81.5},
        train_time_s=12.5,
        train_images=1234,
        skipped_batches=2,
    )
    path = tmp_path / "last.pt"
    record.write(path)
    back = Checkpoint.read(path)
    for field in fields(Checkpoint):
        ours, theirs = getattr(record, field.name), getattr(back, field.name)
        if field.name == "model":
            assert torch.equal(ours["w"], theirs["w"])
        else:
            assert ours == theirs, field.name
    raw = load_checkpoint(path)  # the file is a plain dict with exactly the record's keys
    assert set(raw) == {f.name for f in fields(Checkpoint)}


def test_a_checkpoint_from_a_newer_version_with_more_keys_still_reads(tmp_path):
    path = tmp_path / "best.pt"
    torch.save({"model": {}, "config": {}, "epoch": 3, "something_new": 1}, path)
    assert Checkpoint.read(path).epoch == 3


def test_a_teacher_run_s_checkpoint_rebuilds_its_model(tmp_path: Path):
    from kdlab.models import build_model

    model = build_model("resnet8", 10)
    config = {"model": {"arch": "resnet8"}}
    Checkpoint(model=model.state_dict(), config=config, num_classes=10).write(tmp_path / "t.pt")
    rebuilt = Checkpoint.read(tmp_path / "t.pt").build_model(tmp_path / "t.pt")
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(rebuilt.eval()(x), model.eval()(x))


@pytest.mark.parametrize(
    "line, expected",
    [
        ("kdlab train model=resnet", {"model=resnet8", "model=resnet_teacher"}),
        ("kdlab distill data=", {f"data={name}" for name in DATASETS}),
        ("kdlab fitnet stage2=", {"stage2=frozen", "stage2=finetune"}),
    ],
)
def test_tab_completion_offers_the_generated_groups(tmp_path, line, expected):
    """What Hydra's installed bash completion asks: `kdlab -sc query=bash`, line in COMP_LINE."""
    env = {"COMP_LINE": line, "COMP_POINT": str(len(line))}
    proc = run_kdlab("-sc", "query=bash", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert expected <= set(proc.stdout.split()), proc.stdout
