"""A checkpoint's record: what the file cannot say about itself, written beside it.

A file cannot hold its own hash, and best.pt is written before the test split is measured,
so every finished run writes `checkpoints/best.pt.json` next to it: the sha256 of best.pt
(computed after the file was written), its measured test accuracy, the recipe that made it
(the command, its overrides and the resolved config), the data facts the file holds (its
classes and channels: read without loading the file) and the kdlab version. A teacher is
named by that hash; loading it checks the file against the record (kdlab.runs.teacher).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdlab.engine.run_logger import write_json_atomic
from kdlab.errors import KdlabError
from kdlab.published import published_accuracy

FAR_BELOW = 3.0  # points under the published accuracy at which a teacher is worth a warning
HASH_SHOWN = 12  # hex digits of the sha256 that name a teacher in logs and reports
# summary.json's figures the record keeps (the run's own, measured once)
RECORDED = (
    "command", "model", "data", "seed", "epochs", "best_epoch",
    "val_acc", "test_acc", "test_acc5", "last_test_acc", "overrides", "kdlab_version",
)  # fmt: skip


# The record's copy of the checkpoint's data facts (classes, channels, ...): a teacher is
# checked against a run's data before the run starts, without loading it.
TRAINED_ON = "trained_on"


def record_path(ckpt: Path) -> Path:
    return ckpt.with_name(f"{ckpt.name}.json")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_record(
    ckpt: Path, summary: dict[str, Any], config: dict[str, Any], trained_on: dict[str, Any]
) -> dict[str, Any]:
    """Hash the finished checkpoint and write its record beside it; `trained_on`: the
    checkpoint's data facts (kdlab.engine.checkpoint.data_facts)."""
    record = {
        "file": ckpt.name,
        "sha256": sha256_file(ckpt),
        "bytes": ckpt.stat().st_size,
        **{key: summary.get(key) for key in RECORDED},
        "config": config,
        TRAINED_ON: trained_on,
    }
    write_json_atomic(record, record_path(ckpt))
    return record


def read_record(ckpt: Path) -> dict[str, Any] | None:
    """The record beside `ckpt`; None when there is none (or it cannot be read: not UTF-8
    or not JSON, ValueErrors both)."""
    try:
        record = json.loads(record_path(ckpt).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def check_intact(ckpt: Path, allow_modified: bool, override: str) -> None:
    """Refuse a checkpoint whose bytes are not the ones its record hashed (a file without a
    record has nothing to be checked against); `override` names how to use it anyway."""
    record = read_record(ckpt)
    if record is None or allow_modified:
        return
    recorded, now = str(record.get("sha256")), sha256_file(ckpt)
    if recorded != now:
        raise KdlabError(
            f"{ckpt} is not the file its record {record_path(ckpt).name} describes (sha256 "
            f"{recorded[:HASH_SHOWN]} recorded, {now[:HASH_SHOWN]} now): it changed after its "
            f"run wrote it; restore it, or pass {override} to use it anyway"
        )


@dataclass(frozen=True)
class Provenance:
    """A checkpoint's hash now and the record its run wrote (None: no record)."""

    path: Path
    sha256: str
    record: dict[str, Any] | None

    @classmethod
    def of(cls, ckpt: Path) -> Provenance:
        return cls(ckpt, sha256_file(ckpt), read_record(ckpt))

    @property
    def short(self) -> str:
        return self.sha256[:HASH_SHOWN]

    @property
    def intact(self) -> bool:
        """The file is the one its record describes."""
        return self.record is not None and self.record.get("sha256") == self.sha256

    def recipe(self) -> str:
        """The command line that made the checkpoint, from the record."""
        record = self.record or {}
        return " ".join(["kdlab", str(record.get("command")), *(record.get("overrides") or [])])

    def describe(self) -> str:
        """One log line: the hash, whether the file matches its record, accuracy, recipe."""
        if self.record is None:
            return (
                f"sha256 {self.short}, no record beside it ({record_path(self.path).name}: "
                "written by every finished kdlab run since records were kept)"
            )
        check = "the file matches its record" if self.intact else "the file DIFFERS from it"
        acc = self.record.get("test_acc")
        shown = "n/a" if acc is None else f"{acc:.2f}%"
        return (
            f"sha256 {self.short} ({check}), test acc {shown} in its own run, made by "
            f"`{self.recipe()}`, kdlab {self.record.get('kdlab_version')}"
        )


def far_below_published(acc: float, data: str, arch: str, measured: str) -> str | None:
    """A warning when a teacher is more than FAR_BELOW points under the published accuracy
    of its architecture on its data set (None when it is not, or nothing is published)."""
    figure = published_accuracy(data, arch)
    if figure is None or acc >= figure.top1 - FAR_BELOW:
        return None
    return (
        f"the teacher ({arch}) scores {acc:.2f}% ({measured}), {figure.top1 - acc:.1f} points "
        f"below the published {figure.top1:.2f}% for {arch} on {data} ({figure.source.cite()}, "
        f"{figure.source.epoch}): its students will not be comparable with published ones"
    )
