"""Per-class test accuracy side by side, and its change against a baseline run.

This is the notes' error analysis: which classes distillation fixed (note 1: frog; note 2:
cat and dog) and whether the errors spread more evenly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kdlab.errors import KdlabError
from kdlab.report.plotting import new_figure, run_colors, save_png
from kdlab.report.runs import Run
from kdlab.report.tables import MISSING, Table

HIGHLIGHTS = 3  # classes named per run in the gains/losses line


def per_class_accuracy(run: Run) -> dict[str, float | None]:
    accuracy = run.get("per_class_acc")
    if not isinstance(accuracy, dict) or not accuracy:
        raise KdlabError(
            f"run {run.name} has no per_class_acc in its summary.json: re-run its test with "
            "this kdlab version"
        )
    return accuracy


def per_class_records(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """A row per class: each run's accuracy, then `Δ <run>` against the first run."""
    tables = [per_class_accuracy(run) for run in runs]
    classes = list(tables[0])
    for run, table in zip(runs[1:], tables[1:], strict=True):
        if list(table) != classes:
            raise KdlabError(
                f"runs {runs[0].name} and {run.name} have different classes: compare runs "
                "of one data set"
            )
    records = []
    for name in classes:
        record: dict[str, Any] = {"class": name}
        record.update({run.name: table[name] for run, table in zip(runs, tables, strict=True)})
        base = tables[0][name]
        for run, table in zip(runs[1:], tables[1:], strict=True):
            value = table[name]
            record[f"Δ {run.name}"] = None if value is None or base is None else value - base
        records.append(record)
    return records


def per_class_table(records: Sequence[dict[str, Any]]) -> Table:
    """Accuracies with two decimals, changes signed."""

    def cell(key: str, value: Any) -> str:
        if value is None:
            return MISSING
        if key == "class":
            return str(value)
        return f"{value:+.2f}" if key.startswith("Δ ") else f"{value:.2f}"

    keys = list(records[0])
    return Table(keys, [[cell(key, record[key]) for key in keys] for record in records])


def highlights(records: Sequence[dict[str, Any]]) -> list[str]:
    """Per compared run: the classes it gained and lost most on against the baseline."""
    lines = []
    for key in (k for k in records[0] if k.startswith("Δ ")):
        changes = sorted(
            ((r[key], r["class"]) for r in records if r[key] is not None), reverse=True
        )
        gains = ", ".join(f"{c} {d:+.2f}" for d, c in changes[:HIGHLIGHTS] if d > 0) or "none"
        losses = ", ".join(f"{c} {d:+.2f}" for d, c in changes[::-1][:HIGHLIGHTS] if d < 0)
        lines.append(f"{key.removeprefix('Δ ')}: gains {gains}; losses {losses or 'none'}")
    return lines


def write_per_class_png(records: Sequence[dict[str, Any]], runs: Sequence[Run], path: Path) -> Path:
    """Grouped bars of per-class accuracy (top) and the change against the first run."""
    classes = [r["class"] for r in records]
    x = np.arange(len(classes))
    width = 0.8 / len(runs)
    colours = run_colors(len(runs))
    figure = new_figure(max(8.0, 0.9 * len(classes) + 3), 8)
    top, bottom = figure.subplots(2, 1, sharex=True)
    for i, (run, colour) in enumerate(zip(runs, colours, strict=True)):
        offset = (i - (len(runs) - 1) / 2) * width
        values = [np.nan if r[run.name] is None else r[run.name] for r in records]
        top.bar(x + offset, values, width, color=colour, label=run.name)
    top.set_ylabel("test accuracy (%)")
    top.set_title("Per-class test accuracy")
    figure.legend(loc="outside right upper", fontsize="small")
    top.grid(axis="y", alpha=0.3)
    compared = list(zip(runs[1:], colours[1:], strict=True))
    width = 0.8 / max(1, len(compared))
    for i, (run, colour) in enumerate(compared):
        offset = (i - (len(compared) - 1) / 2) * width
        deltas = [np.nan if r[f"Δ {run.name}"] is None else r[f"Δ {run.name}"] for r in records]
        bottom.bar(x + offset, deltas, width, color=colour, label=run.name)
    bottom.axhline(0, color="black", linewidth=0.8)
    bottom.set_ylabel("change (points)")
    bottom.set_title(f"Change against {runs[0].name} (above 0: fewer errors)")
    bottom.grid(axis="y", alpha=0.3)
    bottom.set_xticks(x, classes, rotation=45, ha="right", rotation_mode="anchor")
    bottom.set_xlabel("class")
    return save_png(figure, path)
