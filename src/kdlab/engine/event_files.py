"""Cutting a run's TensorBoard event files back to the checkpoint a resume starts from.

A resumed run must not leave behind what the run it continues logged after its last
checkpoint (the rest of a killed epoch, or a finished run's closing hparams, test scores
and images). SummaryWriter's `purge_step` cannot do it: it drops every tag's events from
one step on, and kdlab logs in two units (`train_step/*` per global step, the epoch
records per epoch), so any one purge step erases one of the two (a purge at epoch 2 took
all of epoch 1's step curves). Events are written in order, and a checkpoint is saved
only after its epoch's record is logged and flushed, so everything up to and including
that record's last event is what the checkpoint has seen: the files are rewritten with
exactly those events, and the resumed run appends a new file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.summary.writer.record_writer import RecordWriter


def cut_after_epoch(run_dir: Path, epoch: int, epoch_tags: Iterable[str]) -> None:
    """Keep only the events logged up to the last of `epoch`'s `epoch_tags` (its record);
    nothing is cut where that record is not found (event files deleted by hand)."""
    files = sorted(run_dir.glob("events.out.tfevents.*"), key=_first_wall_time)
    records = [(path, list(RawEventFileLoader(str(path)).Load())) for path in files]
    tags = set(epoch_tags)
    cut = None  # (file number, record number) of the epoch record's last event
    for f, (_, raw) in enumerate(records):
        for r, data in enumerate(raw):
            event = Event.FromString(data)
            if event.step == epoch and any(v.tag in tags for v in event.summary.value):
                cut = (f, r)
    if cut is None:
        return
    for f, (path, raw) in enumerate(records):
        if f < cut[0]:
            continue
        if f > cut[0]:
            path.unlink()
        else:
            _rewrite(path, raw[: cut[1] + 1])


def _first_wall_time(path: Path) -> float:
    for data in RawEventFileLoader(str(path)).Load():
        return Event.FromString(data).wall_time
    return 0.0


def _rewrite(path: Path, raw: list[bytes]) -> None:
    """Replace the file by these records, atomically (a kill leaves the old or the new)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as f:
        writer = RecordWriter(f)
        for data in raw:
            writer.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
