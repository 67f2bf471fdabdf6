"""`kdlab study NOTE`: a research note's whole study as one command.

Each run of `conf/study/NOTE.yaml` is an ordinary `kdlab` job in its own sub-dir of one
study dir (its own process: clean memory, the usual outputs). The teacher is trained once
(or reused), then the students; finished runs are skipped, so re-running a study dir
continues it. At the end the report table and figures are written into the study dir.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from kdlab.cli.commands.report import print_written, write_report
from kdlab.cli.commands.study_jobs import GRIDS, job_command, split_study_args, study_names
from kdlab.data import DATASETS
from kdlab.errors import KdlabError, OneLineParser
from kdlab.paths import check_output_dir, config_dir
from kdlab.runs.preflight import check_overrides


@dataclass
class StudyRun:
    """One run of a plan; `by_preset` adds args under one `experiment=` preset (a teacher's
    longer budget on Fashion-MNIST: see conf/experiment/fashion.yaml)."""

    name: str
    command: str
    args: list[str]
    teacher: bool = False
    by_preset: dict[str, list[str]] = field(default_factory=dict)

    def args_for(self, shared: list[str]) -> list[str]:
        """The shared overrides, this run's args, then its preset's (which win)."""
        preset = next((o.split("=", 1)[1] for o in shared if o.startswith("experiment=")), "")
        return [*shared, *self.args, *self.by_preset.get(preset, [])]


def load_study(name: str) -> tuple[dict, list[StudyRun]]:
    path = config_dir() / "study" / f"{name}.yaml"
    if not path.is_file():
        raise KdlabError(f"unknown study '{name}': choose one of {', '.join(study_names())}")
    spec = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    runs = [StudyRun(**run) for run in spec.pop("runs")]
    return spec, runs


def with_preset(overrides: list[str]) -> list[str]:
    """Default to synthetic data and pick the preset that fits the data set."""
    keys = {o.split("=", 1)[0] for o in overrides}
    out = list(overrides)
    if "data" not in keys:
        out.insert(0, "data=synthetic")
    if "experiment" not in keys:
        data = next(o.split("=", 1)[1] for o in out if o.startswith("data="))
        spec = DATASETS.get(data)  # an unknown name fails in the pre-flight, listing the valid
        out.insert(0, f"experiment={spec.preset if spec else 'cifar'}")
    return out


def planned_jobs(
    runs: list[StudyRun], shared: list[str], seeds: int, study_dir: Path, teacher_ckpt: str | None
) -> list[tuple[str, str, list[str]]]:
    """(sub-dir, command, args) of every job; the teacher once, students once per seed."""
    teacher_dir = study_dir / next((r.name for r in runs if r.teacher), "teacher")
    teacher_arg = f"teacher.ckpt={teacher_ckpt or teacher_dir}"
    jobs = []
    for run in runs:
        if run.teacher:
            if teacher_ckpt is None:
                jobs.append((run.name, run.command, [*run.args_for(shared), "seed=0"]))
            continue
        for seed in range(seeds):
            sub = run.name if seeds == 1 else f"{run.name}/seed{seed}"
            args = [*run.args_for(shared), f"seed={seed}"]
            if run.command != "train":
                args.append(teacher_arg)
            jobs.append((sub, run.command, args))
    return jobs


def run_job(sub: str, command: str, args: list[str], study_dir: Path) -> None:
    run_dir = study_dir / sub
    if (run_dir / "summary.json").is_file():
        print(f"== {sub}: finished already, kept", flush=True)
        return
    cmd = job_command(command, args, run_dir)
    print(f"== {sub}: kdlab {' '.join(cmd[3:-1])}", flush=True)
    code = subprocess.call(cmd)
    if code != 0:
        raise KdlabError(
            f"study run '{sub}' failed (exit {code}); fix it and rerun the same command with "
            f"--out {study_dir} to continue where it stopped"
        )


def main(argv: Sequence[str]) -> None:
    if not argv:
        raise KdlabError(f"name a study: kdlab study NAME, one of {', '.join(study_names())}")
    if argv[0] in GRIDS:  # a generated grid, not a note's plan
        from kdlab.cli.commands.study_grid import main as grid_main

        grid_main(argv[1:])
        return
    parser = OneLineParser(
        prog="kdlab study",
        description="Run a research note's study (teacher, baseline, students) and report it. "
        "Extra key=value overrides go to every run (e.g. data=cifar10 trainer.precision=bf16); "
        "seeds=N repeats every student N times (mean +- std in the report).",
    )
    parser.add_argument("study", help=f"which study: {', '.join(study_names())}")
    parser.add_argument("overrides", nargs="*", help="key=value for every run, and seeds=N")
    parser.add_argument("--out", type=Path, help="study dir (default outputs/study/NAME/TIME)")
    parser.add_argument("--teacher", help="reuse this teacher checkpoint or run dir")
    args = parser.parse_intermixed_args(list(argv))  # options may come between overrides
    spec, runs = load_study(args.study)
    seeds, overrides = split_study_args(args.overrides)
    shared = with_preset(overrides)
    study_dir = args.out or Path("outputs/study") / args.study / time.strftime("%Y-%m-%d_%H-%M-%S")
    jobs = planned_jobs(runs, shared, seeds, study_dir, args.teacher)

    for _, command, job_args in jobs:
        check_overrides(command, [a for a in job_args if not a.startswith("teacher.ckpt=")], False)
    check_output_dir(study_dir, "--out")
    study_dir.mkdir(parents=True, exist_ok=True)
    print(f"{spec['description']}\nstudy dir: {study_dir} ({len(jobs)} runs)", flush=True)
    started = time.perf_counter()
    for sub, command, job_args in jobs:
        run_job(sub, command, job_args, study_dir)

    first_of_each: dict[str, str] = {}  # per-class figures: one (the first) seed per run
    for sub, _, _ in jobs:
        first_of_each.setdefault(sub.split("/")[0], sub)
    baseline = first_of_each.get(spec.get("baseline", ""))  # its seeds are pooled in the Δ
    written = write_report(
        [study_dir],
        out=study_dir,
        baseline=str(study_dir / baseline) if baseline else None,
        curves=True,
        per_class=[str(study_dir / sub) for sub in first_of_each.values()],
        labels={str(study_dir / name): name for name in first_of_each},  # seeds share it
    )
    print_written(written)
    minutes, seconds = divmod(int(time.perf_counter() - started), 60)
    print(f"study done in {minutes}m{seconds:02d}s: {study_dir}")
