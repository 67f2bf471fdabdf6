"""Figures drawn with matplotlib's Agg canvas: no display, no pyplot global state.

Every figure of a report shares one colour per config (`report_colours`), keeps its
legend outside the axes (`legend_below`) and its titles inside the figure (`fit_titles`).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib import colormaps
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.ticker import MaxNLocator

from kdlab.paths import write_atomic
from kdlab.report.describe import notes_order, teacher_dirs
from kdlab.report.groups import group_by_seed
from kdlab.report.runs import Run

DPI = 120
LEGEND_PT = 9.0  # legend font size
TITLE_PT = 12.0  # axes titles ("large")
EM_PER_CHAR = 0.65  # a generous average glyph width of DejaVu Sans, in em
LEGEND_ROW_IN = LEGEND_PT * 1.6 / 72  # one legend row with its spacing, in inches


def new_figure(width: float, height: float) -> Figure:
    """A figure at the PNG's resolution (saving at another would lay it out anew)."""
    figure = Figure(figsize=(width, height), layout="constrained", dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def save_png(figure: Figure, path: Path) -> Path:
    write_atomic(path, lambda file: figure.savefig(file, format="png", dpi=DPI), "--out")
    return path


def report_colours(runs: Sequence[Run], baseline: Run | None = None) -> dict[Run, Any]:
    """One colour per config (its seeds share it), handed out in the notes' order (the
    teacher first, then the baseline): pass the same map to every figure of a report."""
    groups = group_by_seed(runs)
    base = next((group for group in groups if baseline in group.runs), None)
    ordered = notes_order(groups, teacher_dirs(runs), base)
    palette = colormaps["tab10" if len(ordered) <= 10 else "tab20"]
    return {run: palette(i % palette.N) for i, group in enumerate(ordered) for run in group.runs}


def legend_below(figure: Figure, handles: Sequence[Artist], labels: Sequence[str]) -> Legend:
    """The legend under the axes, in as many columns as the figure's width holds; the
    figure grows by the rows it takes (and widens for a label longer than it), so the
    axes keep their size and the legend neither covers them nor runs off the figure."""
    em = LEGEND_PT / 72
    column = (2.0 + 0.8 + 2.0) * em + max(map(len, labels)) * EM_PER_CHAR * em
    figure.set_figwidth(max(figure.get_figwidth(), column + 0.5))
    columns = max(1, min(len(labels), int((figure.get_figwidth() - 0.3) // column)))
    rows = math.ceil(len(labels) / columns)
    figure.set_figheight(figure.get_figheight() + rows * LEGEND_ROW_IN + 0.3)
    return figure.legend(
        handles, labels, loc="outside lower center", ncols=columns, fontsize=LEGEND_PT
    )


def fit_titles(figure: Figure) -> None:
    """Wrap axes titles wider than the figure (a long run label) onto more lines."""
    longest = max((len(ax.get_title()) for ax in figure.axes), default=0)
    if longest * EM_PER_CHAR * TITLE_PT / 72 < 0.8 * figure.get_figwidth():
        return  # fits for sure: spare the drawing it takes to measure
    for _ in range(3):
        figure.canvas.draw()  # the layout places the titles
        renderer = figure.canvas.get_renderer()
        too_wide = [
            (ax.title, ax.title.get_window_extent(renderer)) for ax in figure.axes if ax.get_title()
        ]
        too_wide = [(t, box) for t, box in too_wide if box.x0 < 0 or box.x1 > figure.bbox.x1]
        if not too_wide:
            return
        for title, box in too_wide:
            longest = max(map(len, title.get_text().splitlines()))
            chars = max(8, int(longest * 0.9 * figure.bbox.width / box.width))
            text = " ".join(title.get_text().splitlines())
            title.set_text(textwrap.fill(text, chars, break_long_words=True))


def epoch_axis(ax: Axes, epochs: Sequence[float]) -> None:
    """Whole epochs only, with room either side (one epoch is one tick, not 0.94..1.06)."""
    if epochs:
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlabel("epoch")
