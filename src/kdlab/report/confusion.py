"""The confusion matrix as a labelled heat-map: which classes a model mixes up.

Colour is normalised per row (the share of each true class that went to each prediction),
so rare and common classes read alike; the cells are annotated with the raw counts.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from kdlab.errors import KdlabError
from kdlab.report.plotting import fit_titles, new_figure, save_png
from kdlab.report.runs import SUMMARY, read_summary

ANNOTATE_UP_TO = 25  # classes; beyond that the counts would not fit in the cells


def read_confusion_csv(path: Path) -> tuple[list[str], list[list[int]]]:
    """Class names and counts (rows: true class, columns: prediction) of confusion.csv."""
    try:
        with path.open(newline="") as f:
            header, *rows = list(csv.reader(f))
        names = header[1:]
        counts = [[int(cell) for cell in row[1:]] for row in rows if row]
    except (OSError, ValueError) as error:
        raise KdlabError(f"cannot read {path} as a confusion matrix ({error})") from error
    if len(counts) != len(names) or any(len(row) != len(names) for row in counts):
        raise KdlabError(f"{path} is not a square confusion matrix: re-run the run's test")
    return names, counts


def confusion_figure(
    confusion: Sequence[Sequence[int]], class_names: Sequence[str], title: str
) -> Figure:
    """Heat-map of `confusion` (rows: true class) with class names on both axes."""
    counts = np.asarray(confusion, dtype=np.int64)
    n = len(class_names)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    size = min(20.0, 3.0 + 0.6 * n)
    figure = new_figure(size + 1.5, size)
    ax = figure.add_subplot()
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=ax, shrink=0.8, label="share of the true class")
    ax.set_xticks(range(n), class_names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    if n <= ANNOTATE_UP_TO:  # inside their cells: the layout need not measure them
        for (row, col), count in np.ndenumerate(counts):
            colour = "white" if shares[row, col] > 0.5 else "black"
            text = ax.text(col, row, str(count), ha="center", va="center", color=colour, fontsize=8)
            text.set_in_layout(False)
    fit_titles(figure)
    return figure


def write_confusion_png(
    confusion: Sequence[Sequence[int]], class_names: Sequence[str], path: Path, title: str
) -> Path:
    return save_png(confusion_figure(confusion, class_names, title), path)


def test_accuracy_text(test_acc: float | None) -> str:
    """summary.json's test_acc as every figure shows it: the number of the tables and
    TensorBoard, never recounted from a matrix or a table of classes."""
    return "n/a" if test_acc is None else f"{test_acc:.2f}%"


def confusion_title(name: str, test_acc: float | None) -> str:
    return f"{name}: test confusion, accuracy {test_accuracy_text(test_acc)}"


def plot_confusion(csv_path: Path, png_path: Path, name: str | None = None) -> Path:
    """confusion.csv drawn as a heat-map, titled with the run's `name` (default: its dir's)
    and the test accuracy of the run's summary.json beside it."""
    names, counts = read_confusion_csv(csv_path)
    run_dir = csv_path.parent
    if not (run_dir / SUMMARY).is_file():
        raise KdlabError(f"{csv_path} has no {SUMMARY} beside it: plot a run dir's confusion")
    title = confusion_title(name or run_dir.name, read_summary(run_dir).get("test_acc"))
    return write_confusion_png(counts, names, png_path, title)
