"""DDP under torchrun on CPU (gloo, 2 processes): one run dir, rank 0 writes, same figures.

The comparison runs are tiny (2 epochs of 256 images), so both models stay near chance:
what they show is that the distributed run follows the single-process optimisation (same
images per step, same init, same learning rate), not that either model is good.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from harness import TINY, read_summary, run_kdlab
from kdlab.cli.main import main
from kdlab.engine.checkpoint import load_checkpoint, model_from_checkpoint

# The same config for both launches: trainer.batch_size=32 is the global batch either way.
RUN = ["model=cnn_student", *TINY, "trainer.deterministic=true"]
# Tolerances of the DDP-vs-single comparison. The ranks normalise with BatchNorm statistics
# of 16 images each instead of 32, and the running statistics come from rank 0's halves; on
# tiny near-chance models that moves a few borderline predictions: 5 points is 5 of the 100
# test images or 3 of the 64 val images. Mean losses (over 100-256 images) move far less.
ACC_POINTS = 5.0
LOSS_ABS = 0.05
CONTRACT = {
    ".kdlab.lock",
    ".hydra/config.yaml",
    ".hydra/hydra.yaml",
    ".hydra/overrides.yaml",
    "checkpoints/best.pt",
    "checkpoints/best.pt.json",
    "checkpoints/last.pt",
    "confusion.csv",
    "confusion.png",
    "metrics.jsonl",
    "summary.json",
}


def launch(*args: str, cwd: Path, nproc: int, env: dict[str, str] | None = None):
    """`kdlab ARGS` under torchrun with `nproc` ranks (the single-process runs they are
    compared with run in this process: harness.run_kdlab)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    command = [torchrun, "--standalone", f"--nproc_per_node={nproc}", "-m", "kdlab", *args]
    return subprocess.run(command, cwd=cwd, env=full_env, capture_output=True, text=True)


def run_files(run_dir: Path) -> set[str]:
    """The run dir's files, relative, with the (host and pid named) event file generalised."""
    names = {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file()}
    return {"events" if n.startswith("events.out.tfevents.") else n for n in names}


def epochs_of(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(single-process run dir, DDP run dir, the DDP run's working dir)."""
    single_cwd = tmp_path_factory.mktemp("single")
    single = single_cwd / "run"
    proc = run_kdlab("train", *RUN, f"hydra.run.dir={single}", cwd=single_cwd)
    assert proc.returncode == 0, proc.stderr
    ddp_cwd = tmp_path_factory.mktemp("ddp")
    proc = launch("train", *RUN, cwd=ddp_cwd, nproc=2)  # the default, time-stamped run dir
    assert proc.returncode == 0, proc.stderr
    (summary,) = (ddp_cwd / "outputs").rglob("summary.json")
    return single, summary.parent, ddp_cwd


def test_ddp_writes_one_run_dir_and_nothing_else(runs):
    single, ddp, ddp_cwd = runs
    assert [p.name for p in ddp_cwd.iterdir()] == ["outputs"]
    (only,) = (ddp_cwd / "outputs" / "train").glob("*/*")  # one ${now} dir, from rank 0
    assert only == ddp
    assert run_files(ddp) == run_files(single) == CONTRACT | {"events", "train.log"}
    assert [r["epoch"] for r in epochs_of(ddp)] == [1, 2]


def test_ddp_summary_has_the_single_process_shape(runs):
    single, ddp, _ = runs
    a, b = read_summary(single), read_summary(ddp)
    assert a.keys() == b.keys()
    assert (a["world_size"], b["world_size"]) == (1, 2)
    assert a["overrides"] == b["overrides"]
    rows = (ddp / "confusion.csv").read_text().splitlines()[1:]
    total = sum(int(count) for row in rows for count in row.split(",")[1:])
    assert total == 100, "the test figures cover the whole split, not one rank's half"


def test_ddp_matches_one_process_with_the_same_global_batch(runs):
    single, ddp, _ = runs
    a, b = read_summary(single), read_summary(ddp)
    for key in ("val_acc", "test_acc", "last_val_acc"):
        assert abs(a[key] - b[key]) <= ACC_POINTS, (key, a[key], b[key])
    assert abs(a["test_loss"] - b["test_loss"]) <= LOSS_ABS
    for ra, rb in zip(epochs_of(single), epochs_of(ddp), strict=True):
        for key in ("train/loss", "val/loss"):
            assert abs(ra[key] - rb[key]) <= LOSS_ABS, (ra["epoch"], key, ra[key], rb[key])


def test_ddp_checkpoint_resumes_in_one_process(runs, tmp_path):
    """A DDP run's checkpoints hold the plain model: a single process resumes and re-tests it."""
    _, ddp, _ = runs
    copy = tmp_path / "copy"
    shutil.copytree(ddp, copy)
    state = load_checkpoint(copy / "checkpoints" / "last.pt")
    assert not any(key.startswith("module.") for key in state["model"])  # no DDP wrapper
    model_from_checkpoint(state)  # a strict load into the plain model
    proc = run_kdlab("train", *RUN, f"hydra.run.dir={copy}", "resume=true", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    resumed = read_summary(copy)
    assert resumed["world_size"] == 1
    assert resumed["test_acc"] == pytest.approx(read_summary(ddp)["test_acc"], abs=1e-9)


@pytest.mark.slow
def test_fitnet_under_torchrun_with_a_single_process_teacher(runs, tmp_path):
    single, _, _ = runs
    args = [
        *RUN,
        "trainer.epochs=1",
        "fitnet.stage1_epochs=1",
        f"teacher.ckpt={single}",
        "hydra.run.dir=fit/${now:%H-%M-%S-%f}",  # rank 0 resolves it for every rank
    ]
    proc = launch("fitnet", *args, cwd=tmp_path, nproc=2)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "fit").iterdir()
    assert run_files(run_dir) == CONTRACT | {"events", "fitnet.log", "checkpoints/stage1.pt"}
    summary = read_summary(run_dir)
    assert summary["world_size"] == 2
    assert set(summary["stages"]) == {"stage1", "stage2"}
    assert summary["teacher"]["ckpt"] == str(single / "checkpoints" / "best.pt")


def _fitnet_ranks(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    """One rank of both FitNet stages through the engine; saves its weights after each."""
    from kdlab.cli.commands.fitnet import hint_stage, kd_stage
    from kdlab.data import build_data
    from kdlab.engine.execution import resolve_precision
    from kdlab.engine.run_logger import NullLogger
    from kdlab.engine.trainer import RunPlace, Trainer
    from kdlab.methods.teacher import FrozenTeacher
    from kdlab.models import build_model
    from kdlab.runs.preflight import compose_config

    torch.set_num_threads(1)  # two ranks on two cores
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        overrides = [*TINY, "trainer.epochs=1", "fitnet.stage1_epochs=1", "stage2=frozen"]
        cfg = compose_config("fitnet", overrides)
        device = torch.device("cpu")
        data = build_data(
            cfg.data,
            batch_size=cfg.trainer.batch_size // world_size,
            eval_batch_size=100,
            device=device,
            seed=cfg.seed,
            rank=rank,
            world_size=world_size,
        )
        torch.manual_seed(0)
        teacher = FrozenTeacher(build_model("resnet8", 10))
        student = build_model("cnn_student", 10)
        initial = {k: v.clone() for k, v in student.state_dict().items()}
        precision = resolve_precision(cfg.trainer.precision, device)
        place = RunPlace(Path(out_dir), device, precision, NullLogger(), False, {})
        trainer = Trainer(student, data, cfg.trainer, cfg.optim, cfg.sched, place)
        stage1, prefix = hint_stage(cfg, teacher, student, data.image_size)
        trainer.fit(stage1)
        after1 = {k: v.clone() for k, v in student.state_dict().items()}
        regressor = {k: v.clone() for k, v in stage1.objective.regressor.state_dict().items()}
        trainer.fit(kd_stage(cfg, teacher, student, prefix), epoch_offset=1)
        weights = {"initial": initial, "stage1": after1, "regressor": regressor}
        torch.save({**weights, "stage2": student.state_dict()}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ranks_stay_identical_through_both_fitnet_stages(tmp_path):
    """Stage one runs only the student's prefix (and a regressor outside the model): its
    gradients must still be averaged over the ranks, and stage two's with a frozen prefix."""
    mp.spawn(_fitnet_ranks, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for part in ("stage1", "regressor", "stage2"):
        for key, value in r0[part].items():
            assert torch.equal(value, r1[part][key]), (part, key)
    changed = {k for k, v in r0["stage1"].items() if not torch.equal(v, r0["initial"][k])}
    assert "block1.0.0.weight" in changed and "head.2.weight" not in changed  # the prefix trained


def one_line_error(args: list[str], capsys) -> str:
    """Run the CLI in this process; it must stop with exit code 2 and one line on stderr."""
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kdlab: error: "), lines
    return lines[0]


@pytest.fixture
def as_rank_1_of_2(monkeypatch, tmp_path):
    """The environment torchrun gives its second process (before the process group is joined)."""
    monkeypatch.chdir(tmp_path)
    for key, value in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(key, value)


def test_global_batch_must_split_over_the_ranks(as_rank_1_of_2, capsys):
    error = one_line_error(["train", *RUN, "trainer.batch_size=33"], capsys)
    assert "trainer.batch_size=33" in error and "2 torchrun processes" in error


def test_multirun_under_torchrun_is_refused(as_rank_1_of_2, capsys):
    error = one_line_error(["train", "-m", *RUN, "seed=1,2"], capsys)
    assert "--multirun" in error and "hydra/launcher" in error
