"""The methods with an init stage (AB, FT, FSP) end to end: `kdlab distill loss=NAME` runs
the init stage, then the main stage, both logging their parts, and resumes past the init."""

from __future__ import annotations

import shutil

import pytest

from conftest import TINY, read_summary, run_kdlab
from kdlab.engine.checkpoint import load_checkpoint
from test_methods_e2e import records
from test_reliability import assert_same_run

TEACHER = "resnet8"
# One init epoch, one main epoch, two steps each; deterministic, so a resume is comparable.
RUN = [
    *TINY,
    "data.train_size=64",
    f"model={TEACHER}",
    f"teacher.model={TEACHER}",
    "trainer.epochs=1",
    "loss.init_epochs=1",
    "trainer.deterministic=true",
]
INIT_PART = {"ab": "loss_ab_init", "ft": "loss_ft_rec", "fsp": "loss_fsp_init"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A working dir whose outputs/ holds one finished teacher run."""
    cwd = tmp_path_factory.mktemp("init_methods")
    proc = run_kdlab("train", f"model={TEACHER}", *TINY, "trainer.epochs=1", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return cwd


def distill(workdir, name: str, *overrides: str):
    run = workdir / name
    proc = run_kdlab("distill", *RUN, *overrides, f"hydra.run.dir={run}", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    return run, proc


# fsp's init stage is ab's (the method's term on the student's prefix): slow only
@pytest.mark.parametrize("name", ["ab", "ft", pytest.param("fsp", marks=pytest.mark.slow)])
def test_the_init_stage_runs_first_and_both_stages_write_their_parts(workdir, name):
    run, _ = distill(workdir, name, f"loss={name}")
    summary = read_summary(run)
    assert list(summary["stages"]) == ["init", "distill"] and summary["epochs"] == 2
    assert {INIT_PART[name], f"loss_{name}", "loss_hard", "loss_kd"} <= summary.keys()
    init, main = records(run)
    assert (init["stage"], main["stage"]) == ("init", "distill")
    assert {f"train/{INIT_PART[name]}", f"val/{INIT_PART[name]}"} <= init.keys()
    assert "train/acc" not in init  # the init stage trains no classifier
    assert {f"train/loss_{name}", "train/loss_hard", "val/acc"} <= main.keys()
    assert (run / "checkpoints" / "init.pt").is_file()


def test_a_run_resumed_after_its_init_stage_does_not_rerun_it(workdir, tmp_path):
    """The disk as a kill leaves it just after the init stage: last.pt is the init's."""
    reference = workdir / "ab"
    if not reference.is_dir():
        distill(workdir, "ab", "loss=ab")
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    checkpoints = run / "checkpoints"
    shutil.copy(checkpoints / "init.pt", checkpoints / "last.pt")
    assert load_checkpoint(checkpoints / "last.pt")["stage"] == "init"
    (run / "summary.json").unlink()
    proc = run_kdlab("distill", *RUN, "loss=ab", "resume=true", f"hydra.run.dir={run}", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    log = proc.stdout + proc.stderr
    assert "resuming init after epoch 1" in log
    assert "init epoch 1 |" not in log  # not trained again
    assert_same_run(run, reference)
