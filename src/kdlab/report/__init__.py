"""Tables and figures across run dirs: `kdlab report`, sweep ledgers, confusion heat-maps.

Everything is read back from the run dirs (summary.json, metrics.jsonl, confusion.csv),
so a report can be made at any time after the runs, by the tool or by a script.
"""

from kdlab.report.compare import Section, comparison_records, split_sections
from kdlab.report.confusion import plot_confusion, write_confusion_png
from kdlab.report.curves import write_curves
from kdlab.report.groups import RunGroup, Stat, group_by_seed
from kdlab.report.heatmap import write_difference_heatmap
from kdlab.report.labels import label_runs
from kdlab.report.per_class import per_class_records, write_per_class_png
from kdlab.report.plotting import report_colours
from kdlab.report.runs import Run, find_runs, resolve_run
from kdlab.report.sweep import SweepSummary, aggregate_sweep

__all__ = [
    "Run",
    "RunGroup",
    "Section",
    "Stat",
    "SweepSummary",
    "aggregate_sweep",
    "comparison_records",
    "find_runs",
    "group_by_seed",
    "label_runs",
    "per_class_records",
    "plot_confusion",
    "report_colours",
    "resolve_run",
    "split_sections",
    "write_confusion_png",
    "write_curves",
    "write_difference_heatmap",
    "write_per_class_png",
]
