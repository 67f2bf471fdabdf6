"""Reading and loading the teachers (found by kdlab.runs.teacher_files): from a path, or the
newest finished teacher run.

A teacher is rebuilt from its checkpoint alone (the checkpoint carries its config), checked
against the student's data set by the pre-flight before the run dir is made, and again once
the data is loaded (load_teacher says why).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdlab.data import DataBundle
from kdlab.data.batch_loader import BatchLoader
from kdlab.engine.checkpoint import Checkpoint
from kdlab.engine.metrics import evaluate
from kdlab.engine.objective import CrossEntropy
from kdlab.engine.provenance import HASH_SHOWN, Provenance, far_below_published, sha256_file
from kdlab.errors import KdlabError
from kdlab.methods.logit_cache import CachedLogitLoader, cache_root, cached_logit_loader
from kdlab.methods.teacher import FrozenTeacher, TeacherEnsemble
from kdlab.runs.distill_settings import TeacherConfig
from kdlab.runs.run_dir import pinned_teacher_paths
from kdlab.runs.schema import DistillConfig
from kdlab.runs.session import Session, hydra_run_info
from kdlab.runs.teacher_files import (
    ALLOW_MODIFIED,
    check_teacher_channels,
    check_teacher_classes,
    check_teacher_data,
    check_teacher_normalization,
    check_teachers_agree,
    resolve_teachers,
)

log = logging.getLogger("kdlab")


@dataclass(frozen=True)
class TeacherCheckpoint:
    """One teacher file, read."""

    path: Path
    state: Checkpoint
    sha256: str  # of the file: what the run pins

    def pin(self) -> dict[str, str]:
        return {"path": str(self.path), "sha256": self.sha256}


@dataclass(frozen=True)
class Teachers:
    """The run's teachers: one, or several whose logits the methods get averaged
    (teacher.ckpt=[A,B], kdlab.methods.teacher.TeacherEnsemble), with their weights."""

    members: tuple[TeacherCheckpoint, ...]
    weights: tuple[float, ...]  # teacher.weights normalised to sum 1
    settings: TeacherConfig  # teacher.*: how they were found, whether their logits are cached

    @property
    def state(self) -> Checkpoint:
        """The first teacher's checkpoint, whose config gives the student's defaults."""
        return self.members[0].state

    def pin(self) -> dict[str, Any]:
        """What the run's checkpoints keep of its teachers (Checkpoint.teacher): one teacher's
        {"path", "sha256"}, or {"teachers": [each one's, in order]}."""
        pins = [member.pin() for member in self.members]
        return pins[0] if len(pins) == 1 else {"teachers": pins}

    def cache_key(self) -> dict[str, Any]:
        """What names the teacher's logits in the logit cache: its sha256, or every member's
        in order and the weights (a store of [A,B] serves neither [A], [B,A] nor other
        weights)."""
        if len(self.members) == 1:
            return {"teacher_sha256": self.members[0].sha256}
        return {
            "teacher_sha256": [member.sha256 for member in self.members],
            "teacher_weights": list(self.weights),
        }


def pinned_teacher(cfg: DistillConfig) -> dict[str, Any]:
    """The teachers a resumed run started with (Teachers.pin, from its last.pt); empty for a
    new run, or a run whose checkpoints predate the pin."""
    if not cfg.resume:
        return {}
    last = hydra_run_info()[0] / "checkpoints" / "last.pt"
    return Checkpoint.read(last).teacher if last.is_file() else {}


def read_teachers(cfg: DistillConfig) -> Teachers:
    """Find and read the teachers before any data is built, so a modified teacher (its bytes
    against its record) or one with non-finite weights, which only the whole file shows,
    fails in a second rather than after the data set is loaded. The pre-flight refused a
    missing, corrupt, other-data-set or disagreeing teacher already; those checks are the
    same functions, again here for a run started without it (--config-dir) and a teacher
    that changed since. A resumed run reads the teachers it started with (pinned by their
    sha256)."""
    pin = pinned_teacher(cfg)
    paths = pinned_teacher_paths(cfg.teacher.checkpoints(), pin) if pin else resolve_teachers(cfg)
    members = tuple(read_one_teacher(cfg, path) for path in paths)
    check_teachers_agree([(member.path, member.state) for member in members])
    weights = tuple(cfg.teacher.normalised_weights(len(members)))
    return Teachers(members, weights, cfg.teacher)


def read_one_teacher(cfg: DistillConfig, path: Path) -> TeacherCheckpoint:
    allowed = cfg.teacher.allow_modified
    state = Checkpoint.read(path, allow_modified=allowed, override=ALLOW_MODIFIED)
    check_teacher_data(path, state, cfg.data.name)
    check_finite_weights(path, state.model)
    return TeacherCheckpoint(path, state, sha256_file(path))


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
    """Rebuild the teacher in eval mode on the device; it must match the student's classes.

    The pre-flight checked the classes and channels already where it could (kdlab.runs.
    teacher_files); they are checked again against the loaded data for what it could not see:
    class names known only once loaded (CIFAR's, a plugin data set's), an image folder
    changed since, a run started without the pre-flight (--config-dir, code calling this)."""
    path, state = checkpoint.path, checkpoint.state
    check_teacher_classes(path, state, data.num_classes, data.class_names)
    check_teacher_channels(path, state, data.in_channels)
    check_teacher_normalization(path, state, data.normalization)
    model = state.build_model(path).to(device).eval().requires_grad_(False)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def teacher_batches(
    teacher: FrozenTeacher, teachers: Teachers, session: Session
) -> CachedLogitLoader | None:
    """Training batches with the teacher's (the ensemble's) cached logits (teacher.cache=true,
    data in memory), or None: the objective then runs the teachers every step."""
    if not teachers.settings.cache:
        return None
    return cached_logit_loader(
        session.data.train,
        teacher,
        teachers.cache_key(),
        cache_root(teachers.members[0].path, teachers.settings.cache_dir),
        num_classes=session.data.num_classes,
        precision=session.precision,
    )


def prepare_teacher(teachers: Teachers, session: Session) -> tuple[FrozenTeacher, dict[str, Any]]:
    """Load and measure each teacher (in the student's precision) before the student trains,
    log what was used; several become one TeacherEnsemble, measured too. Returns the teacher
    and its summary record (several: {"teachers": [each one's], "weights", "val_acc"})."""
    data, device = session.data, session.device
    count = len(teachers.members)
    models, records = [], []
    for i, member in enumerate(teachers.members):
        name = "teacher" if count == 1 else f"teacher {i + 1}/{count}"
        model = load_teacher(member, data, device, session.cfg.trainer.channels_last)
        records.append(measure_teacher(model, member, name, session))
        models.append(model)
    if count == 1:
        return FrozenTeacher(models[0]), records[0]
    ensemble = TeacherEnsemble(models, teachers.weights)
    acc = evaluate(ensemble, CrossEntropy(), evaluated_split(data), device, session.precision)
    log.info(
        "teachers: %d, their logits averaged with weights %s: %s acc %.2f%%",
        count,
        ", ".join(f"{w:.4g}" for w in teachers.weights),
        split_name(data),
        acc["acc"],
    )
    record = {"teachers": records, "weights": list(teachers.weights), "val_acc": acc["acc"]}
    return FrozenTeacher(ensemble), record


def evaluated_split(data: DataBundle) -> BatchLoader:
    """Where a teacher is measured before training: the val split, else the test split."""
    return data.val if data.val is not None else data.test


def split_name(data: DataBundle) -> str:
    return "val" if data.val is not None else "test"


def measure_teacher(
    model: nn.Module, member: TeacherCheckpoint, name: str, session: Session
) -> dict[str, Any]:
    """Log one teacher's accuracy now and its record; what the summary keeps of it."""
    data = session.data
    info: dict[str, Any] = {"ckpt": str(member.path), "model": member.state.config["model"]["arch"]}
    measured = evaluate(
        model, CrossEntropy(), evaluated_split(data), session.device, session.precision
    )
    info["val_acc"] = measured["acc"]
    log.info(
        "%s: %s (%s), %s acc %.2f%%",
        name,
        member.path,
        info["model"],
        split_name(data),
        info["val_acc"],
    )
    info.update(
        check_provenance(member.path, info["model"], member.state.data, info["val_acc"], name)
    )
    return info


def check_provenance(
    path: Path, arch: str, data: str, measured_acc: float, name: str
) -> dict[str, Any]:
    """Log the teacher's record (hash, own test accuracy, recipe, version); warn when the file
    is not the one its record describes, or the teacher is far below its published accuracy."""
    provenance = Provenance.of(path)
    log.info("%s record: %s", name, provenance.describe())
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
