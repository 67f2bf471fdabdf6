"""The notes-shaped comparison table: one row per config (seeds pooled), Δ to a baseline.

Runs outside any sweep form one section; each Hydra sweep dir forms its own, since a
sweep's jobs are compared with each other rather than with unrelated runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdlab.report.groups import RunGroup, group_by_seed
from kdlab.report.runs import Run, display_path, natural_key
from kdlab.report.tables import ACC_KEYS, LOSS_KEYS, Table, best_first, summary_key

COLUMNS = [
    "run",
    "command",
    "model",
    "params",
    *ACC_KEYS,
    "d_val_acc",
    "d_test_acc",
    "best_epoch",
    *LOSS_KEYS,
    "wall_time_s",
]
POOLED_KEYS = (*ACC_KEYS, *LOSS_KEYS, "wall_time_s")


SORTS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "name": lambda record: natural_key(record["run"]),
    "val": best_first("val_acc"),
    "test": best_first("test_acc"),
}


@dataclass(frozen=True)
class Section:
    """Runs reported in one table: the runs outside sweeps, or one sweep's jobs."""

    title: str
    runs: list[Run]
    sweep_dir: Path | None


def split_sections(runs: Sequence[Run]) -> list[Section]:
    """Loose runs first, then one section per sweep dir in the order they were found."""
    by_sweep: dict[Path | None, list[Run]] = {None: []}
    for run in runs:
        by_sweep.setdefault(run.sweep_dir, []).append(run)
    sections = [
        Section(f"sweep {display_path(sweep)}", members, sweep)
        for sweep, members in by_sweep.items()
        if sweep is not None
    ]
    if by_sweep[None]:
        sections.insert(0, Section("runs", by_sweep[None], None))
    return sections


def baseline_group(baseline: Run, runs: Sequence[Run]) -> RunGroup:
    """The baseline's seeds pooled as its own row is, so Δ compares like with like."""
    peers = [run for run in runs if run.sweep_dir == baseline.sweep_dir]
    return next(group for group in group_by_seed(peers) if baseline in group.runs)


def comparison_records(
    section: Section, baseline: RunGroup | None = None, sort: str = "name"
) -> list[dict[str, Any]]:
    """One CSV-ready record per config: means, `<key>_std` over seeds, Δ to the baseline."""
    records = []
    for group in group_by_seed(section.runs):
        record: dict[str, Any] = {
            "section": section.title,
            "run": group.name,
            "command": group.first.get("command"),
            "model": group.first.get("model"),
            "params": group.first.get("params"),
            "seeds": " ".join(group.seeds),
        }
        for key in POOLED_KEYS:
            stat = group.stat(summary_key(key))
            record[key], record[f"{key}_std"] = stat.mean, stat.std
        for key in ("val_acc", "test_acc"):
            base = baseline.stat(key).mean if baseline else None
            record[f"d_{key}"] = None if base is None or record[key] is None else record[key] - base
        record["best_epoch"] = "/".join(dict.fromkeys(str(r.get("best_epoch")) for r in group.runs))
        record["run_dirs"] = " ".join(str(run.path) for run in group.runs)
        records.append(record)
    return sorted(records, key=SORTS[sort])


def comparison_table(records: Sequence[dict[str, Any]]) -> Table:
    return Table.from_records(records, COLUMNS)


def footnote(baseline: RunGroup | None) -> str:
    text = "accuracies in %; a ± b = mean ± sample std over seeds; loss parts: last epoch (train)"
    return f"{text}; Δ = points against {baseline.name}" if baseline else text
