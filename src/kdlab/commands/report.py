"""`kdlab report`: the comparison tables, sweep ledgers and figures of finished runs."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kdlab.errors import KdlabError, OneLineParser
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
from kdlab.report.per_class import (
    highlights,
    per_class_records,
    per_class_table,
    write_per_class_png,
)
from kdlab.report.runs import (
    DEFAULT_SEARCH,
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
        "into mean ± std, Δ against a baseline), one table per Hydra sweep dir plus its "
        "summary.csv/md ledger, and optional figures. Reads only the run dirs.",
    )
    parser.add_argument(
        "runs",
        nargs="*",
        default=[DEFAULT_SEARCH],
        metavar="RUNS",
        help="run dirs, sweep dirs, globs, or dirs searched for summary.json "
        f"(default: {DEFAULT_SEARCH}/); put them before --per-class",
    )
    parser.add_argument(
        "--baseline",
        metavar="RUN",
        help="run dir or run name (as in the table) that Δval/Δtest are measured against",
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
        help="plot loss, accuracy and loss parts per epoch, overlaid across runs",
    )
    parser.add_argument(
        "--per-class",
        nargs="+",
        metavar="RUN",
        help="per-class test accuracy of these runs side by side, and its change against "
        "--baseline (default: the first of them); also their confusion heat-maps",
    )
    parser.add_argument(
        "--sort",
        choices=sorted(SORTS),
        default="name",
        help="row order: name, or best val/test accuracy first (default: name)",
    )
    return parser


def report_tables(runs: Sequence[Run], baseline: Run | None, sort: str, out: Path) -> list[Path]:
    """Print one comparison table per section; write them all to report.md and report.csv."""
    base = baseline_group(baseline, runs) if baseline else None
    records: list[dict[str, Any]] = []
    markdown = ["# kdlab report"]
    for section in split_sections(runs):
        section_records = comparison_records(section, base, sort)
        table = comparison_table(section_records)
        print(f"== {section.title} ==\n{table.text()}\n{footnote(base)}\n")
        markdown += [f"## {section.title}", table.markdown(), footnote(base)]
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
    refs: Sequence[str], baseline: Run | None, runs: Sequence[Run], out: Path
) -> list[Path]:
    """Per-class accuracy table and bars against the baseline, and confusion heat-maps."""
    chosen = [resolve_run(ref, runs) for ref in refs]
    if baseline is not None:
        chosen = [baseline, *(run for run in chosen if run != baseline)]
    chosen = list(dict.fromkeys(chosen))
    if len(chosen) < 2:
        raise KdlabError("--per-class needs two runs or more (or one and --baseline)")
    records = per_class_records(chosen)
    print(f"== per-class test accuracy %, Δ against {chosen[0].name} ==")
    print(per_class_table(records).text())
    print("\n".join(highlights(records)) + "\n")
    write_csv(records, out / "per_class.csv")
    written = [out / "per_class.csv", write_per_class_png(records, chosen, out / "per_class.png")]
    for run in chosen:
        if (run.path / "confusion.csv").is_file():
            slug = re.sub(r"[^\w.,=-]+", "_", run.name)
            written.append(
                plot_confusion(run.path / "confusion.csv", out / f"confusion_{slug}.png")
            )
    return written


def main(argv: Sequence[str]) -> None:
    args = build_parser().parse_args(list(argv))
    runs = find_runs(args.runs)
    baseline = resolve_run(args.baseline, runs) if args.baseline else None
    if baseline is not None and baseline not in runs:
        runs.append(baseline)
    out = args.out or common_parent(run.path for run in runs)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise cannot_write(out, error) from error
    written = report_tables(runs, baseline, args.sort, out)
    written += report_sweeps(runs)
    if args.curves:
        written += write_curves(runs, out)
    if args.per_class:
        written += report_per_class(args.per_class, baseline, runs, out)
    print("wrote:\n" + "\n".join(f"  {display_path(path)}" for path in written))
