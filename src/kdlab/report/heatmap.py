"""A table of signed differences as a heat-map: which cells are above or below a reference.

Diverging colours centred on zero (red below, blue above, symmetric limits), each cell
annotated with its value; cells without a value are left blank and marked with a dot.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kdlab.report.plotting import fit_titles, new_figure, save_png


def write_difference_heatmap(
    rows: Sequence[str],
    columns: Sequence[str],
    values: Sequence[Sequence[float | None]],
    path: Path,
    title: str,
    label: str,
) -> Path:
    """`values[i][j]` is row i, column j (None: no value); `label` names the colour bar."""
    grid = np.array([[np.nan if v is None else v for v in row] for row in values], dtype=float)
    present = grid[~np.isnan(grid)]
    limit = max(1.0, float(np.abs(present).max())) if present.size else 1.0
    figure = new_figure(2.5 + 0.75 * len(columns), 1.8 + 0.42 * len(rows))
    ax = figure.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="RdBu", vmin=-limit, vmax=limit)
    ax.set_facecolor("#eeeeee")
    figure.colorbar(image, ax=ax, shrink=0.8, label=label)
    ax.set_xticks(range(len(columns)), columns, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(len(rows)), rows)
    for (i, j), value in np.ndenumerate(grid):
        if np.isnan(value):
            ax.text(j, i, "·", ha="center", va="center", color="#999999")
        else:
            colour = "white" if abs(value) > 0.6 * limit else "black"
            ax.text(j, i, f"{value:+.1f}", ha="center", va="center", color=colour, fontsize=8)
    ax.set_title(title)
    fit_titles(figure)
    return save_png(figure, path)
