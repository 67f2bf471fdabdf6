"""What a run is, in words: its method, its data set, and its place in the notes' order.

The notes list the teacher, then the baseline, then the students (KD, then FitNet); a
report in that order reads like them, and its colours follow the same order.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

from kdlab.errors import KdlabError
from kdlab.report.groups import RunGroup, group_by_seed, override_items
from kdlab.report.runs import Run, natural_key, resolve_run

TEACHER, BASELINE, KD, FITNET, OTHER = range(5)  # ranks in the notes' order


def data_set(run: Run) -> str:
    """The data set's name; an image folder's also names its root dir."""
    name = str(run.get("data"))
    root = override_items(run.get("overrides") or []).get("data.root")
    return f"{name}:{Path(root).name}" if name == "imagefolder" and root else name


def data_key(run: Run) -> tuple[str, Any]:
    """What two runs must share to be compared (and measured against one baseline)."""
    return data_set(run), run.get("num_classes")


def data_title(key: tuple[str, Any]) -> str:
    name, classes = key
    return f"{name} ({classes} classes)" if classes is not None else name


def teacher_dirs(runs: Iterable[Run]) -> set[Path]:
    """The run dirs of the teachers the students distilled from (summary: teacher.ckpt,
    or each of teacher.teachers)."""
    dirs = set()
    for run in runs:
        teacher = run.get("teacher") or {}
        ckpts = [member.get("ckpt") for member in teacher.get("teachers") or [teacher]]
        for path in (Path(ckpt).resolve() for ckpt in ckpts if ckpt):
            dirs.add(path.parent.parent if path.parent.name == "checkpoints" else path)
    return dirs


def _kd_settings(run: Run) -> str:
    return f"T={run.get('T'):g}, α={run.get('alpha'):g}"


def method(run: Run, teachers: Collection[Path] = ()) -> str:
    """`CE`, `KD (T=4, α=0.1)`, `FitNet frozen + KD (T=4, α=0.1)`; `(teacher)` if one."""
    loss = run.get("loss_name")
    if run.get("command") == "fitnet" and loss not in (None, "kd"):
        return f"FitNet {run.get('stage2')} + {loss}"  # stage two with another logit method
    if run.get("command") == "fitnet":
        return f"FitNet {run.get('stage2')} + KD ({_kd_settings(run)})"
    if loss == "kd" and run.get("T") is not None:
        return f"KD ({_kd_settings(run)})"
    if run.get("command") == "train" or loss == "ce":
        return "CE (teacher)" if run.path in teachers else "CE"
    return str(loss or run.get("command"))


def baseline_runs(runs: Sequence[Run], teachers: Collection[Path]) -> list[Run]:
    """What a student is measured against: the plain cross-entropy runs that taught no one,
    of the distilled students' model if there are any; `kdlab train` ones (the notes'
    baseline) before `distill loss=ce` ones (the same, through the distillation command)."""
    plain = [run for run in runs if method(run, teachers) == "CE"]
    students = {run.get("model") for run in runs if not method(run, teachers).startswith("CE")}
    of_students = [run for run in plain if run.get("model") in students] or plain
    return [run for run in of_students if run.get("command") == "train"] or of_students


def resolve_baseline(ref: str, runs: Sequence[Run]) -> Run:
    """--baseline: a run dir, label or name, as resolve_run finds them; else, for the word
    `baseline` (a study's run name), the baseline runs if they are one config."""
    likely = group_by_seed(baseline_runs(runs, teacher_dirs(runs)))
    try:
        return resolve_run(ref, runs, [group.first for group in likely])
    except KdlabError:
        if ref == "baseline" and len(likely) == 1:
            return likely[0].first
        raise


def rank(run: Run, teachers: Collection[Path], baseline: RunGroup | None) -> int:
    if run.path in teachers:
        return TEACHER
    if baseline is not None and run in baseline.runs:
        return BASELINE
    if run.get("command") == "fitnet":
        return FITNET
    if run.get("loss_name") == "kd":
        return KD
    return BASELINE if method(run) == "CE" else OTHER


def notes_order(
    groups: Sequence[RunGroup], teachers: Collection[Path], baseline: RunGroup | None
) -> list[RunGroup]:
    """Teacher, the baseline, other plain-CE runs, KD students, FitNet students; by name
    within each."""

    def key(group: RunGroup) -> tuple[int, bool, list[Any]]:
        is_base = baseline is not None and group.first in baseline.runs
        return rank(group.first, teachers, baseline), not is_base, natural_key(group.name)

    return sorted(groups, key=key)


def _distinct(values: Iterable[Any]) -> str:
    return ", ".join(sorted({str(v) for v in values if v is not None}, key=natural_key))


def headline(runs: Sequence[Run]) -> list[str]:
    """What was compared, one `what: values` item each: data, epochs, KD settings, seeds,
    kdlab version."""
    distilled = [run for run in runs if run.get("T") is not None and run.get("alpha") is not None]
    items = {
        "data": ", ".join(dict.fromkeys(data_title(data_key(run)) for run in runs)),
        "epochs": _distinct(run.get("epochs") for run in runs),
        "distillation": "; ".join(dict.fromkeys(_kd_settings(run) for run in distilled)),
        "seeds": _distinct(run.get("seed") for run in runs),
        "kdlab": _distinct(run.get("kdlab_version") for run in runs),
    }
    return [f"{what}: {values}" for what, values in items.items() if values]
