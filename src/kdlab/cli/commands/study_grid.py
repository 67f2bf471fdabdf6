"""`kdlab study cifar100`: the CRD/DKD CIFAR-100 grid as one command (plan: kdlab.grid).

Every run is an ordinary `kdlab train|distill` job in its own dir of one study dir, run by
the Hydra launcher the user names (kdlab.cli.waves); teachers first, then the students.
Finished runs are kept, stopped ones resumed, failed ones listed (delete the dir to retry),
so re-running the same command with `--out DIR` continues the grid. A failed run does not
stop the others. At the end the grid's report (grid.md, grid.csv, grid_delta.png) is written
into the study dir.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from kdlab.cli.commands.study_jobs import WaveJob, split_study_args
from kdlab.cli.launchers import check_launcher, split_launcher_args
from kdlab.cli.waves import run_state, run_waves, unfinished_line
from kdlab.errors import KdlabError, OneLineParser
from kdlab.grid.plan import (
    OWNED,
    RECIPE,
    SMALL_LR,
    Job,
    Plan,
    build_plan,
    merge,
    override_key,
    parse_methods,
    parse_pairs,
)
from kdlab.grid.results import write_grid_report
from kdlab.paths import check_output_dir, checkpoint_in
from kdlab.runs.preflight import check_overrides

CIFAR100_TRAIN = 50_000  # images in CIFAR-100's train split (before kdlab's val split)


def parse(argv: Sequence[str]) -> tuple[object, list[str]]:
    parser = OneLineParser(
        prog="kdlab study cifar100",
        description="The CRD/DKD CIFAR-100 grid: teacher-student pairs x methods with the "
        "references' recipe, then ours beside the published figures. pairs=all|same|cross|"
        "T-S,... methods=all|kd,dkd,... seeds=N; hydra/launcher=NAME hydra.launcher.KEY=VALUE "
        "pick the launcher; other key=value go to every run.",
    )
    parser.add_argument(
        "overrides", nargs="*", help="pairs=, methods=, seeds=, hydra/launcher=, key=value"
    )
    parser.add_argument("--out", type=Path, help="study dir (default outputs/study/cifar100/TIME)")
    parser.add_argument(
        "--teacher", action="append", default=[], metavar="ARCH=PATH",
        help="use this checkpoint or run dir as ARCH's teacher (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--jobs", type=int,
        help="deprecated: hydra/launcher=joblib hydra.launcher.n_jobs=N runs N at once",
    )  # fmt: skip
    parser.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    args = parser.parse_intermixed_args(list(argv))
    if args.jobs is None:
        return args, args.overrides
    if args.jobs < 1:
        raise KdlabError(f"--jobs must be a positive integer, got {args.jobs} (--jobs 4)")
    joblib = ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={args.jobs}"]
    print(f"kdlab: --jobs is deprecated: it means {' '.join(joblib)}", file=sys.stderr)
    return args, [*args.overrides, *joblib]


def given_teachers(items: Sequence[str]) -> dict[str, str]:
    given = {}
    for item in items:
        arch, sep, path = item.partition("=")
        if not sep or not arch or not path:
            raise KdlabError(f"--teacher takes ARCH=PATH, got '{item}' (--teacher resnet56=run)")
        if not checkpoint_in(path).is_file():
            raise KdlabError(f"--teacher {item}: no checkpoint {checkpoint_in(path)}")
        given[arch] = str(Path(path).expanduser().resolve())
    return given


def grid_options(overrides: Sequence[str]) -> tuple[str, str, list[str]]:
    """pairs=, methods= (and seeds=, split off by the caller) belong to the grid."""
    pairs, methods, rest = "all", "all", []
    for override in overrides:
        key, _, value = override.partition("=")
        if key == "pairs":
            pairs = value
        elif key == "methods":
            methods = value
        elif override_key(override) in OWNED:
            raise KdlabError(
                f"'{override}' is set by the grid per run: choose pairs=, methods= and seeds=N "
                "instead (and --teacher ARCH=PATH for a teacher)"
            )
        else:
            rest.append(override)
    return pairs, methods, rest


def check_jobs(plan: Plan) -> None:
    """Compose and check one job of each kind (the rest differ only by model and seed)."""
    kinds: dict[tuple[str, ...], Job] = {}
    for job in plan.jobs:
        loss = next((o for o in job.args if o.startswith("loss=")), "")
        kinds.setdefault((job.command, loss), job)
    for job in kinds.values():
        args = [a for a in job.args if not a.startswith("teacher.ckpt=")]
        check_overrides(job.command, args, False, teachers=False)  # the grid trains them


def shown_args(job: Job, shared: Sequence[str], study_dir: Path) -> str:
    """A job's own overrides (the shared recipe is printed once), paths below the study dir
    relative to it."""
    own = [a for a in job.args if a not in shared]
    return " ".join(a.replace(f"{study_dir}/", "") for a in own)


def epoch_images(shared: Sequence[str]) -> int | None:
    """Training images per epoch when the runs train on CIFAR-100's whole train split less
    kdlab's val split; None when the overrides change the data."""
    values = {override_key(o): o.split("=", 1)[1] for o in shared}
    if values.get("data") != "cifar100" or "data.train_size" in values:
        return None
    return round(CIFAR100_TRAIN * (1 - float(values.get("data.val_split", 0.1))))


def print_total(
    plan: Plan, states: dict[str, int], cost: float, work: float, shared: Sequence[str]
) -> None:
    done = ", ".join(f"{n} {state}" for state, n in states.items())
    images = epoch_images(shared)
    total = (
        f"x {images:,} images per epoch = {work * images / 1e18:,.1f} EFLOP"
        if images
        else "x the images of an epoch"
    )
    print(
        f"total: {len(plan.jobs)} runs ({done}); {cost:,.0f} student-epoch equivalents; "
        f"{work / 1e12:,.1f} TFLOP per training image ({total})"
    )
    print("cost: epochs of the run's model alone, a teacher forward = 1/3 of a student step "
          "scaled by their FLOPs (docs/studies.md, The CIFAR-100 grid)")  # fmt: skip


def print_plan(plan: Plan, study_dir: Path, shared: list[str]) -> None:
    from kdlab.grid.cost import job_cost  # builds models on the meta device: torch

    print(f"recipe of every run: {' '.join(shared)} (optim.lr 0.01 for {', '.join(SMALL_LR)})")
    for arch, path in plan.given.items():
        print(f"teacher {arch}: given, {path}")
    print(f"{'state':<8} {'cost':>8} {'TFLOP/img':>9}  run")
    total_cost = total_work = 0.0
    states: dict[str, int] = {}
    for job in plan.jobs:
        cost, state = job_cost(job), run_state(study_dir / job.sub)
        states[state] = states.get(state, 0) + 1
        total_cost += cost.epochs
        total_work += cost.flops_per_image
        print(
            f"{state:<8} {cost.epochs:>8.1f} {cost.flops_per_image / 1e12:>9.3f}  {job.sub}: "
            f"kdlab {job.command} {shown_args(job, shared, study_dir)}"
        )
    print_unavailable(plan)
    print_total(plan, states, total_cost, total_work, shared)


def print_unavailable(plan: Plan) -> None:
    reasons: dict[str, list[str]] = {}
    for cell in plan.cells:
        if cell.unavailable:
            reasons.setdefault(cell.unavailable, []).append(f"{cell.pair.name}/{cell.method}")
    for reason, cells in reasons.items():
        print(f"not run, {reason}: {len(cells)} cells ({', '.join(cells)})")


def wave_jobs(plan: Plan) -> list[WaveJob]:
    """The plan's jobs, each distillation run needing its teacher's run (when planned)."""
    return [
        WaveJob(job.sub, job.command, job.args, (f"teacher/{job.teacher}",) if job.teacher else ())
        for job in plan.jobs
    ]


def main(argv: Sequence[str]) -> None:
    args, overrides = parse(argv)
    launcher, overrides = split_launcher_args(overrides)
    seeds, overrides = split_study_args(overrides)
    pairs, methods, overrides = grid_options(overrides)
    study_dir = args.out or Path("outputs/study/cifar100") / time.strftime("%Y-%m-%d_%H-%M-%S")
    study_dir = study_dir.absolute()
    plan = build_plan(
        parse_pairs(pairs), parse_methods(methods), seeds, overrides,
        given_teachers(args.teacher), study_dir,
    )  # fmt: skip
    shared = merge(RECIPE, overrides)
    data = next(o.split("=", 1)[1] for o in shared if override_key(o) == "data")
    check_launcher(launcher)
    check_jobs(plan)
    print(f"CIFAR-100 grid: {len(plan.cells)} cells, {seeds} seed(s); study dir: {study_dir}")
    if args.dry_run:
        print_plan(plan, study_dir, shared)
        return
    check_output_dir(study_dir, "--out")
    study_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    unfinished = run_waves(wave_jobs(plan), study_dir, launcher)
    header = [f"# The CIFAR-100 grid on data={data}", "", f"recipe: `{' '.join(shared)}`", ""]
    write_grid_report(plan, study_dir, data, header)
    minutes, seconds = divmod(int(time.perf_counter() - started), 60)
    print(f"grid done in {minutes}m{seconds:02d}s: {study_dir}")
    if unfinished:
        raise KdlabError(unfinished_line(unfinished, len(plan.jobs), study_dir))
