"""Run dirs written before the house's redesign keep working: as a teacher and resumed.

tests/fixtures/old_run is a 1-epoch resnet8 run on the synthetic set made by kdlab at 4fe2d01
(the last commit before the redesign) with the overrides below; optim.momentum=0 keeps its
checkpoints to the weights (about 0.35 MB each, no momentum buffers).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from harness import read_summary, run_kdlab

FIXTURE = Path(__file__).parent / "fixtures" / "old_run"
# The fixture's own overrides (.hydra/overrides.yaml): a resumed run must keep them.
OLD_RUN = [
    "model=resnet8",
    "data=synthetic",
    "experiment=quick",
    "optim.momentum=0",
    "data.train_size=64",
    "data.test_size=32",
    "data.val_split=0.01",
    "trainer.batch_size=32",
    "trainer.eval_batch_size=100",
    "trainer.log_every=2",
    "trainer.deterministic=true",
]


def copy_of_fixture(tmp_path: Path) -> Path:
    run = tmp_path / "old_run"
    shutil.copytree(FIXTURE, run)
    return run


def test_an_old_run_teaches_a_student(tmp_path):
    teacher = copy_of_fixture(tmp_path)
    proc = run_kdlab(
        "distill",
        "loss=kd",
        f"teacher.ckpt={teacher / 'checkpoints' / 'best.pt'}",
        *OLD_RUN,
        "trainer.epochs=1",
        "hydra.run.dir=student",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert read_summary(tmp_path / "student")["epochs"] == 1


def test_an_old_run_resumes(tmp_path):
    run = copy_of_fixture(tmp_path)
    proc = run_kdlab(
        "train", *OLD_RUN, "trainer.epochs=2", "resume=true", f"hydra.run.dir={run}", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert read_summary(run)["epochs"] == 2
