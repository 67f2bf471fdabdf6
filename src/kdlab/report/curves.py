"""Per-epoch curves overlaid across runs, like with like on each axis.

curves_loss.png is the hard-label cross-entropy of every run (a plain run's loss, a KD
run's hard part: one scale); curves_acc.png the top-1 accuracy; curves_loss_parts.png
the distillation runs' own objectives and each loss part they logged, a panel each.
Train is solid with filled dots, val dashed with open squares (told apart even in a
one-epoch run); a dotted vertical line marks where a run's next stage starts (FitNets'
stage two, the main stage after an init stage).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.legend_handler import HandlerTuple
from matplotlib.lines import Line2D

from kdlab.errors import KdlabError
from kdlab.report.epochs import cross_entropy, objective, parts
from kdlab.report.groups import group_by_seed
from kdlab.report.plotting import (
    LEGEND_PT,
    epoch_axis,
    fit_titles,
    legend_below,
    new_figure,
    report_colours,
    save_png,
)
from kdlab.report.runs import Run

STYLE_KEY_IN = 1.3  # the width the line-style key takes right of the panels
MARKERS_UP_TO = 30  # epochs; longer curves are drawn as plain lines
LOG_SCALE_FROM = 30.0  # max/min of a panel's values: beyond it the y-axis is logarithmic
SPLITS = {"train": {"linestyle": "-", "marker": "o"}, "val": {"linestyle": "--", "marker": "s"}}
Value = Callable[[dict[str, Any], str], float | None]  # (epoch record, split) -> value


def _key(name: str) -> Value:
    return lambda record, split: record.get(f"{split}/{name}")


@dataclass(frozen=True)
class Panel:
    """One axes: what it plots from an epoch record, and its titles."""

    value: Value
    title: str
    ylabel: str


LOSS = Panel(cross_entropy, "Cross-entropy on the labels per epoch", "cross-entropy")
ACC = Panel(_key("acc"), "Top-1 accuracy per epoch", "top-1 accuracy (%)")
OBJECTIVE = Panel(objective, "Distillation objective (each run's own loss)", "objective")
# Parts with a title of their own; any other part a run logged gets a panel named after it.
DESCRIBED = {
    "loss_soft": Panel(
        _key("loss_soft"), "Soft loss: cross-entropy to the teacher at T", "soft loss"
    ),
    "loss_fit": Panel(_key("loss_fit"), "FitNet hint (fit) loss", "fit loss"),
}
# Parts drawn elsewhere: the hard-label CE is curves_loss.png; KD's KL is its soft loss
# minus the teacher's entropy, the soft panel's curve shifted.
ELSEWHERE = ("loss_hard", "loss_kl")


def part_panels(curves: Sequence[Curves]) -> list[Panel]:
    """The objective, then a panel per loss part any run logged (described ones first)."""
    logged = dict.fromkeys(
        part for run in curves for r in run.records for s in SPLITS for part in parts(r, s)
    )
    named = [DESCRIBED[p] for p in DESCRIBED if p in logged]
    others = [
        Panel(_key(p), f"{p.removeprefix('loss_')} loss part per epoch", p.removeprefix("loss_"))
        for p in logged
        if p not in DESCRIBED and p not in ELSEWHERE
    ]
    return [OBJECTIVE, *named, *others]


@dataclass(frozen=True)
class Curves:
    """One run's epoch records, its legend name and the colour it is drawn in."""

    name: str
    records: list[dict[str, Any]]
    colour: Any

    def series(self, value: Value, split: str) -> tuple[list[int], list[float]]:
        points = [(r["epoch"], value(r, split)) for r in self.records]
        points = [(epoch, v) for epoch, v in points if v is not None]
        return [e for e, _ in points], [v for _, v in points]

    def has(self, value: Value) -> bool:
        return any(self.series(value, split)[0] for split in SPLITS)

    def stage_starts(self) -> list[float]:
        """Between the last epoch of a stage and the first of the next."""
        return [
            (before["epoch"] + after["epoch"]) / 2
            for before, after in zip(self.records, self.records[1:], strict=False)
            if before.get("stage") != after.get("stage")
        ]


def _fill(colour: Any, split: str) -> Any:
    """Train markers filled, val markers open."""
    return colour if split == "train" else "white"


def _draw(ax: Axes, curves: Sequence[Curves], panel: Panel) -> None:
    """Train and val of `panel` for every run that has it."""
    epochs_seen: list[float] = []
    values_seen: list[float] = []
    for run in curves:
        for split, style in SPLITS.items():
            epochs, values = run.series(panel.value, split)
            if not epochs:
                continue
            marker = style["marker"] if len(epochs) <= MARKERS_UP_TO else None
            ax.plot(
                epochs,
                values,
                style["linestyle"],
                color=run.colour,
                marker=marker,
                markerfacecolor=_fill(run.colour, split),
                gid=f"{run.name}|{split}",  # which run and split a line is, for tests
            )
            epochs_seen += epochs
            values_seen += values
        for x in run.stage_starts():
            ax.axvline(x, color=run.colour, linestyle=":", linewidth=1)
    low, high = min(values_seen, default=0.0), max(values_seen, default=0.0)
    if low > 0 and high / low > LOG_SCALE_FROM:
        ax.set_yscale("log")  # e.g. KD objectives at T=1 and T=8 (T² apart)
    ax.set_title(panel.title)
    ax.set_ylabel(panel.ylabel)
    ax.grid(alpha=0.3)
    epoch_axis(ax, epochs_seen + [x for run in curves for x in run.stage_starts()])


def _legend(figure: Figure, curves: Sequence[Curves]) -> None:
    """Runs by colour under the panels; what the line styles mean to their right."""
    runs = {run.name: Line2D([], [], color=run.colour, linewidth=3) for run in curves}
    legend_below(figure, list(runs.values()), list(runs))
    styles = {
        split: Line2D([], [], color="grey", markerfacecolor=_fill("grey", split), **style)
        for split, style in SPLITS.items()
    }
    staged = dict.fromkeys(run.colour for run in curves if run.stage_starts())
    if staged:  # drawn in each staged run's colour: the key shows those colours side by side
        styles["next\nstage\nstarts"] = tuple(
            Line2D([], [], color=colour, linestyle=":") for colour in staged
        )
    figure.set_figwidth(figure.get_figwidth() + STYLE_KEY_IN)
    figure.legend(
        styles.values(),
        styles.keys(),
        loc="outside right upper",
        fontsize=LEGEND_PT,
        handler_map={tuple: HandlerTuple(ndivide=None, pad=0)},
    )


def _figure(curves: Sequence[Curves], panels: Sequence[Panel]) -> Figure:
    figure = new_figure(max(8.0, 5.0 * len(panels)), 4.5)
    for ax, panel in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        _draw(ax, [run for run in curves if run.has(panel.value)], panel)
    _legend(figure, [run for run in curves if any(run.has(panel.value) for panel in panels)])
    fit_titles(figure)
    return figure


def run_curves(runs: Sequence[Run], colours: Mapping[Run, Any]) -> list[Curves]:
    """The runs that logged epochs, in the colours' order (the notes' order, as
    report_colours hands them out); seeds of one config share a colour and a legend name,
    as they share a row of the table."""
    order = {run: i for i, run in enumerate(colours)}
    names = {
        run: group.first.label
        if len(group.runs) == 1
        else f"{group.first.label} ({len(group.runs)} seeds)"
        for group in group_by_seed(runs)
        for run in group.runs
    }
    ordered = sorted(runs, key=lambda run: order[run])
    logged = [(run, records) for run in ordered if (records := run.metrics())]
    return [Curves(names[run], records, colours[run]) for run, records in logged]


def curves_figures(runs: Sequence[Run], colours: Mapping[Run, Any]) -> dict[str, Figure]:
    """curves_loss, curves_acc and (for KD/FitNet runs) curves_loss_parts, by file stem."""
    curves = run_curves(runs, colours)
    if not curves:
        raise KdlabError("none of the runs has a metrics.jsonl: curves need the per-epoch log")
    figures = {"curves_loss": _figure(curves, [LOSS]), "curves_acc": _figure(curves, [ACC])}
    shown = [panel for panel in part_panels(curves) if any(run.has(panel.value) for run in curves)]
    if shown:
        figures["curves_loss_parts"] = _figure(curves, shown)
    return figures


def write_curves(
    runs: Sequence[Run], out_dir: Path, colours: Mapping[Run, Any] | None = None
) -> list[Path]:
    """The curves' PNGs in `out_dir`; `colours` as in the report's other figures."""
    figures = curves_figures(runs, colours or report_colours(runs))
    return [save_png(figure, out_dir / f"{stem}.png") for stem, figure in figures.items()]
