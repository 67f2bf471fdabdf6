"""Reliability end to end: kills and resumes, unsafe and damaged files, non-finite losses, a
full disk (the catalogue of bad input: tests/test_bad_input.py).

Runs are the real CLI in subprocesses on tiny data. Kills are real SIGKILLs; a full disk is a
real tmpfs (root only), or a real file-size limit (RLIMIT_FSIZE) which any user can set.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from faults import FAULTS
from harness import (
    BLOW_UP,
    FAST,
    TINY,
    RunsCode,
    read_summary,
    resume_one_more_epoch,
    run_kdlab,
    train_one_epoch,
)
from kdlab.api import load_run
from kdlab.data import DataBundle
from kdlab.engine.checkpoint import load_checkpoint
from kdlab.engine.execution import resolve_precision, seed_everything
from kdlab.engine.objective import CrossEntropy
from kdlab.engine.provenance import sha256_file
from kdlab.engine.run_logger import RunLogger, read_metrics
from kdlab.engine.stage import Stage
from kdlab.engine.trainer import RunPlace, Trainer
from kdlab.errors import KdlabError
from kdlab.models import build_model
from kdlab.runs.preflight import compose_config
from kdlab.runs.run_dir import guard_run_dir
from test_cli import assert_one_line_error

STEPS_PER_EPOCH = 5  # TINY: 160 train images in batches of 32


# --- running, killing, comparing ------------------------------------------------------------


def start_kdlab(*args: str, cwd: Path) -> subprocess.Popen:
    """`python -m kdlab ARGS` in the background (logs to stdout, errors to stderr)."""
    return subprocess.Popen(
        [sys.executable, "-m", "kdlab", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def saved_epoch(checkpoint: bytes) -> int:
    return torch.load(io.BytesIO(checkpoint), weights_only=True)["epoch"]


def wait_for_epoch(proc: subprocess.Popen, run_dir: Path, epoch: int) -> bytes:
    """The bytes of last.pt as soon as it holds `epoch` (or later), the run still going."""
    last = run_dir / "checkpoints" / "last.pt"
    while proc.poll() is None:
        if last.is_file():
            checkpoint = last.read_bytes()  # one whole file: saves replace it atomically
            if saved_epoch(checkpoint) >= epoch:
                return checkpoint
        time.sleep(0.05)
    _, err = proc.communicate()
    raise AssertionError(f"the run ended (exit {proc.returncode}) before epoch {epoch}: {err}")


def kill(proc: subprocess.Popen) -> None:
    proc.kill()  # SIGKILL: no handler, no cleanup, no flush
    proc.communicate()
    assert proc.returncode == -9


def finished(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    out, err = proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def untimed_records(run_dir: Path) -> list[dict]:
    return [
        {k: v for k, v in record.items() if not k.endswith("images_per_s")}
        for record in read_metrics(run_dir / "metrics.jsonl")
    ]


def assert_same_run(run: Path, reference: Path) -> None:
    """Bit-identical weights, the same accuracies and the same epoch records (timings apart)."""
    for name in ("last.pt", "best.pt"):
        ours = load_checkpoint(run / "checkpoints" / name)
        theirs = load_checkpoint(reference / "checkpoints" / name)
        assert (ours["epoch"], ours["stage"]) == (theirs["epoch"], theirs["stage"]), name
        assert ours["model"].keys() == theirs["model"].keys()
        assert all(torch.equal(ours["model"][k], theirs["model"][k]) for k in ours["model"]), name
    ours, theirs = read_summary(run), read_summary(reference)
    keys = ("epochs", "best_epoch", "train_acc", "val_acc", "test_acc", "last_val_acc")
    for key in (*keys, "last_test_acc", "loss"):
        assert ours[key] == theirs[key], key
    assert untimed_records(run) == untimed_records(reference)
    assert not list(run.rglob("*.tmp")), "temp files left behind"


# --- resume after a kill --------------------------------------------------------------------


def test_a_run_killed_mid_epoch_resumes_to_the_uninterrupted_result(tmp_path):
    reference, run = tmp_path / "reference", tmp_path / "killed"
    assert run_kdlab("train", *FAST, f"hydra.run.dir={reference}", cwd=tmp_path).returncode == 0
    proc = start_kdlab("train", *FAST, f"hydra.run.dir={run}", cwd=tmp_path)
    wait_for_epoch(proc, run, 1)
    kill(proc)
    assert not (run / "summary.json").exists(), "killed too late: the run had finished"

    proc = run_kdlab("train", *FAST, "resume=true", f"hydra.run.dir={run}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "resuming train after epoch" in proc.stdout
    assert [r["epoch"] for r in read_metrics(run / "metrics.jsonl")] == [1, 2]
    assert_same_run(run, reference)


@pytest.fixture(scope="module")
def synthetic_teacher(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("teacher")
    proc = run_kdlab(
        "train", "model=resnet8", *TINY, "trainer.epochs=1", "hydra.run.dir=t", cwd=cwd
    )
    assert proc.returncode == 0, proc.stderr
    return cwd / "t"


def fitnet_args(teacher: Path) -> list[str]:
    """Three epochs: stage one (epoch 1), then stage two (epochs 2 and 3)."""
    return [
        "fitnet",
        *FAST,
        "fitnet.stage1_epochs=1",
        "trainer.epochs=2",
        f"teacher.ckpt={teacher}",
    ]


@pytest.fixture(scope="module")
def fitnet_runs(synthetic_teacher, tmp_path_factory) -> tuple[Path, Path, bytes]:
    """An uninterrupted FitNet run; one killed in epoch 3; the last.pt of its stage one."""
    cwd = tmp_path_factory.mktemp("fitnet")
    reference, killed = cwd / "reference", cwd / "killed"
    args = fitnet_args(synthetic_teacher)
    proc = run_kdlab(*args, f"hydra.run.dir={reference}", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    proc = start_kdlab(*args, f"hydra.run.dir={killed}", cwd=cwd)
    stage_one_last = wait_for_epoch(proc, killed, 1)
    wait_for_epoch(proc, killed, 2)
    kill(proc)
    assert saved_epoch(stage_one_last) == 1, "polled too late to catch stage one's last.pt"
    return reference, killed, stage_one_last


@pytest.mark.parametrize(
    ("moment", "resumes"),
    [
        ("in_stage_two", "resuming stage2 after epoch 2"),
        # The disk as a kill leaves it between stage two's first best.pt and last.pt saves:
        # last.pt still stage one's, best.pt already stage two's.
        ("between_stage_two_saves", "resuming stage1 after epoch 1"),
    ],
)
def test_a_fitnet_run_killed_in_stage_two_resumes_its_stage(
    fitnet_runs, synthetic_teacher, tmp_path, moment, resumes
):
    reference, killed, stage_one_last = fitnet_runs
    run = tmp_path / "run"
    shutil.copytree(killed, run)
    assert load_checkpoint(run / "checkpoints" / "best.pt")["stage"] == "stage2"
    if moment == "between_stage_two_saves":
        (run / "checkpoints" / "last.pt").write_bytes(stage_one_last)
    args = fitnet_args(synthetic_teacher)
    proc = run_kdlab(*args, "resume=true", f"hydra.run.dir={run}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert resumes in proc.stdout
    assert_same_run(run, reference)
    assert read_summary(run)["stages"].keys() == {"stage1", "stage2"}


# Saves both checkpoints of an "epoch" i, over and over; every tensor element holds i.
HAMMERED_WRITER = """
import sys
from pathlib import Path
import torch
from kdlab.engine.checkpoint import save_checkpoint
directory = Path(sys.argv[1])
for i in range(10**9):
    state = {"model": {"w": torch.full((2_000_000,), float(i))}, "config": {}, "epoch": i}
    for name in ("best.pt", "last.pt"):
        save_checkpoint(state, directory / name)
    print(i, flush=True)
"""


def test_kills_during_saves_never_leave_a_torn_checkpoint(tmp_path):
    """SIGKILL a process that does nothing but save, at random moments, a few times."""
    ckpt_dir = tmp_path / "checkpoints"
    timing = random.Random(0)
    for _ in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-c", HAMMERED_WRITER, str(ckpt_dir)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout.readline()  # one whole round saved: from now on, replacements
        time.sleep(timing.uniform(0.0, 0.3))
        kill(proc)
        for name in ("best.pt", "last.pt"):
            weights = load_checkpoint(ckpt_dir / name)["model"]["w"]
            assert weights.numel() == 2_000_000 and bool((weights == weights[0]).all()), name
    state = guard_run_dir(tmp_path, resume=True)  # what `resume=true` does first
    assert state.model["w"].numel() == 2_000_000
    assert not list(ckpt_dir.glob("*.tmp")), "the resume did not remove killed writes' temp files"


# --- safe loading ---------------------------------------------------------------------------


CRAFTED_FORMATS: dict[str, tuple[Callable[[dict, Path], None], Callable[[Path], object]]] = {
    # format: (write the payload, load it unsafely)
    "torch_zip": (torch.save, lambda path: torch.load(path, weights_only=False)),
    "plain_pickle": (
        lambda payload, path: path.write_bytes(pickle.dumps(payload)),
        lambda path: pickle.loads(path.read_bytes()),
    ),
}


@pytest.mark.parametrize("fmt", CRAFTED_FORMATS)
@pytest.mark.parametrize("use", ["teacher", "resume"])
def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, fmt, use):
    marker = tmp_path / "MARKER"
    run = tmp_path / "run"
    if use == "teacher":
        crafted = tmp_path / "teacher.pt"
        args = ["distill", *FAST, f"teacher.ckpt={crafted}", f"hydra.run.dir={run}"]
    else:
        crafted = run / "checkpoints" / "last.pt"
        args = ["train", *FAST, "resume=true", f"hydra.run.dir={run}"]
    crafted.parent.mkdir(parents=True, exist_ok=True)
    write, unsafe_load = CRAFTED_FORMATS[fmt]
    write({"model": RunsCode(f"touch {marker}"), "config": {}}, crafted)

    proc = run_kdlab(*args, cwd=tmp_path)
    assert_one_line_error(proc, f"refusing to load {crafted}", "only load checkpoints you trust")
    assert not marker.exists(), "kdlab ran the crafted file's code"
    with contextlib.suppress(Exception):  # the payload is real: an unsafe load runs it
        unsafe_load(crafted)
    assert marker.exists()


# --- non-finite losses ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("milestone", "message"),
    [
        # The lr explodes from epoch 2's first step: its next losses are NaN.
        ("0.5", "loss became non-finite by epoch 2, step 2"),
        # Only epoch 2's last step explodes: every train loss is finite, the weights are not
        # usable any more (validation is NaN); that epoch must not be saved either.
        # (10 steps: the lr of step index 9 >= 0.875 * 10 is the exploded one)
        ("0.875", "val/loss became non-finite by epoch 2"),
    ],
)
def test_a_nonfinite_loss_stops_the_run_keeping_the_last_good_checkpoint(
    tmp_path, milestone, message
):
    run = tmp_path / "run"
    args = ["train", *FAST, *BLOW_UP, f"sched.milestones=[{milestone}]", f"hydra.run.dir={run}"]
    proc = start_kdlab(*args, cwd=tmp_path)
    epoch_one = wait_for_epoch(proc, run, 1)
    assert saved_epoch(epoch_one) == 1
    assert_one_line_error(finished(proc), message, "trainer.skip_nonfinite=true")
    assert (run / "checkpoints" / "last.pt").read_bytes() == epoch_one
    assert load_checkpoint(run / "checkpoints" / "best.pt")["epoch"] == 1
    assert [r["epoch"] for r in read_metrics(run / "metrics.jsonl")] == [1]


def test_skip_nonfinite_counts_the_skipped_batches_and_finishes(tmp_path):
    run = tmp_path / "run"
    args = [*BLOW_UP, "sched.milestones=[0.5]", "trainer.skip_nonfinite=true"]
    proc = run_kdlab("train", *FAST, *args, f"hydra.run.dir={run}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    # Epoch 2's first step is finite and blows the weights up; the batches after it are not.
    assert 0 < read_summary(run)["skipped_batches"] < STEPS_PER_EPOCH
    records = read_metrics(run / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2]
    assert math.isfinite(records[1]["train/loss"]), "skipped batches leaked into the mean"


class Batches:
    """Fixed (x, y) batches with the BatchLoader interface: test data for the engine."""

    def __init__(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.batches = batches
        self.num_samples = sum(len(y) for _, y in batches)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)

    def set_epoch(self, epoch: int) -> None:
        """Every epoch serves the same batches."""


def fit_resnet8(batches: list, run_dir: Path, skip_nonfinite: bool) -> tuple[Trainer, dict]:
    """Two epochs of the engine on `batches` at a constant lr, from a fixed initialisation."""
    cfg = compose_config(
        "train",
        [
            "model=resnet8",
            "data=synthetic",
            "sched=constant",
            "trainer.epochs=2",
            "trainer.log_every=1",
            f"trainer.skip_nonfinite={skip_nonfinite}",
        ],
    )
    seed_everything(0)
    model = build_model("resnet8", 10)
    loader = Batches(batches)
    data = DataBundle("synthetic", 10, [str(c) for c in range(10)], 32, loader, None, loader)
    run_dir.mkdir()
    cpu = torch.device("cpu")
    precision = resolve_precision(cfg.trainer.precision, cpu)
    place = RunPlace(run_dir, cpu, precision, RunLogger(run_dir), False, {})
    trainer = Trainer(model, data, cfg.trainer, cfg.optim, cfg.sched, place)
    trainer.fit(Stage("train", CrossEntropy(), [{"params": list(model.parameters())}], 2))
    return trainer, model.state_dict()


@pytest.fixture
def batches() -> tuple[list, list]:
    """Four clean batches, and the same four with two NaN-holding batches among them."""
    gen = torch.Generator().manual_seed(0)
    clean = [
        (torch.randn(8, 3, 32, 32, generator=gen), torch.randint(0, 10, (8,), generator=gen))
        for _ in range(4)
    ]
    nan_x = clean[0][0].clone()
    nan_x[0, 0, 0, 0] = math.nan
    poisoned = [clean[0], (nan_x, clean[0][1]), clean[1], clean[2], (nan_x, clean[0][1]), clean[3]]
    return clean, poisoned


def test_skip_nonfinite_skips_exactly_the_nan_batches_and_leaves_no_trace(tmp_path, batches):
    """Training past NaN batches must equal training without them, BatchNorm statistics too."""
    clean, poisoned = batches
    skipping, with_nan = fit_resnet8(poisoned, tmp_path / "poisoned", skip_nonfinite=True)
    plain, without_nan = fit_resnet8(clean, tmp_path / "clean", skip_nonfinite=False)
    assert (skipping.skipped_batches, plain.skipped_batches) == (4, 0)
    assert with_nan.keys() == without_nan.keys()
    assert all(torch.equal(with_nan[k], without_nan[k]) for k in with_nan)
    last = load_checkpoint(tmp_path / "poisoned" / "checkpoints" / "last.pt")
    assert last["skipped_batches"] == 4


def test_without_skip_nonfinite_a_nan_batch_stops_at_its_step(tmp_path, batches):
    _, poisoned = batches
    with pytest.raises(KdlabError, match=r"^loss became non-finite by epoch 1, step 2: ") as stop:
        fit_resnet8(poisoned, tmp_path / "run", skip_nonfinite=False)
    assert not (tmp_path / "run" / "checkpoints").exists()
    # No checkpoint was written, and fp32 advice only to a run in lower precision.
    assert "checkpoint kept" not in str(stop.value)
    fp32 = resolve_precision("auto", torch.device("cpu")) == "32"
    assert ("trainer.precision=32" in str(stop.value)) != fp32


# --- a full disk, a read-only output dir ----------------------------------------------------


@contextlib.contextmanager
def tmpfs(mount_point: Path, options: str) -> Iterator[Path]:
    """A real tmpfs (root only: skips the test where mounting is not allowed)."""
    mount_point.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory) -> Path:
    return train_one_epoch(tmp_path_factory.mktemp("one_epoch"))


def disk_bytes(directory: Path) -> int:
    """What the files take on a tmpfs: whole 4 KiB pages."""
    sizes = [p.stat().st_size for p in directory.rglob("*") if p.is_file()]
    return sum(-(-size // 4096) * 4096 for size in sizes)


# The tmpfs case (a real ENOSPC, needs root) goes through the same save path as the
# file-size limit (EFBIG) and is slower to set up: it runs with -m slow.
@pytest.mark.parametrize("full", [pytest.param("tmpfs", marks=pytest.mark.slow), "file_size_limit"])
def test_a_full_disk_while_saving_is_one_line_and_keeps_the_checkpoints(
    one_epoch_run, tmp_path, full
):
    checkpoint_size = (one_epoch_run / "checkpoints" / "last.pt").stat().st_size
    with contextlib.ExitStack() as stack:
        if full == "tmpfs":  # room for the run and half a checkpoint more
            size = disk_bytes(one_epoch_run) + checkpoint_size // 2
            run = stack.enter_context(tmpfs(tmp_path / "disk", f"size={size}")) / "run"
            limit = None
        else:
            run, limit = tmp_path / "run", checkpoint_size // 2
        shutil.copytree(one_epoch_run, run)
        before = {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()}
        proc = resume_one_more_epoch(run, limit)
        assert_one_line_error(proc, "cannot write", "pick another hydra.run.dir")
        after = {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()}
        assert after == before, "a checkpoint was lost, changed or left half-written"
        assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 1


# --- one writer per run dir, and resumes with the run's own settings ------------------------


def test_a_second_run_into_a_running_run_dir_is_refused_and_a_killed_ones_lock_is_not(tmp_path):
    run = tmp_path / "run"
    args = ["train", *FAST, "trainer.epochs=4"]
    first = start_kdlab(*args, f"hydra.run.dir={run}", cwd=tmp_path)
    wait_for_epoch(first, run, 1)
    first.send_signal(signal.SIGSTOP)  # mid-run, holding its lock, however slow the machine
    assert first.poll() is None, "the first run ended before the second started"
    record = files_under(run / ".hydra")
    second = run_kdlab(*args, f"hydra.run.dir={run}", cwd=tmp_path)
    assert_one_line_error(second, f"{run} is in use by another kdlab run (pid {first.pid})")
    assert files_under(run / ".hydra") == record, "the second run wrote its Hydra record"
    assert len(list(run.glob("events.out.tfevents.*"))) == 1
    kill(first)  # SIGKILL (a stopped process dies too): its lock file stays, the kernel's not
    assert (run / ".kdlab.lock").read_text().strip() == str(first.pid)
    epochs = [r["epoch"] for r in read_metrics(run / "metrics.jsonl")]
    assert epochs == list(range(1, len(epochs) + 1)), "two writers interleaved the records"

    proc = run_kdlab(*args, "resume=true", f"hydra.run.dir={run}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [r["epoch"] for r in read_metrics(run / "metrics.jsonl")] == list(range(1, 5))


def test_a_resume_with_changed_settings_is_refused_naming_them(one_epoch_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(one_epoch_run, run)
    before = files_under(run)
    changed = ["data.train_size=300", "optim.lr=0.1", "trainer.epochs=2", "trainer.progress=off"]
    proc = run_kdlab("train", *FAST, *changed, "resume=true", f"hydra.run.dir={run}", cwd=tmp_path)
    assert_one_line_error(
        proc,
        "resume=true but data.train_size changed (300 vs 160 in the run), "
        "optim.lr changed (0.1 vs 0.05 in the run) in ",
        "resume with the run's own settings",
        "or start a new run",
    )
    assert files_under(run) == before
    allowed = ["trainer.epochs=2", "trainer.progress=off", "trainer.log_every=5"]  # extended
    proc = run_kdlab("train", *FAST, *allowed, "resume=true", f"hydra.run.dir={run}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [r["epoch"] for r in read_metrics(run / "metrics.jsonl")] == [1, 2]


@contextlib.contextmanager
def refusing_writes(directory: Path) -> Iterator[Path]:
    """A directory nothing can be written into: read-only mode bits do not stop root, a
    read-only mount does."""
    if os.geteuid() == 0:
        with tmpfs(directory, "ro,size=64k"):
            yield directory
        return
    directory.mkdir()
    directory.chmod(0o500)
    try:
        yield directory
    finally:
        directory.chmod(0o700)


def test_an_output_dir_that_refuses_writes_is_one_line(tmp_path):
    with refusing_writes(tmp_path / "locked") as locked:
        proc = run_kdlab("train", *FAST, f"hydra.run.dir={locked / 'run'}", cwd=tmp_path)
    assert_one_line_error(proc, f"cannot write to {locked / 'run'}", "pick another hydra.run.dir")


def files_under(directory: Path) -> dict[Path, bytes]:
    """Every file (Hydra's record and log included) with its bytes."""
    return {p: p.read_bytes() for p in directory.rglob("*") if p.is_file()}


# --- a run's inputs are pinned: its teacher, its checkpoints' records (issue 25) -------------


def distill_args(*more: str) -> list[str]:
    """A student of the newest resnet8 teacher run under teachers/."""
    return ["distill", *FAST, "teacher.model=resnet8", "teacher.search_dir=teachers", *more]


def test_a_resumed_run_keeps_the_teacher_it_started_with(tmp_path):
    """Stopped after epoch 1 (a 1-epoch run, then extended); a newer teacher run appears in the
    search dir: the resume uses the first teacher, pinned by its sha256, and refuses once that
    file is replaced (record and all)."""
    teachers = tmp_path / "teachers"
    proc = run_kdlab("train", *FAST, "trainer.epochs=1", "hydra.run.dir=teachers/t1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = run_kdlab(*distill_args("trainer.epochs=1", "hydra.run.dir=s"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    shutil.copytree(tmp_path / "s", tmp_path / "reference")
    proc = run_kdlab(
        "train", *FAST, "trainer.epochs=1", "seed=1", "hydra.run.dir=teachers/t2", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr

    resume = distill_args("resume=true", "hydra.run.dir=s")
    proc = run_kdlab(*resume, "trainer.epochs=2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    # The reference names teacher t1, relative (the pin holds its absolute path).
    named = ["teacher.ckpt=teachers/t1", "hydra.run.dir=reference"]
    proc = run_kdlab(*distill_args("trainer.epochs=2", "resume=true", *named), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert_same_run(tmp_path / "s", tmp_path / "reference")
    t1_best = teachers / "t1" / "checkpoints" / "best.pt"
    assert read_summary(tmp_path / "s")["teacher"]["sha256"] == sha256_file(t1_best)

    for name in ("best.pt", "best.pt.json"):  # t1 replaced by t2, its record too
        shutil.copy(teachers / "t2" / "checkpoints" / name, t1_best.with_name(name))
    before = files_under(tmp_path / "s")
    proc = run_kdlab(*resume, "trainer.epochs=3", cwd=tmp_path)
    assert_one_line_error(
        proc, f"resume=true but teacher {t1_best} is not the one this run started with"
    )
    assert files_under(tmp_path / "s") == before


def test_load_run_refuses_a_checkpoint_that_differs_from_its_record(one_epoch_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(one_epoch_run, run)
    best = run / "checkpoints" / "best.pt"
    state = torch.load(best, weights_only=True)
    first = next(iter(state["model"]))
    state["model"][first] += 1e-3
    torch.save(state, best)
    with pytest.raises(KdlabError, match=r"restore it, or pass allow_modified=True"):
        load_run(run)
    loaded = load_run(run, allow_modified=True)
    torch.testing.assert_close(loaded.model.state_dict()[first], state["model"][first])


# --- the fault catalogue (faults) ------------------------------------------------------


def test_every_fault_names_a_test_that_exists():
    root = Path(__file__).resolve().parents[1]
    missing = []
    for fault in FAULTS:
        path, _, name = fault.test.partition("::")
        source = root / path
        defined = source.is_file() and f"def {name}(" in source.read_text()
        if not defined:
            missing.append(fault.test)
    assert not missing, f"FAULTS names tests that do not exist: {missing}"
