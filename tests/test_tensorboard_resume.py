"""A resumed run's TensorBoard curves are the uninterrupted run's, in both x-axis units."""

from __future__ import annotations

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from harness import TINY, run_kdlab

# A constant lr: a 1-epoch run continued to 2 epochs then trains as a 2-epoch run does.
# 256 train images in batches of 32: 8 steps an epoch.
FLAT = ["model=resnet8", *TINY, "data.train_size=256", "trainer.deterministic=true"]
FLAT.append("sched=multistep")
FLAT.append("sched.milestones=[]")


def curves(run_dir: Path) -> dict[str, list[tuple[int, float | None]]]:
    """Every scalar tag's (step, value) points as TensorBoard shows them (timings: steps)."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {
        tag: [
            (e.step, None if tag.endswith("images_per_s") else e.value) for e in events.Scalars(tag)
        ]
        for tag in events.Tags()["scalars"]
    }


def train(cwd: Path, name: str, epochs: int, *more: str) -> Path:
    run = cwd / name
    args = [*FLAT, f"trainer.epochs={epochs}", *more, f"hydra.run.dir={run}"]
    proc = run_kdlab("train", *args, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return run


def test_a_resumed_runs_curves_equal_the_uninterrupted_runs(tmp_path):
    reference = train(tmp_path, "reference", 2)
    train(tmp_path, "resumed", 1)
    resumed = train(tmp_path, "resumed", 2, "resume=true")
    ours, theirs = curves(resumed), curves(reference)
    assert ours["train_step/loss"] == theirs["train_step/loss"]
    assert [step for step, _ in ours["train_step/loss"]] == [2, 4, 6, 8, 10, 12, 14, 16]
    assert [step for step, _ in ours["val/acc"]] == [1, 2]
    assert ours == theirs
    assert not list(resumed.rglob("*.tmp"))


def test_resuming_twice_keeps_one_copy_of_every_point(tmp_path):
    train(tmp_path, "run", 1)
    train(tmp_path, "run", 2, "resume=true")
    run = train(tmp_path, "run", 2, "resume=true")  # resumes a finished run: trains nothing
    steps = [step for step, _ in curves(run)["train_step/loss"]]
    assert steps == list(range(2, 17, 2))
    assert [step for step, _ in curves(run)["val/acc"]] == [1, 2]
