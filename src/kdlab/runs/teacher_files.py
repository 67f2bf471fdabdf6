"""Finding a run's teachers, and checking what their files say against the run's data.

The pre-flight (kdlab.runs.preflight) runs these checks before Hydra writes anything, from
each teacher's record (checkpoints/best.pt.json copies the checkpoint's data facts) or its
file memory-mapped, and the teacher's architecture built on the meta device: a teacher of
other classes, channels or data, or without the feature points the method reads, is one line
and no run dir. kdlab.runs.teacher calls the same checks again once the data is loaded, for
what the pre-flight cannot see.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import torch

from kdlab.data.choices import imagenet_inputs, normalization, run_normalization
from kdlab.data.registry import (
    channels_of,
    image_size_of,
    known_class_count,
    known_class_names,
)
from kdlab.engine.checkpoint import Checkpoint, checkpoint_in, read_header, rebuilt_model
from kdlab.errors import KdlabError
from kdlab.methods.points import chosen_points, feature_point
from kdlab.methods.registry import method
from kdlab.runs.schema import DistillConfig, FitnetRunConfig

log = logging.getLogger("kdlab")

ALLOW_MODIFIED = "teacher.allow_modified=true"  # how a run uses a teacher its record disowns


def newest_teacher_run(search_dir: Path, data_name: str, teacher_model: str) -> Path | None:
    """The newest finished `kdlab train` run of `teacher_model` on `data_name`."""
    found: list[tuple[float, Path]] = []
    for summary_path in search_dir.rglob("summary.json"):
        try:
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:  # JSONDecodeError, UnicodeDecodeError
            log.warning("teacher search: skipped %s, unreadable (%s)", summary_path, error)
            continue
        if not isinstance(summary, dict):
            log.warning("teacher search: skipped %s, which holds no JSON object", summary_path)
            continue
        if (
            summary.get("command") == "train"
            and summary.get("status") != "failed"
            and summary.get("data") == data_name
            and summary.get("model") == teacher_model
            and (summary_path.parent / "checkpoints" / "best.pt").is_file()
        ):
            found.append((summary_path.stat().st_mtime, summary_path.parent))
    return max(found)[1] if found else None


def resolve_teachers(cfg: DistillConfig, typed: Sequence[str] | None = None) -> list[Path]:
    """The teacher checkpoints to use (teacher.ckpt's, in order, or the newest teacher run);
    a one-line error naming the fix when there is none. `typed`: the overrides the user
    typed (None: Hydra's, when running under it), which the fix keeps."""
    given = cfg.teacher.checkpoints()
    if given:
        return [checkpoint_in(Path(ckpt).expanduser().resolve()) for ckpt in given]
    search_dir = Path(cfg.teacher.search_dir)
    run = (
        newest_teacher_run(search_dir, cfg.data.name, cfg.teacher.model)
        if search_dir.is_dir()
        else None
    )
    if run is None:
        shown = teacher_command(cfg, list(typed) if typed is not None else typed_overrides())
        raise KdlabError(
            f"no finished {cfg.teacher.model} teacher run for data={cfg.data.name} under "
            f"{search_dir}/: train one with `{shown}`, or set teacher.ckpt=PATH"
        )
    return [checkpoint_in(run.resolve())]


# What a teacher run shares with the student's command line: the preset, the data, the budget.
_SHARED_WITH_TEACHER = ("experiment", "data", "trainer", "seed")


def typed_overrides() -> list[str]:
    """The overrides the user typed, when running under Hydra (none otherwise)."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def _head(override: str) -> str:
    """The top-level key an override sets: `trainer` for `trainer.epochs=2`."""
    return re.split(r"[./=]", override.lstrip("+~"), maxsplit=1)[0]


def teacher_command(cfg: DistillConfig, typed: list[str]) -> str:
    """`kdlab train model=TEACHER ...` keeping what the user typed that a teacher run shares
    (`experiment=quick` stays; a preset-less hint would suggest the full-size run)."""
    kept = [o for o in typed if _head(o) in _SHARED_WITH_TEACHER]
    if not any(_head(o) in ("data", "experiment") for o in kept):
        kept.insert(0, f"data={cfg.data.name}")
    return " ".join(["kdlab train", f"model={cfg.teacher.model}", *kept])


def check_teachers_early(
    cfg: DistillConfig, overrides: Sequence[str], pinned: list[Path] | None
) -> None:
    """The pre-flight's check of a distill or fitnet run's teachers, before Hydra writes
    anything: found (teacher.ckpt, the teacher search, or `pinned`: a resume's own teachers,
    named in its last.pt), readable, of the run's data, classes, channels and normalisation,
    agreeing, of a known architecture with the feature points the method reads. `overrides`:
    the job's, which the hint to train a missing teacher keeps. A resume whose run dir is not
    known here (no hydra.run.dir) is checked when it starts."""
    teacherless = method(cfg.loss.name).taps == "none" and not isinstance(cfg, FitnetRunConfig)
    if teacherless or (cfg.resume and pinned is None):
        return
    paths = pinned or resolve_teachers(cfg, overrides)
    allowed = cfg.teacher.allow_modified
    teachers = [(p, read_header(p, allow_modified=allowed, override=ALLOW_MODIFIED)) for p in paths]
    for path, teacher in teachers:
        check_teacher_data(path, teacher, cfg.data.name)
    check_teachers_agree(teachers)
    count, names = known_class_count(cfg.data), known_class_names(cfg.data)
    used = normalization(cfg.data, imagenet_inputs(cfg.model, teachers[0][1].config))
    for path, teacher in teachers:
        check_teacher_classes(path, teacher, count, names)
        check_teacher_channels(path, teacher, channels_of(cfg.data))
        check_teacher_size(path, teacher, image_size_of(cfg.data))
        check_teacher_normalization(path, teacher, used)
        check_teacher_model(cfg, path, teacher)


def check_teacher_data(path: Path, teacher: Checkpoint, data_name: str) -> None:
    if teacher.data != data_name:
        raise KdlabError(
            f"teacher {path} was trained on data={teacher.data}, this run uses "
            f"data={data_name}: pick a teacher of the same data set (teacher.ckpt=PATH)"
        )


def check_teacher_classes(
    path: Path, teacher: Checkpoint, count: int | None, names: list[str] | None
) -> None:
    """The teacher predicts the data's `count` classes, the same ones in the same order:
    image-folder teachers of other classes (or of the same ones in another order) would teach
    the wrong labels. None: not known yet (kdlab.data.registry.known_class_names)."""
    if count is not None and teacher.num_classes != count:
        raise KdlabError(
            f"teacher {path} predicts {teacher.num_classes} classes, the data has {count}: "
            "pick a teacher of the same data set (teacher.ckpt=PATH)"
        )
    if names is None or not teacher.class_names or list(teacher.class_names) == names:
        return
    pairs = zip(teacher.class_names, names, strict=True)
    i = next(i for i, (ours, theirs) in enumerate(pairs) if ours != theirs)
    raise KdlabError(
        f"teacher {path} has class {i} = '{teacher.class_names[i]}', the data has "
        f"'{names[i]}': pick a teacher trained on the same classes (teacher.ckpt=PATH)"
    )


def check_teacher_channels(path: Path, teacher: Checkpoint, channels: int) -> None:
    if teacher.in_channels != channels:
        raise KdlabError(
            f"teacher {path} takes {teacher.in_channels}-channel images, the data has "
            f"{channels}: pick a teacher trained on the same images (teacher.ckpt=PATH)"
        )


def check_teacher_size(path: Path, teacher: Checkpoint, size: int) -> None:
    """The teacher sees the student's batches: images of the side it trained on (0: not
    recorded, by files older than the record)."""
    if teacher.image_size and teacher.image_size != size:
        side = teacher.image_size
        raise KdlabError(
            f"teacher {path} was trained on {side}x{side} images, this run serves "
            f"{size}x{size}: set data.image_size={side}, or pick a teacher trained at {size} px "
            "(teacher.ckpt=PATH)"
        )


def check_teacher_normalization(path: Path, teacher: Checkpoint, used: str) -> None:
    """The teacher sees the student's batches: normalised as its own were (`used`: the
    run's data.normalize resolved)."""
    trained_on = run_normalization(teacher.config)
    if trained_on != used:
        raise KdlabError(
            f"teacher {path} was trained on inputs normalised with {trained_on} statistics, "
            f"this run uses {used}: set data.normalize={trained_on}"
        )


# What several teachers must share: (Checkpoint field, what it is). An image size of 0 is
# not recorded (older files) and agrees with any.
_SHARED_BY_TEACHERS = (
    ("num_classes", "classes"),
    ("in_channels", "image channels"),
    ("image_size", "pixels a side"),
)


def check_teachers_agree(teachers: Sequence[tuple[Path, Checkpoint]]) -> None:
    """Several teachers are averaged class by class on the same images: they must predict
    the same number of classes and take the same images."""
    first_path, first = teachers[0]
    for path, other in teachers[1:]:
        for key, what in _SHARED_BY_TEACHERS:
            ours, theirs = getattr(first, key), getattr(other, key)
            if ours != theirs and (key != "image_size" or (ours and theirs)):
                raise KdlabError(
                    f"teacher {path} has {theirs} {what}, teacher {first_path} has "
                    f"{ours}: the teachers of teacher.ckpt=[...] must agree on the classes and "
                    "the images; pick teachers of the same data"
                )


def check_teacher_model(cfg: DistillConfig, path: Path, teacher: Checkpoint) -> None:
    """The teacher's architecture is one this kdlab builds, with the feature points the run
    reads (fitnet.hint_layer, loss.teacher_points or the method's default): built on the
    meta device, which costs no memory and no weights."""
    with torch.device("meta"):
        model = rebuilt_model(teacher.to_dict(), path)
    if isinstance(cfg, FitnetRunConfig):
        feature_point(model, cfg.fitnet.hint_layer)
        return
    taps = method(cfg.loss.name).taps
    if taps not in ("none", "logits"):
        given = getattr(cfg.loss, "teacher_points", None)
        chosen_points(model, taps, cfg.loss.name, "teacher", given)
