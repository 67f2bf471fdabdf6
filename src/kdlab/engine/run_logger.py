"""What a run writes as it goes: TensorBoard events, metrics.jsonl, summary.json, tqdm bars.

(Named run_logger, not logging, so it never shadows the standard library's module.)
"""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kdlab.engine.trackers import RUN_IDS
from kdlab.errors import KdlabError

if TYPE_CHECKING:
    from kdlab.engine.trackers import Tracker

from kdlab.paths import write_text_atomic

log = logging.getLogger("kdlab")


def _clean(value: Any) -> Any:
    """JSON has no NaN/Inf: write them as null rather than invalid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def write_json_atomic(data: dict[str, Any], path: Path) -> None:
    """Write JSON via a temp file and a rename, so readers never see half a file."""
    write_text_atomic(path, json.dumps(_clean(data), indent=2) + "\n")


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The per-epoch records of a run (empty if it has none yet). A torn last line (a kill
    mid-write) is skipped with a warning; any other line that is not an epoch's record is a
    one-line error naming the file and the line."""
    if not path.is_file():
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError) as error:
        raise KdlabError(f"cannot read {path} ({error}): fix or delete it") from None
    numbered = [(i, line) for i, line in enumerate(lines, 1) if line.strip()]
    records = []
    for i, line in numbered:
        try:
            record = json.loads(line)
        except ValueError:
            if i == numbered[-1][0]:  # a kill mid-write
                log.warning("%s: skipped its last line %d, cut short", path, i)
                continue
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
            raise KdlabError(
                f"{path} line {i} is not an epoch record (a JSON object with an epoch): fix or "
                "delete that line"
            )
        records.append(record)
    return records


def _shown(tag: str, value: Any) -> bool:
    """Whether an epoch record's entry is a TensorBoard scalar."""
    return ("/" in tag and isinstance(value, int | float)) or tag == "lr"


class RunLogger:
    """One run's TensorBoard writer and metrics.jsonl, and the trackers `logger=` added (each
    gets the same scalars); resumes cleanly after `epoch`."""

    def __init__(
        self, run_dir: Path, resume_epoch: int = 0, trackers: Mapping[str, Tracker] | None = None
    ) -> None:
        self.run_dir = run_dir
        self.trackers = list((trackers or {}).values())
        ids = {name: t.run_id for name, t in (trackers or {}).items() if t.run_id is not None}
        if ids:  # what a resumed run reopens (engine.trackers.open_trackers)
            (run_dir / RUN_IDS).parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(ids, run_dir / RUN_IDS)
        self.metrics_path = run_dir / "metrics.jsonl"
        kept = [r for r in read_metrics(self.metrics_path) if r["epoch"] <= resume_epoch]
        write_text_atomic(self.metrics_path, "".join(json.dumps(_clean(r)) + "\n" for r in kept))
        # Imported here: reading metrics.jsonl back (kdlab report) needs no tensorboard.
        from torch.utils.tensorboard import SummaryWriter

        from kdlab.engine.event_files import cut_after_epoch

        if kept:  # drop the events logged after the checkpoint a resumed run restarts from
            cut_after_epoch(run_dir, resume_epoch, (t for t, v in kept[-1].items() if _shown(t, v)))
        self.writer = SummaryWriter(str(run_dir))

    def step(self, global_step: int, scalars: dict[str, float]) -> None:
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, global_step)
        for tracker in self.trackers:
            tracker.step(global_step, scalars)

    def epoch(self, record: dict[str, Any]) -> None:
        """Log one epoch: scalars to TensorBoard (x = epoch), the whole record to JSONL."""
        scalars = {tag: value for tag, value in record.items() if _shown(tag, value)}
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, record["epoch"])
        for tracker in self.trackers:
            tracker.epoch(record["epoch"], scalars)
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(_clean(record)) + "\n")
            f.flush()
        self.writer.flush()

    def hparams(self, params: dict[str, Any], metrics: dict[str, float | None]) -> None:
        """One hparams entry for this run, written into the run's own event file.

        SummaryWriter.add_hparams would open a second writer in a sub-dir, which shows up
        as a stray extra run; writing the three hparams summaries directly avoids that.
        """
        from torch.utils.tensorboard.summary import hparams

        values = {k: v for k, v in metrics.items() if v is not None}
        clean = {
            k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in params.items()
        }
        for summary in hparams(clean, values):
            self.writer.file_writer.add_summary(summary)
        for tag, value in values.items():
            self.writer.add_scalar(tag, value)
        self.writer.flush()

    def image(self, tag: str, png: Path, step: int) -> None:
        """A PNG (e.g. the confusion heat-map) as a TensorBoard image: its bytes as they are
        (TensorBoard stores images PNG-encoded; decoding and encoding again cost 0.1 s)."""
        import io

        from PIL import Image
        from tensorboard.compat.proto.summary_pb2 import Summary

        data = png.read_bytes()
        with Image.open(io.BytesIO(data)) as img:  # the header of the bytes read once
            width, height, channels = *img.size, len(img.getbands())
        image = Summary.Image(
            height=height, width=width, colorspace=channels, encoded_image_string=data
        )
        summary = Summary(value=[Summary.Value(tag=tag, image=image)])
        self.writer.file_writer.add_summary(summary, step)

    def finish(self, summary: dict[str, Any], artifacts: list[Path]) -> None:
        """The trackers' closing entries: the summary's final figures and the run's files."""
        for tracker in self.trackers:
            tracker.summary(summary)
            tracker.artifacts(artifacts)

    def close(self, failed: bool = False) -> None:
        """Flush and close the record and end the trackers' runs (`failed`: marked failed);
        once: a finished run closes at its summary, a failed one when its session ends."""
        trackers, self.trackers = self.trackers, []
        self.writer.close()
        for tracker in trackers:
            tracker.close(failed)


class NullLogger(RunLogger):
    """The logger of DDP ranks other than 0: rank 0's RunLogger writes the run's one record."""

    def __init__(self) -> None:
        pass

    def step(self, global_step: int, scalars: dict[str, float]) -> None:
        pass

    def epoch(self, record: dict[str, Any]) -> None:
        pass

    def hparams(self, params: dict[str, Any], metrics: dict[str, float | None]) -> None:
        pass

    def image(self, tag: str, png: Path, step: int) -> None:
        pass

    def finish(self, summary: dict[str, Any], artifacts: list[Path]) -> None:
        pass

    def close(self, failed: bool = False) -> None:
        pass


def bars_enabled(setting: str, multirun: bool) -> bool:
    """`auto`: bars only on an interactive terminal and never inside a multirun."""
    if setting == "on":
        return True
    if setting == "off":
        return False
    return sys.stderr.isatty() and not multirun
