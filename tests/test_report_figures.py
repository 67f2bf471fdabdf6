"""`kdlab report`'s figures checked as images: what each axis plots, one colour per run in
every figure, legends outside the axes and inside the figure, titles not clipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image

from kdlab.cli.commands.report import main as report_main
from kdlab.report import find_runs
from kdlab.report.confusion import confusion_figure
from kdlab.report.curves import curves_figures
from kdlab.report.labels import label_runs
from kdlab.report.per_class import per_class_figure, per_class_records
from kdlab.report.plotting import report_colours
from kdlab.report.runs import Run
from kdlab.runs.summary import run_title
from test_report import make_run, make_study

LONG = "distilled-with-a-label-as-long-as-a-hydra-path-2026-12-01_09-39-04-402685"


def study_runs(root: Path, **student: object) -> list[Run]:
    """Note 2's shape: teacher, baseline, KD student, FitNet student, labelled."""
    dirs = make_study(root)
    make_run(root / "fitnet", command="fitnet", model="fitnet_student", teacher=dirs["teacher"])
    for name, value in student.items():
        make_run(root / name, command="distill", teacher=dirs["teacher"], **value)
    return label_runs(find_runs([root]))


def lines(figure: Figure) -> dict[str, list]:
    """The curves' lines by `label|split` (their gid), over all panels."""
    found: dict[str, list] = {}
    for ax in figure.axes:
        for line in ax.get_lines():
            if line.get_gid():
                found.setdefault(line.get_gid(), []).append(line)
    return found


def renderer(figure: Figure):
    figure.canvas.draw()
    return figure.canvas.get_renderer()


def assert_inside(inner, outer) -> None:
    assert inner.x0 >= outer.x0 - 1 and inner.x1 <= outer.x1 + 1, (inner, outer)
    assert inner.y0 >= outer.y0 - 1 and inner.y1 <= outer.y1 + 1, (inner, outer)


def assert_legends_clear(figure: Figure) -> None:
    """Every legend lies inside the figure and off every axes (ticks and labels too)."""
    drawn = renderer(figure)
    assert figure.legends
    for legend in figure.legends:
        box = legend.get_window_extent(drawn)
        assert_inside(box, figure.bbox)
        for ax in figure.axes:
            assert not box.overlaps(ax.get_tightbbox(drawn)), (box, ax.get_title())


def assert_titles_inside(figure: Figure) -> None:
    drawn = renderer(figure)
    for ax in figure.axes:
        if ax.get_title():
            assert_inside(ax.title.get_window_extent(drawn), figure.bbox)


def test_the_loss_figure_puts_every_runs_cross_entropy_on_one_scale(tmp_path):
    runs = study_runs(tmp_path)
    figures = curves_figures(runs, report_colours(runs))
    loss = lines(figures["curves_loss"])
    student = {r.label: r for r in runs}["student"].metrics()
    (train,) = loss["student|train"]
    assert list(train.get_ydata()) == pytest.approx([r["train/loss_hard"] for r in student])
    assert max(max(line.get_ydata()) for found in loss.values() for line in found) < 5
    assert "teacher|train" in loss and "baseline|val" in loss  # plain runs: their loss
    (fitnet,) = loss["fitnet|train"]
    assert list(fitnet.get_xdata()) == [3, 4]  # no cross-entropy in the hint stage
    parts = figures["curves_loss_parts"]
    titles = [ax.get_title() for ax in parts.axes]
    assert titles[0].startswith("Distillation objective") and "Soft" in titles[1]
    assert "fit" in titles[2]
    objective = lines(parts)["student|train"][0]  # the objective panel comes first
    assert list(objective.get_ydata()) == pytest.approx([r["train/loss"] for r in student])
    assert min(objective.get_ydata()) > 20
    assert "teacher|train" not in lines(parts)  # plain CE has no distillation parts


def test_a_one_epoch_run_has_integer_ticks_and_tells_train_from_val(tmp_path):
    make_run(tmp_path / "baseline", epochs=1, best_epoch=1)
    make_run(tmp_path / "student", command="distill", epochs=1, best_epoch=1)
    runs = label_runs(find_runs([tmp_path]))
    for figure in curves_figures(runs, report_colours(runs)).values():
        for ax in figure.axes:
            low, high = ax.get_xlim()
            ticks = [t for t in ax.get_xticks() if low <= t <= high]
            assert ticks == [1.0], ticks
        for name in ("baseline", "student"):
            found = lines(figure)
            if f"{name}|train" not in found:
                continue
            (train,), (val,) = found[f"{name}|train"][:1], found[f"{name}|val"][:1]
            assert train.get_marker() not in ("None", None, "")
            assert (train.get_marker(), train.get_markerfacecolor()) != (
                val.get_marker(),
                val.get_markerfacecolor(),
            )


def test_a_run_has_one_colour_in_every_figure(tmp_path):
    runs = study_runs(tmp_path)
    colours = report_colours(runs)
    by_label = {run.label: run for run in runs}
    chosen = [by_label[name] for name in ("baseline", "student", "teacher", "fitnet")]
    per_class = per_class_figure(per_class_records(chosen), chosen, colours)
    bars = {
        patch.get_gid(): to_rgba(patch.get_facecolor())
        for ax in per_class.axes
        for patch in ax.patches
    }
    curves = curves_figures(runs, colours)
    for label, run in by_label.items():
        colour = to_rgba(colours[run])
        assert bars[label] == colour
        for figure in curves.values():
            for line in lines(figure).get(f"{label}|train", []):
                assert to_rgba(line.get_color()) == colour
    assert len({to_rgba(colours[run]) for run in runs}) == len(runs)
    ordered = list(dict.fromkeys(colours.values()))
    assert ordered.index(colours[by_label["teacher"]]) == 0  # the notes' order: teacher first
    assert ordered.index(colours[by_label["baseline"]]) == 1


def test_the_next_stage_key_has_the_colours_of_the_lines_drawn(tmp_path):
    study_runs(tmp_path)  # one FitNet; a second of another config: two colours of stage lines
    make_run(tmp_path / "fitnet2", command="fitnet", model="fitnet_student", overrides=["a=1"])
    runs = label_runs(find_runs([tmp_path]))
    for figure in curves_figures(runs, report_colours(runs)).values():
        drawn = {
            to_rgba(line.get_color())
            for ax in figure.axes
            for line in ax.get_lines()
            if line.get_linestyle() == ":"
        }
        key = [line for line in figure.legends[-1].findobj(Line2D) if line.get_linestyle() == ":"]
        assert len(drawn) == 2
        assert {to_rgba(line.get_color()) for line in key} == drawn


def test_figures_show_the_test_accuracy_of_summary_json(tmp_path):
    """The confusion matrix's diagonal of the teacher's (49.40%) is not what summary.json says
    (49.30%, the tables' and TensorBoard's): every figure shows summary.json's."""
    make_run(tmp_path / "teacher", model="resnet_teacher", test_acc=49.40)
    summary_path = tmp_path / "teacher" / "summary.json"
    summary = json.loads(summary_path.read_text()) | {"test_acc": 49.3}
    summary_path.write_text(json.dumps(summary))
    make_run(tmp_path / "student", command="distill", test_acc=51.0)
    runs = label_runs(find_runs([tmp_path]))
    title = "resnet_teacher (train) on synthetic: test confusion, accuracy 49.30%"
    assert run_title(summary) == title
    figure = per_class_figure(per_class_records(runs), runs, report_colours(runs))
    entries = [text.get_text() for text in figure.legends[0].get_texts()]
    assert sorted(entries) == ["student (test 51.00%)", "teacher (test 49.30%)"]


def test_legends_stay_outside_the_axes_and_titles_inside_the_figure(tmp_path):
    students = {f"{LONG}-{i}": {"overrides": [f"T={i + 1}"], "T": i + 1.0} for i in range(6)}
    runs = study_runs(tmp_path, **students)
    colours = report_colours(runs)
    figures = list(curves_figures(runs, colours).values())
    long_first = sorted(runs, key=lambda run: -len(run.label))
    figures.append(per_class_figure(per_class_records(long_first), long_first, colours))
    for figure in figures:
        assert_legends_clear(figure)
        assert_titles_inside(figure)
    confusion = confusion_figure([[50, 2], [7, 41]], ["cat", "dog"], f"{LONG}: test confusion")
    assert_titles_inside(confusion)
    assert LONG in confusion.axes[0].get_title().replace("\n", "")  # wrapped, not cut
    assert "\n" in confusion.axes[0].get_title()


def test_the_written_pngs_are_sane_images(tmp_path):
    make_study(tmp_path / "runs")
    out = tmp_path / "out"
    report_main(
        [str(tmp_path / "runs"), "--curves", "--per-class", "teacher", "student", "--out", str(out)]
    )
    names = ["curves_loss", "curves_acc", "curves_loss_parts", "per_class", "confusion_student"]
    for name in names:
        with Image.open(out / f"{name}.png") as image:
            width, height = image.size
            assert 400 <= width <= 4000 and 300 <= height <= 3000, (name, image.size)
            assert image.getextrema() != ((255, 255),) * len(image.getbands())  # not blank
