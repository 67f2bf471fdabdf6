"""The notes-shaped comparison table: one row per config (seeds pooled), Δ to a baseline.

Runs are compared only with runs of the same data set: each data set gets its own
sections, and Δ is measured only where the baseline ran on that data set. Within a data
set, the runs outside any sweep form one section and each Hydra sweep dir its own (with
the overrides its jobs vary as columns, as in the sweep's summary.md).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdlab.report.describe import data_key, data_set, data_title, method, notes_order
from kdlab.report.epochs import train_figures
from kdlab.report.groups import IGNORED_KEYS, RunGroup, Stat, group_by_seed, override_items
from kdlab.report.runs import Run, display_path, natural_key
from kdlab.report.sweep import shared_overrides
from kdlab.report.tables import ACC_KEYS, Table, best_first, is_loss_part

# What a run costs (summary.json; the images/s only from `kdlab report --speed`): a
# config's first seed's, as its model's.
COST_KEYS = ("params", "weights_mb", "macs", "images_per_s_b1", "images_per_s_b64")
COLUMNS = [
    "run",
    "method",
    "data",
    "model",
    *COST_KEYS,
    *ACC_KEYS,
    "d_val_acc",
    "d_test_acc",
    "best_epoch",
    "train_ce",
    "train_loss",
    "loss_soft",
    "loss_fit",
    "train_images_per_s",
    "wall_time_s",
]
POOLED_KEYS = (
    *ACC_KEYS,
    "train_images_per_s",
    "train_ce",
    "train_loss",
    "loss_soft",
    "loss_hard",
    "loss_fit",
    "wall_time_s",
)

SORTS: dict[str, Callable[[dict[str, Any]], Any] | None] = {
    "notes": None,  # teacher, baseline, students: the order comparison_records builds
    "name": lambda record: natural_key(record["run"]),
    "val": best_first("val_acc"),
    "test": best_first("test_acc"),
}


@dataclass(frozen=True)
class Section:
    """Runs reported in one table: one data set's runs outside sweeps, or one sweep's; a
    sweep's also has the override keys its jobs vary (columns) and those they share."""

    title: str
    runs: list[Run]
    sweep_dir: Path | None
    data: tuple[str, Any]
    swept: list[str] = field(default_factory=list)
    shared: dict[str, Any] = field(default_factory=dict)


def swept(runs: Sequence[Run]) -> tuple[list[str], dict[str, Any]]:
    """The override keys a sweep's configs vary and those all share, as in its summary.md;
    seeds are pooled, and keys the table shows anyway are left to it."""
    items = [
        {
            key: value
            for key, value in override_items(group.first.get("overrides") or []).items()
            if key not in IGNORED_KEYS and key not in COLUMNS
        }
        for group in group_by_seed(runs)
    ]
    shared = shared_overrides(items)
    return list(dict.fromkeys(k for item in items for k in item if k not in shared)), shared


def split_sections(runs: Sequence[Run]) -> list[Section]:
    """Per data set (in the order found): its loose runs, then one section per sweep dir."""
    sections = []
    for data in dict.fromkeys(data_key(run) for run in runs):
        on_data = [run for run in runs if data_key(run) == data]
        loose = [run for run in on_data if run.sweep_dir is None]
        if loose:
            sections.append(Section(f"runs on {data_title(data)}", loose, None, data))
        for sweep in dict.fromkeys(run.sweep_dir for run in on_data if run.sweep_dir):
            jobs = [run for run in on_data if run.sweep_dir == sweep]
            title = f"sweep {display_path(sweep)} on {data_title(data)}"
            sections.append(Section(title, jobs, sweep, data, *swept(jobs)))
    return sections


def baseline_group(baseline: Run, runs: Sequence[Run]) -> RunGroup:
    """The baseline's seeds pooled as its own row is, so Δ compares like with like."""
    peers = [run for run in runs if run.sweep_dir == baseline.sweep_dir]
    return next(group for group in group_by_seed(peers) if baseline in group.runs)


def run_figures(run: Run) -> dict[str, Any]:
    """The run's numbers in the table: val/test as tested, train ones of the same epoch."""
    keys = ("val_acc", "test_acc", "last_test_acc", "loss_fit", "train_images_per_s", "wall_time_s")
    figures = {key: run.get(key) for key in keys}
    return figures | train_figures(run)


def other_parts(runs: Sequence[Run]) -> list[str]:
    """The loss parts the runs logged beyond the fixed columns (a method's own `loss_dkd`)."""
    return list(
        dict.fromkeys(
            key
            for run in runs
            for key, value in run.summary.items()
            if is_loss_part(key) and key not in POOLED_KEYS and isinstance(value, int | float)
        )
    )


def group_record(
    group: RunGroup, section: Section, baseline: RunGroup | None, teachers: Collection[Path]
) -> dict[str, Any]:
    """One row: what the config is, its figures pooled over seeds, Δ to the baseline."""
    first = group.first
    overrides = override_items(first.get("overrides") or [])
    record: dict[str, Any] = {"section": section.title, "run": group.name}
    record |= {key: overrides.get(key) for key in section.swept}
    record |= {"method": method(first, teachers), "command": first.get("command")}
    record |= {"data": data_set(first), "num_classes": first.get("num_classes")}
    record |= {key: first.get(key) for key in ("model", *COST_KEYS, "speed_device", "epochs")}
    record["seeds"] = " ".join(group.seeds)
    figures = [run_figures(run) for run in group.runs]
    for key in POOLED_KEYS:
        stat = Stat.of([f[key] for f in figures])
        record[key], record[f"{key}_std"] = stat.mean, stat.std
    for key in other_parts(section.runs):  # their last epoch's, from summary.json
        stat = Stat.of([run.get(key) for run in group.runs])
        record[key], record[f"{key}_std"] = stat.mean, stat.std
    for key in ("val_acc", "test_acc"):
        base = baseline.stat(key).mean if baseline else None
        record[f"d_{key}"] = None if base is None or record[key] is None else record[key] - base
    record["best_epoch"] = "/".join(dict.fromkeys(str(r.get("best_epoch")) for r in group.runs))
    record["run_dirs"] = " ".join(str(run.path) for run in group.runs)
    return record


def comparison_records(
    section: Section,
    baseline: RunGroup | None = None,
    sort: str = "notes",
    teachers: Collection[Path] = (),
) -> list[dict[str, Any]]:
    """One CSV-ready record per config, in the notes' order unless `sort` says otherwise;
    Δ only when the baseline ran on the section's data set."""
    if baseline is not None and data_key(baseline.first) != section.data:
        baseline = None
    groups = notes_order(group_by_seed(section.runs), teachers, baseline)
    records = [group_record(group, section, baseline, teachers) for group in groups]
    order = SORTS[sort]
    return records if order is None else sorted(records, key=order)


def comparison_table(records: Sequence[dict[str, Any]], section: Section) -> Table:
    """The section's columns: its swept overrides after the run, then COLUMNS, with the
    other loss parts its runs logged before the time."""
    columns = [*COLUMNS[1:-1], *other_parts(section.runs), COLUMNS[-1]]
    return Table.from_records(records, ["run", *section.swept, *columns])


def footnote(records: Sequence[dict[str, Any]], section: Section, baseline: RunGroup | None) -> str:
    """What the numbers are: ± only where seeds were pooled, Δ only on the baseline's data."""
    notes = ["accuracies in %"]
    if any(len(record["seeds"].split()) > 1 for record in records):
        notes.append("a ± b = mean ± sample std over seeds")
    notes.append(
        "train acc, CE, loss, soft: the best (tested) epoch's; CE: the hard-label "
        "cross-entropy, comparable across runs; loss: each run's own objective"
    )
    if any(record.get("macs") is not None for record in records):
        notes.append("MB: the selected model's weights; MACs: multiply-adds per image")
    devices = sorted({str(r["speed_device"]) for r in records if r.get("speed_device")})
    if devices:
        notes.append(f"img/s b1, b64: inference at batch 1 and 64 on {', '.join(devices)}, fp32")
    if any(record["loss_fit"] is not None for record in records):
        notes.append("fit: FitNet stage 1's last epoch")
    if other_parts(section.runs):
        notes.append("other loss parts: each run's last epoch")
    if section.shared:
        fixed = ", ".join(f"{key}={value}" for key, value in section.shared.items())
        notes.append(f"shared by every job: {fixed}")
    if baseline is not None and data_key(baseline.first) == section.data:
        notes.append(f"Δ = points against {baseline.name}")
    elif baseline is not None:
        here, there = data_title(section.data), data_title(data_key(baseline.first))
        notes.append(
            f"no Δ: the baseline {baseline.name} ran on {there}, not on {here} "
            f"(give --baseline a run on {here})"
        )
    return "; ".join(notes)
