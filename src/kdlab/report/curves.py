"""Per-epoch curves overlaid across runs: loss, accuracy and the distillation loss parts.

Solid lines are training, dashed lines validation; a dotted vertical line marks where a
FitNet run's stage two starts (stage one trains the hint regression only: no accuracy).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from kdlab.errors import KdlabError
from kdlab.report.plotting import new_figure, run_colors, save_png
from kdlab.report.runs import Run

MARKERS_UP_TO = 30  # epochs; longer curves are drawn as plain lines
PARTS = {"loss_soft": "soft loss", "loss_hard": "hard loss", "loss_fit": "fit (hint) loss"}


@dataclass(frozen=True)
class Curves:
    """One run's epoch records and the colour it is drawn in."""

    name: str
    records: list[dict[str, Any]]
    colour: Any

    def series(self, key: str) -> tuple[list[int], list[float]]:
        points = [(r["epoch"], r[key]) for r in self.records if r.get(key) is not None]
        return [e for e, _ in points], [v for _, v in points]

    def has(self, key: str) -> bool:
        return any(r.get(key) is not None for r in self.records)

    def stage_starts(self) -> list[float]:
        """Between the last epoch of a stage and the first of the next."""
        return [
            (before["epoch"] + after["epoch"]) / 2
            for before, after in zip(self.records, self.records[1:], strict=False)
            if before.get("stage") != after.get("stage")
        ]


def _draw(ax: Axes, curves: Sequence[Curves], key: str, ylabel: str, title: str) -> None:
    """Train (solid) and val (dashed) of `key` for every run that logged it."""
    for run in curves:
        drawn = False
        for split, style in (("train", "-"), ("val", "--")):
            epochs, values = run.series(f"{split}/{key}")
            if epochs:
                label = None if drawn else run.name
                marker = "." if len(epochs) <= MARKERS_UP_TO else None
                ax.plot(epochs, values, style, color=run.colour, label=label, marker=marker)
                drawn = True
        for x in run.stage_starts() if drawn else ():
            ax.axvline(x, color=run.colour, linestyle=":", linewidth=1)
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def _legend(figure: Figure, curves: Sequence[Curves]) -> None:
    """One legend for all panels, outside them on the right: runs by colour, line styles."""
    handles = {}
    for ax in figure.axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    note = "solid: train\ndashed: val"
    if any(run.stage_starts() for run in curves):
        note += "\ndotted: FitNet stage 2"
    figure.legend(
        handles.values(),
        handles.keys(),
        loc="outside right upper",
        title=note,
        fontsize="small",
        title_fontsize="small",
    )


def write_curves(runs: Sequence[Run], out_dir: Path) -> list[Path]:
    """curves_loss.png, curves_acc.png and, for KD/FitNet runs, curves_loss_parts.png."""
    logged = [(run, run.metrics()) for run in runs]
    curves = [
        Curves(run.name, records, colour)
        for (run, records), colour in zip(logged, run_colors(len(logged)), strict=True)
        if records
    ]
    if not curves:
        raise KdlabError("none of the runs has a metrics.jsonl: curves need the per-epoch log")
    written = []
    for key, ylabel, title in (
        ("loss", "loss", "Loss per epoch"),
        ("acc", "top-1 accuracy (%)", "Accuracy per epoch"),
    ):
        figure = new_figure(8, 5)
        ax = figure.add_subplot()
        _draw(ax, curves, key, ylabel, title)
        _legend(figure, curves)
        written.append(save_png(figure, out_dir / f"curves_{key}.png"))
    parts = [p for p in PARTS if any(run.has(f"train/{p}") for run in curves)]
    if parts:
        figure = new_figure(5 * len(parts) + 1, 4.5)
        axes = figure.subplots(1, len(parts), squeeze=False)[0]
        for ax, part in zip(axes, parts, strict=True):
            shown = [run for run in curves if run.has(f"train/{part}")]
            _draw(ax, shown, part, "loss", f"{PARTS[part]} per epoch")
        _legend(figure, curves)
        written.append(save_png(figure, out_dir / "curves_loss_parts.png"))
    return written
