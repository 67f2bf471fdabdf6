"""Finding and loading the teacher: from a path, or the newest finished teacher run.

A teacher is rebuilt from its checkpoint alone (the checkpoint carries its config), then
checked against the student's data set before any training starts.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdlab.data import DataBundle
from kdlab.data.choices import run_normalization
from kdlab.engine.checkpoint import Checkpoint, checkpoint_in
from kdlab.engine.metrics import evaluate
from kdlab.engine.objective import CrossEntropy
from kdlab.engine.provenance import HASH_SHOWN, Provenance, far_below_published, sha256_file
from kdlab.errors import KdlabError
from kdlab.methods.logit_cache import CachedLogitLoader, cached_logit_loader
from kdlab.methods.teacher import FrozenTeacher
from kdlab.runs.config import DistillConfig, TeacherConfig
from kdlab.runs.run_dir import pinned_teacher_path
from kdlab.runs.session import Session, hydra_run_info

log = logging.getLogger("kdlab")


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


def resolve_teacher(cfg: DistillConfig) -> Path:
    """The teacher checkpoint to use; a one-line error naming the fix when there is none."""
    if cfg.teacher.ckpt:
        return checkpoint_in(Path(cfg.teacher.ckpt).expanduser().resolve())
    search_dir = Path(cfg.teacher.search_dir)
    run = (
        newest_teacher_run(search_dir, cfg.data.name, cfg.teacher.model)
        if search_dir.is_dir()
        else None
    )
    if run is None:
        raise KdlabError(
            f"no finished {cfg.teacher.model} teacher run for data={cfg.data.name} under "
            f"{search_dir}/: train one with `{teacher_command(cfg, typed_overrides())}`, or "
            "set teacher.ckpt=PATH"
        )
    return checkpoint_in(run.resolve())


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


@dataclass(frozen=True)
class TeacherCheckpoint:
    path: Path
    state: Checkpoint
    settings: TeacherConfig  # teacher.*: how it was found, whether its logits are cached
    sha256: str  # of the file: what the run pins

    def pin(self) -> dict[str, str]:
        """What the run's checkpoints keep of its teacher (Checkpoint.teacher)."""
        return {"path": str(self.path), "sha256": self.sha256}


def pinned_teacher(cfg: DistillConfig) -> dict[str, Any]:
    """The teacher a resumed run started with (path, sha256, from its last.pt); empty for a
    new run, or a run whose checkpoints predate the pin."""
    if not cfg.resume:
        return {}
    last = hydra_run_info()[0] / "checkpoints" / "last.pt"
    return Checkpoint.read(last).teacher if last.is_file() else {}


def read_teacher(cfg: DistillConfig) -> TeacherCheckpoint:
    """Find and read the teacher before any data is built, so a missing, corrupt, modified or
    other-data-set teacher fails in a second rather than after the data set is loaded. A
    resumed run reads the teacher it started with (pinned by its sha256)."""
    pin = pinned_teacher(cfg)
    path = pinned_teacher_path(cfg.teacher.ckpt, pin) if pin else resolve_teacher(cfg)
    allowed, override = cfg.teacher.allow_modified, "teacher.allow_modified=true"
    state = Checkpoint.read(path, allow_modified=allowed, override=override)
    if state.data != cfg.data.name:
        raise KdlabError(
            f"teacher {path} was trained on data={state.data}, this run uses "
            f"data={cfg.data.name}: pick a teacher of the same data set (teacher.ckpt=PATH)"
        )
    check_finite_weights(path, state.model)
    return TeacherCheckpoint(path, state, cfg.teacher, pin.get("sha256") or sha256_file(path))


def check_finite_weights(path: Path, weights: dict[str, Any]) -> None:
    """A teacher with a NaN or Inf weight (or BatchNorm statistic) makes every target NaN: the
    student would stop at its first step with advice about its own lr."""
    for name, tensor in weights.items():
        floating = torch.is_tensor(tensor) and tensor.is_floating_point()
        if floating and not bool(torch.isfinite(tensor).all()):
            raise KdlabError(
                f"teacher {path} has non-finite values (NaN or Inf) in {name}: it diverged or "
                "was damaged; pick another teacher (teacher.ckpt=PATH) or retrain it"
            )


def load_teacher(
    checkpoint: TeacherCheckpoint, data: DataBundle, device: torch.device, channels_last: bool
) -> nn.Module:
    """Rebuild the teacher in eval mode on the device; it must match the student's classes."""
    path, state = checkpoint.path, checkpoint.state
    if state.num_classes != data.num_classes:
        raise KdlabError(
            f"teacher {path} predicts {state.num_classes} classes, the data has "
            f"{data.num_classes}: pick a teacher of the same data set (teacher.ckpt=PATH)"
        )
    if state.in_channels != data.in_channels:
        raise KdlabError(
            f"teacher {path} takes {state.in_channels}-channel images, the data has "
            f"{data.in_channels}: pick a teacher trained on the same images (teacher.ckpt=PATH)"
        )
    check_class_names(path, state.class_names, data.class_names)
    trained_on = run_normalization(state.config)
    if trained_on != data.normalization:
        raise KdlabError(
            f"teacher {path} was trained on inputs normalised with {trained_on} statistics, "
            f"this run uses {data.normalization}: set data.normalize={trained_on}"
        )
    model = state.build_model(path).to(device).eval().requires_grad_(False)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def check_class_names(path: Path, teacher_names: list[str], names: list[str]) -> None:
    """Same count is not enough: image-folder teachers of other classes (or of the same ones
    in another order) would teach the wrong labels."""
    if not teacher_names or list(teacher_names) == names:
        return
    i = next(i for i, (a, b) in enumerate(zip(teacher_names, names, strict=True)) if a != b)
    raise KdlabError(
        f"teacher {path} has class {i} = '{teacher_names[i]}', the data has '{names[i]}': pick "
        "a teacher trained on the same classes (teacher.ckpt=PATH)"
    )


def teacher_batches(
    teacher: FrozenTeacher, checkpoint: TeacherCheckpoint, session: Session
) -> CachedLogitLoader | None:
    """Training batches with the teacher's cached logits (teacher.cache=true, data in
    memory), or None: the objective then runs the teacher every step."""
    if not checkpoint.settings.cache:
        return None
    return cached_logit_loader(
        session.data.train,
        teacher,
        checkpoint.path,
        cache_dir=checkpoint.settings.cache_dir,
        num_classes=session.data.num_classes,
        precision=session.precision,
    )


def prepare_teacher(
    checkpoint: TeacherCheckpoint, session: Session
) -> tuple[FrozenTeacher, dict[str, Any]]:
    """Load and measure the teacher (in the student's precision) before the student trains;
    log what was used."""
    path, state = checkpoint.path, checkpoint.state
    data, device = session.data, session.device
    model = load_teacher(checkpoint, data, device, session.cfg.trainer.channels_last)
    teacher = FrozenTeacher(model)
    info: dict[str, Any] = {"ckpt": str(path), "model": state.config["model"]["arch"]}
    split = data.val if data.val is not None else data.test
    measured = evaluate(model, CrossEntropy(), split, device, session.precision)
    info["val_acc"] = measured["acc"]
    log.info(
        "teacher: %s (%s), %s acc %.2f%%",
        path,
        info["model"],
        "val" if data.val is not None else "test",
        info["val_acc"],
    )
    info.update(check_provenance(path, info["model"], state.data, info["val_acc"]))
    return teacher, info


def check_provenance(path: Path, arch: str, data: str, measured_acc: float) -> dict[str, Any]:
    """Log the teacher's record (hash, own test accuracy, recipe, version); warn when the file
    is not the one its record describes, or the teacher is far below its published accuracy."""
    provenance = Provenance.of(path)
    log.info("teacher record: %s", provenance.describe())
    record = provenance.record or {}
    if record and not provenance.intact:
        log.warning(
            "teacher %s differs from its record (sha256 %s recorded, %s now): the file changed "
            "after its run wrote it",
            path,
            str(record.get("sha256"))[:HASH_SHOWN],
            provenance.short,
        )
    recorded = record.get("test_acc")
    if recorded is not None:
        warning = far_below_published(recorded, data, arch, "test, in its own run")
    else:
        warning = far_below_published(measured_acc, data, arch, "measured now")
    if warning:
        log.warning(warning)
    return {"sha256": provenance.sha256, "recorded_test_acc": recorded, "intact": provenance.intact}
