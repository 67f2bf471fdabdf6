"""Per-class test accuracy side by side, and its change against a baseline run.

This is the notes' error analysis: which classes distillation fixed (note 1: frog; note 2:
cat and dog) and whether the errors spread more evenly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from kdlab.errors import KdlabError
from kdlab.report.confusion import test_accuracy_text
from kdlab.report.plotting import (
    fit_titles,
    legend_below,
    new_figure,
    report_colours,
    save_png,
)
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


def column_names(runs: Sequence[Run]) -> list[str]:
    """Each run's label, or its name where two of the runs share the label (two seeds)."""
    labels = [run.label for run in runs]
    return [run.label if labels.count(run.label) == 1 else run.name for run in runs]


def per_class_records(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """A row per class: each run's accuracy, then `Δ <run>` against the first run."""
    tables = [per_class_accuracy(run) for run in runs]
    names = column_names(runs)
    classes = list(tables[0])
    for run, table in zip(runs[1:], tables[1:], strict=True):
        if list(table) != classes:
            raise KdlabError(
                f"runs {runs[0].label} and {run.label} have different classes: compare runs "
                "of one data set"
            )
    records = []
    for name in classes:
        record: dict[str, Any] = {"class": name}
        record.update({column: table[name] for column, table in zip(names, tables, strict=True)})
        base = tables[0][name]
        for column, table in zip(names[1:], tables[1:], strict=True):
            value = table[name]
            record[f"Δ {column}"] = None if value is None or base is None else value - base
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


def _bars(ax: Axes, columns: Sequence[tuple[str, Any]], records: Sequence[dict[str, Any]]) -> None:
    """Grouped bars, one colour per run, of the `(key, colour)` columns of `records`."""
    width = 0.8 / max(1, len(columns))
    x = np.arange(len(records))
    for i, (key, colour) in enumerate(columns):
        offset = (i - (len(columns) - 1) / 2) * width
        values = [np.nan if r[key] is None else r[key] for r in records]
        ax.bar(x + offset, values, width, color=colour, gid=key)
    ax.grid(axis="y", alpha=0.3)


def per_class_figure(
    records: Sequence[dict[str, Any]], runs: Sequence[Run], colours: Mapping[Run, Any]
) -> Figure:
    """Grouped bars of per-class accuracy (top) and the change against the first run; the
    legend gives each run's test accuracy as its summary.json does."""
    classes = [r["class"] for r in records]
    names = column_names(runs)
    shades = [colours[run] for run in runs]
    figure = new_figure(max(8.0, 0.9 * len(classes) + 3), 8)
    top, bottom = figure.subplots(2, 1, sharex=True)
    _bars(top, list(zip(names, shades, strict=True)), records)
    top.set_ylabel("test accuracy (%)")
    top.set_title("Per-class test accuracy")
    _bars(
        bottom,
        [(f"Δ {name}", shade) for name, shade in zip(names[1:], shades[1:], strict=True)],
        records,
    )
    bottom.axhline(0, color="black", linewidth=0.8)
    bottom.set_ylabel("change (points)")
    bottom.set_title(f"Change against {names[0]} (above 0: fewer errors)")
    bottom.set_xticks(
        np.arange(len(classes)), classes, rotation=45, ha="right", rotation_mode="anchor"
    )
    bottom.set_xlabel("class")
    handles = [Patch(color=shade) for shade in shades]
    entries = [
        f"{name} (test {test_accuracy_text(run.get('test_acc'))})"
        for name, run in zip(names, runs, strict=True)
    ]
    legend_below(figure, handles, entries)
    fit_titles(figure)
    return figure


def write_per_class_png(
    records: Sequence[dict[str, Any]],
    runs: Sequence[Run],
    path: Path,
    colours: Mapping[Run, Any] | None = None,
) -> Path:
    """per_class.png; `colours` as in the report's other figures."""
    return save_png(per_class_figure(records, runs, colours or report_colours(runs)), path)
