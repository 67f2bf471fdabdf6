"""`kdlab report`: the comparison tables, sweep ledgers and figures of finished runs."""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from kdlab.errors import KdlabError, OneLineParser
from kdlab.paths import check_output_dir, deepest_existing, remove_new_dir
from kdlab.report.compare import (
    SORTS,
    baseline_group,
    comparison_records,
    comparison_table,
    footnote,
    split_sections,
)
from kdlab.report.confusion import plot_confusion
from kdlab.report.curves import write_curves
from kdlab.report.describe import headline, resolve_baseline, teacher_dirs
from kdlab.report.labels import label_runs, parse_label
from kdlab.report.per_class import (
    column_names,
    highlights,
    per_class_records,
    per_class_table,
    write_per_class_png,
)
from kdlab.report.plotting import report_colours
from kdlab.report.runs import (
    DEFAULT_SEARCH,
    SUMMARY,
    Run,
    common_parent,
    display_path,
    find_runs,
    resolve_run,
)
from kdlab.report.sweep import aggregate_sweep
from kdlab.report.tables import cannot_write, write_csv, write_text


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="kdlab report",
        description="Compare finished runs: a table like the research notes' (seeds pooled "
        "into mean ± std, Δ against a baseline of the same data set), one table per data set "
        "and per Hydra sweep dir (plus its summary.csv/md ledger), and optional figures. "
        "Reads only the run dirs.",
    )
    parser.add_argument(
        "runs",
        nargs="*",
        default=[DEFAULT_SEARCH],
        metavar="RUNS",
        help="run dirs, sweep dirs, globs, or dirs searched for summary.json "
        f"(default: {DEFAULT_SEARCH}/), or mlflow:EXPERIMENT (the runs of logger=[...,mlflow] "
        "in MLFLOW_TRACKING_URI, else outputs/mlruns); put them before --per-class",
    )
    parser.add_argument(
        "--baseline",
        metavar="RUN",
        help="run dir, label or name (as in the table), or 'baseline' (the students' model's "
        "plain cross-entropy run) that Δ is measured against, on its data set only",
    )
    parser.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="NAME=RUN",
        help="call RUN (a run dir, a dir of runs such as a study's kd/, or a run's name) NAME "
        "in the tables and figures; repeatable (default: the run's dir below the last "
        "timestamp dir, less seedN, else what it is, e.g. 'fitnet stage2=frozen')",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="where report.md/.csv and the figures go (default: the dir holding all the "
        "runs, e.g. outputs/)",
    )
    parser.add_argument(
        "--curves",
        action="store_true",
        help="plot per epoch, across runs: the cross-entropy on the labels, the accuracy, "
        "and the distillation runs' objective, soft and fit losses",
    )
    parser.add_argument(
        "--per-class",
        nargs="+",
        metavar="RUN",
        help="per-class test accuracy of these runs side by side, and its change against "
        "--baseline (default: the first of them); also their confusion heat-maps",
    )
    add_speed_options(parser)
    parser.add_argument(
        "--sort",
        choices=sorted(SORTS),
        default="notes",
        help="row order: notes (teacher, baseline, then the students), name, or best "
        "val/test accuracy first (default: notes)",
    )
    return parser


def add_speed_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--speed",
        action="store_true",
        help="also time each run's selected model: images/s at batch 1 and 64 (fp32, "
        "inference only; a second or a few a run)",
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="where --speed times the models: auto (cuda > mps > cpu, the default), cpu, cuda",
    )


def report_tables(runs: Sequence[Run], baseline: Run | None, sort: str, out: Path) -> list[Path]:
    """Print what was compared and one table per section; write them to report.md/.csv."""
    base = baseline_group(baseline, runs) if baseline else None
    teachers = teacher_dirs(runs)
    compared = headline(runs)
    print("compared: " + " | ".join(compared) + "\n")
    records: list[dict[str, Any]] = []
    markdown = ["# kdlab report", "\n".join(f"- {item}" for item in compared)]
    for section in split_sections(runs):
        section_records = comparison_records(section, base, sort, teachers)
        table = comparison_table(section_records, section)
        note = footnote(section_records, section, base)
        print(f"== {section.title} ==\n{table.text()}\n{note}\n")
        markdown += [f"## {section.title}", table.markdown(), note]
        records += section_records
    write_text("\n\n".join(markdown) + "\n", out / "report.md")
    write_csv(records, out / "report.csv")
    return [out / "report.md", out / "report.csv"]


def report_sweeps(runs: Sequence[Run]) -> list[Path]:
    """Rewrite each sweep's ledger (summary.csv/md), naming its failed jobs."""
    written = []
    for sweep_dir in dict.fromkeys(run.sweep_dir for run in runs if run.sweep_dir):
        jobs = aggregate_sweep(sweep_dir)
        failed = [job["job"] for job in jobs if job["status"] == "failed"]
        if failed:
            print(f"sweep {display_path(sweep_dir)}: failed jobs: {', '.join(failed)}")
        written += [sweep_dir / "summary.md", sweep_dir / "summary.csv"]
    return written


def report_per_class(
    refs: Sequence[str],
    baseline: Run | None,
    runs: Sequence[Run],
    out: Path,
    colours: Mapping[Run, Any],
) -> list[Path]:
    """Per-class accuracy table and bars against the baseline, and confusion heat-maps."""
    chosen = [resolve_run(ref, runs) for ref in refs]
    if baseline is not None:
        chosen = [baseline, *(run for run in chosen if run != baseline)]
    chosen = list(dict.fromkeys(chosen))
    if len(chosen) < 2:
        raise KdlabError("--per-class needs two runs or more (or one and --baseline)")
    records = per_class_records(chosen)
    names = column_names(chosen)
    print(f"== per-class test accuracy %, Δ against {names[0]} ==")
    print(per_class_table(records).text())
    print("\n".join(highlights(records)) + "\n")
    write_csv(records, out / "per_class.csv")
    png = write_per_class_png(records, chosen, out / "per_class.png", colours)
    written = [out / "per_class.csv", png]
    for run, name in zip(chosen, names, strict=True):
        if (run.path / "confusion.csv").is_file():
            slug = re.sub(r"[^\w.,=-]+", "_", name)
            png = plot_confusion(run.path / "confusion.csv", out / f"confusion_{slug}.png", name)
            written.append(png)
    return written


def gather_runs(
    refs: Sequence[Path | str], named: Sequence[str], labels: Mapping[str, str] | None
) -> list[Run]:
    """The runs found in `refs`, plus run dirs `named` (--baseline, --per-class) that lie
    elsewhere, with their labels."""
    runs = find_runs(refs)
    for ref in named:
        if (Path(ref).expanduser() / SUMMARY).is_file():
            run = resolve_run(ref, runs)
            if run not in runs:
                runs.append(run)
    return label_runs(runs, labels)


def timed_runs(runs: Sequence[Run], device_name: str) -> list[Run]:
    """The runs with their models' images/s on the device (and size and MACs, which runs
    recorded before summary.json had them lack); a run without a checkpoint says why."""
    from kdlab.deploy import run_speed
    from kdlab.engine.execution import pick_device

    device = pick_device(device_name)
    print(f"timing {len(runs)} run(s) on {device} ...", flush=True)
    timed = []
    for run in runs:
        try:
            figures = {**run_speed(run.path, device), "speed_device": str(device)}
        except KdlabError as error:
            print(f"no speed for {run.label}: {error}")
            figures = {}
        timed.append(replace(run, summary={**run.summary, **figures}))
    return timed


def finished_runs(runs: Sequence[Run]) -> list[Run]:
    """The runs the tables compare; the failed ones (summary.json `status: failed`, written
    when a run fails during training) are listed with their error instead."""
    failed = [run for run in runs if run.get("status") == "failed"]
    for run in failed:
        what = f"{run.get('command')} {run.get('model')}"
        print(f"failed run {run.label} ({what}): {run.get('error')}")
    finished = [run for run in runs if run not in failed]
    if not finished:
        raise KdlabError(f"no finished runs, {len(failed)} failed: fix the error and run again")
    if failed:
        print()
    return finished


def write_report(
    runs: Sequence[Path | str],
    *,
    out: Path | None = None,
    baseline: str | None = None,
    curves: bool = False,
    per_class: Sequence[str] | None = None,
    labels: Mapping[str, str] | None = None,
    sort: str = "notes",
    speed: str | None = None,
) -> list[Path]:
    """The report of the finished runs in `runs` (run dirs, sweep dirs, globs, dirs above
    runs) written into `out` (default: the dir holding them all); returns the files written.

    `labels` maps a RUN (run dir, dir above runs, or run name) to what the tables and
    figures call it; `baseline` and `per_class` name runs by dir, label or name; `speed`
    names a device that times every run's model (images/s at batch 1 and 64).
    """
    found = finished_runs(
        gather_runs(runs, [*([baseline] if baseline else []), *(per_class or [])], labels)
    )
    if speed is not None:
        found = timed_runs(found, speed)
    base = resolve_baseline(baseline, found) if baseline else None
    # The runs of an MLflow store: the report goes into the cwd, not into the store
    tracked = any(str(ref).startswith("mlflow:") for ref in runs)
    out = out or (Path.cwd() if tracked else common_parent(run.path for run in found))
    check_output_dir(out, "--out")
    existing = deepest_existing(out.absolute())
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise cannot_write(out, error) from error
    try:
        colours = report_colours(found, base)
        written = report_tables(found, base, sort, out)
        written += report_sweeps(found)
        if curves:
            written += write_curves(found, out, colours)
        if per_class:
            written += report_per_class(per_class, base, found, out, colours)
    except BaseException:
        if existing != out.absolute():  # a dir it made holds only what it wrote: not kept
            remove_new_dir(out.absolute(), existing)
        raise
    return written


def main(argv: Sequence[str]) -> None:
    args = build_parser().parse_args(list(argv))
    written = write_report(
        args.runs,
        out=args.out,
        baseline=args.baseline,
        curves=args.curves,
        per_class=args.per_class,
        labels=dict(parse_label(text) for text in args.label),
        sort=args.sort,
        speed=args.device if args.speed else None,
    )
    print_written(written)


def print_written(paths: Sequence[Path]) -> None:
    print("wrote:\n" + "\n".join(f"  {display_path(path)}" for path in paths))
