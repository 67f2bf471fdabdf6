"""`kdlab study NOTE`: a research note's whole study as one command.

Each run of `conf/study/NOTE.yaml` is an ordinary `kdlab` job in its own sub-dir of one
study dir, run by the Hydra launcher the user names (kdlab.cli.waves): the teacher is trained
once (or reused), then the students; finished runs are skipped and interrupted ones resumed,
so re-running a study dir continues it. A study with `generations:` (born_again) chains its
student run: generation k distils from generation k-1 of the same seed. At the end the report
table and figures are written into the study dir.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from kdlab.cli.commands.study_jobs import GRIDS, WaveJob, split_study_args, study_names
from kdlab.cli.launchers import check_launcher, split_launcher_args
from kdlab.errors import KdlabError, OneLineParser
from kdlab.paths import check_output_dir, config_dir


@dataclass
class StudyRun:
    """One run of a plan; `by_preset` adds args under one `experiment=` preset (a teacher's
    longer budget on Fashion-MNIST: see conf/experiment/fashion.yaml); `defaults` are args
    the user's overrides replace; `teacher_run` names the run whose same-seed run dir is this
    run's teacher (default: the study's teacher)."""

    name: str
    command: str
    args: list[str] = field(default_factory=list)
    teacher: bool = False
    by_preset: dict[str, list[str]] = field(default_factory=dict)
    defaults: list[str] = field(default_factory=list)
    teacher_run: str = ""

    def args_for(self, shared: list[str]) -> list[str]:
        """The defaults, the shared overrides, this run's args, then its preset's (which win)."""
        preset = next((o.split("=", 1)[1] for o in shared if o.startswith("experiment=")), "")
        return [*self.defaults, *shared, *self.args, *self.by_preset.get(preset, [])]


def load_study(name: str) -> tuple[dict, list[StudyRun]]:
    path = config_dir() / "study" / f"{name}.yaml"
    if not path.is_file():
        raise KdlabError(f"unknown study '{name}': choose one of {', '.join(study_names())}")
    spec = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    runs = [StudyRun(**run) for run in spec.pop("runs")]
    return spec, runs


def split_generations(spec: dict, overrides: list[str]) -> tuple[int, list[str]]:
    """`generations=N` of a study that chains generations (its default: the spec's)."""
    given = [o.removeprefix("generations=") for o in overrides if o.startswith("generations=")]
    rest = [o for o in overrides if not o.startswith("generations=")]
    if "generations" not in spec:
        if given:
            raise KdlabError("generations= belongs to the born_again study: kdlab study "
                             "born_again generations=3")  # fmt: skip
        return 0, rest
    value = given[-1] if given else str(spec["generations"])
    if not value.isdigit() or int(value) < 1:
        raise KdlabError(f"generations must be a positive integer, got '{value}' (generations=3)")
    return int(value), rest


def chained(runs: list[StudyRun], generations: int) -> list[StudyRun]:
    """The teacher, then the student run once per generation, each taught by the one before
    (Furlanello et al., 2018: born-again networks)."""
    teacher, student = runs
    students = [
        StudyRun(f"gen{k}", student.command, student.args, defaults=student.defaults,
                 teacher_run=f"gen{k - 1}" if k > 1 else "")
        for k in range(1, generations + 1)
    ]  # fmt: skip
    return [teacher, *students]


def with_preset(overrides: list[str]) -> list[str]:
    """Default to synthetic data and pick the preset that fits the data set."""
    from kdlab.data import DATASETS  # the registry imports torch: after the argv's own checks

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
) -> list[WaveJob]:
    """Every job: the teacher once, students once per seed, each needing its teacher's run."""
    teacher = next((r.name for r in runs if r.teacher), "teacher")
    jobs = []
    for run in runs:
        if run.teacher:
            if teacher_ckpt is None:
                jobs.append(WaveJob(run.name, run.command, (*run.args_for(shared), "seed=0")))
            continue
        for seed in range(seeds):
            args = [*run.args_for(shared), f"seed={seed}"]
            needs: tuple[str, ...] = ()
            if run.command != "train":
                source = seed_sub(run.teacher_run, seeds, seed) if run.teacher_run else teacher
                needs = (source,) if run.teacher_run or teacher_ckpt is None else ()
                ckpt = study_dir / source if needs else teacher_ckpt
                args.append(f"teacher.ckpt={ckpt}")
            jobs.append(WaveJob(seed_sub(run.name, seeds, seed), run.command, tuple(args), needs))
    return jobs


def seed_sub(name: str, seeds: int, seed: int) -> str:
    return name if seeds == 1 else f"{name}/seed{seed}"


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
    parser.add_argument(
        "overrides", nargs="*",
        help="key=value for every run, seeds=N, generations=N (born_again) and the launcher's "
        "hydra/launcher=NAME hydra.launcher.KEY=VALUE",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, help="study dir (default outputs/study/NAME/TIME)")
    parser.add_argument("--teacher", help="reuse this teacher checkpoint or run dir")
    args = parser.parse_intermixed_args(list(argv))  # options may come between overrides
    spec, runs = load_study(args.study)
    launcher, overrides = split_launcher_args(args.overrides)
    seeds, overrides = split_study_args(overrides)
    generations, overrides = split_generations(spec, overrides)
    check_launcher(launcher)
    study_dir = args.out or Path("outputs/study") / args.study / time.strftime("%Y-%m-%d_%H-%M-%S")
    study_dir = study_dir.absolute()
    check_output_dir(study_dir, "--out")

    from kdlab.cli.waves import run_waves, unfinished_line
    from kdlab.runs.preflight import check_overrides

    if generations:
        runs = chained(runs, generations)
    jobs = planned_jobs(runs, with_preset(overrides), seeds, study_dir, args.teacher)
    for job in jobs:
        args = [a for a in job.args if not a.startswith("teacher.ckpt=")]
        check_overrides(job.command, args, False, teachers=False)  # the study trains them
    study_dir.mkdir(parents=True, exist_ok=True)
    print(f"{spec['description']}\nstudy dir: {study_dir} ({len(jobs)} runs)", flush=True)
    started = time.perf_counter()
    unfinished = run_waves(jobs, study_dir, launcher)
    finished = [job for job in jobs if job.sub not in unfinished]
    if finished:
        write_study_report(spec, finished, study_dir)
    minutes, seconds = divmod(int(time.perf_counter() - started), 60)
    print(f"study done in {minutes}m{seconds:02d}s: {study_dir}")
    if unfinished:
        raise KdlabError(unfinished_line(unfinished, len(jobs), study_dir))


def write_study_report(spec: dict, jobs: list[WaveJob], study_dir: Path) -> None:
    """The report of the study's finished `jobs`: each run's seeds pooled under its name."""
    from kdlab.cli.commands.report import print_written, write_report  # matplotlib: ~1 s

    first_of_each: dict[str, str] = {}  # per-class figures: one (the first) seed per run
    for job in jobs:
        first_of_each.setdefault(job.sub.split("/")[0], job.sub)
    baseline = first_of_each.get(spec.get("baseline", ""))  # its seeds are pooled in the Δ
    written = write_report(
        [study_dir],
        out=study_dir,
        baseline=str(study_dir / baseline) if baseline else None,
        curves=True,
        per_class=[str(study_dir / sub) for sub in first_of_each.values()]
        if len(first_of_each) > 1
        else None,  # a comparison: one finished run has none
        labels={str(study_dir / name): name for name in first_of_each},  # seeds share it
    )
    print_written(written)
