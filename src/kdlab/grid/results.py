"""The grid's report: per cell, ours over the seeds beside the published figure, and Δ.

Ours is the test accuracy at two epochs, both shown and labelled: `best` = kdlab's selected
checkpoint (best validation accuracy; summary.json `test_acc`), `last` = the last epoch's
(`last_test_acc`). The difference is taken like with like: a published last-epoch figure
(RepDistiller) against our last epoch, a best-epoch one (mdistiller) against our best (theirs
is the best epoch on the test split itself, ours selected on the validation split).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kdlab.engine.provenance import Provenance
from kdlab.grid.plan import Cell, Plan
from kdlab.paths import checkpoint_in
from kdlab.published import Figure, published_accuracy, published_figure
from kdlab.report import Stat, write_difference_heatmap
from kdlab.report.tables import write_text

COLUMNS = (
    "pair", "method", "seeds", "best_mean", "best_std", "last_mean", "last_std",
    "published", "protocol", "source", "delta", "note",
)  # fmt: skip


PROTOCOL = (
    "Test accuracy %, mean ± std over the seeds. Ours at two epochs: best = the checkpoint of "
    "best validation accuracy, last = the final epoch. Published: its own epoch (RepDistiller: "
    "last; mdistiller: best, on the test split). Δ = ours at the published figure's epoch "
    "minus the published figure."
)


@dataclass(frozen=True)
class CellResult:
    cell: Cell
    seeds: int  # finished runs
    best: Stat  # test accuracy of the selected (best validation) checkpoint, %
    last: Stat  # test accuracy of the last epoch, %
    published: Figure | None
    note: str = ""  # unavailable, not run, failed runs

    @property
    def delta(self) -> float | None:
        """Ours minus published, at the published figure's epoch."""
        if self.published is None:
            return None
        ours = self.last if self.published.source.protocol == "last" else self.best
        return None if ours.mean is None else ours.mean - self.published.top1


def read_finished(run_dir: Path) -> dict | None:
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return summary if summary.get("status") == "finished" else None


def cell_result(cell: Cell, study_dir: Path, data: str) -> CellResult:
    figure = published_figure(data, cell.pair.teacher, cell.pair.student, cell.method)
    summaries = [s for s in (read_finished(study_dir / sub) for sub in cell.subs) if s]
    note = cell.unavailable
    if not note and len(summaries) < len(cell.subs):
        note = f"{len(cell.subs) - len(summaries)} of {len(cell.subs)} runs not finished"
    return CellResult(
        cell,
        len(summaries),
        Stat.of([s.get("test_acc") for s in summaries]),
        Stat.of([s.get("last_test_acc") for s in summaries]),
        figure,
        note,
    )


def teacher_lines(plan: Plan, data: str) -> list[str]:
    """Each teacher named by the hash of its checkpoint, with its own and published accuracy."""
    lines = []
    for arch, where in plan.teachers.items():
        ckpt = checkpoint_in(where)
        published = published_accuracy(data, arch)
        theirs = f"published {published.top1:.2f}% ({published.source.epoch})" if published else ""
        if not ckpt.is_file():
            lines.append(f"- teacher {arch}: not trained yet ({where})")
            continue
        provenance = Provenance.of(ckpt)
        lines.append(f"- teacher {arch}: {provenance.describe()}; {theirs or 'none published'}")
    return lines


def fmt(stat: Stat) -> str:
    if stat.mean is None:
        return "-"
    return f"{stat.mean:.2f}" + ("" if stat.std is None else f" ± {stat.std:.2f}")


def markdown(results: Sequence[CellResult], header: Sequence[str]) -> str:
    head = (
        "| pair | method | seeds | ours, best epoch | ours, last epoch | published | "
        "Δ (ours − published) | note |\n|---|---|---:|---:|---:|---:|---:|---|"
    )
    rows = []
    for r in results:
        fig = r.published
        theirs = f"{fig.top1:.2f} ({fig.source.epoch}, {fig.source.name})" if fig else "-"
        delta = "-" if r.delta is None else f"{r.delta:+.2f}"
        rows.append(
            f"| {r.cell.pair.name} | {r.cell.method} | {r.seeds} | {fmt(r.best)} | "
            f"{fmt(r.last)} | {theirs} | {delta} | {r.note} |"
        )
    return "\n".join([*header, "", head, *rows]) + "\n"


def write_csv(results: Sequence[CellResult], path: Path) -> None:
    def num(value: float | None) -> str:
        return "" if value is None else f"{value:.4f}"

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for r in results:
        fig = r.published
        writer.writerow([
            r.cell.pair.name, r.cell.method, r.seeds, num(r.best.mean), num(r.best.std),
            num(r.last.mean), num(r.last.std), num(fig.top1 if fig else None),
            fig.source.protocol if fig else "", fig.source.cite() if fig else "",
            num(r.delta), r.note,
        ])  # fmt: skip
    write_text(buffer.getvalue(), path)


def write_heatmap(results: Sequence[CellResult], path: Path, data: str) -> Path:
    """Rows: pairs; columns: methods; colour: ours − published at the published epoch."""
    pairs = list(dict.fromkeys(r.cell.pair.name for r in results))
    methods = list(dict.fromkeys(r.cell.method for r in results))
    by_cell = {(r.cell.pair.name, r.cell.method): r.delta for r in results}
    values = [[by_cell.get((pair, method)) for method in methods] for pair in pairs]
    return write_difference_heatmap(
        pairs,
        methods,
        values,
        path,
        f"{data}: ours − published test accuracy (points, at the published figure's epoch)",
        "ours − published (points)",
    )


def write_grid_report(plan: Plan, study_dir: Path, data: str, header: Sequence[str]) -> list[Path]:
    """grid.md, grid.csv and grid_delta.png in the study dir; grid.md is also printed."""
    results = [cell_result(cell, study_dir, data) for cell in plan.cells]
    lines = [*header, *teacher_lines(plan, data), "", PROTOCOL]
    text = markdown(results, lines)
    paths = [study_dir / "grid.md", study_dir / "grid.csv", study_dir / "grid_delta.png"]
    write_text(text, paths[0])
    write_csv(results, paths[1])
    write_heatmap(results, paths[2], data)
    print(text, flush=True)
    return paths
