"""A sweep's ledger: one row per job (its overrides as columns), best validation first.

Hydra skips `on_multirun_end` when a job fails, so the ledger is built from the job dirs
alone: `kdlab report SWEEP_DIR` writes it after the fact, `SweepSummary` at the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from kdlab.errors import KdlabError
from kdlab.report.groups import override_items
from kdlab.report.runs import SUMMARY, display_path, natural_key, read_summary
from kdlab.report.tables import (
    LOSS_KEYS,
    Table,
    best_first,
    is_loss_part,
    summary_key,
    write_csv,
    write_text,
)

RESULT_KEYS = ("val_acc", "test_acc", "best_epoch", *LOSS_KEYS, "wall_time_s")


def job_overrides(job_dir: Path, summary: dict[str, Any] | None) -> list[str]:
    """The job's task overrides: from summary.json, else Hydra's record of a failed job."""
    if summary is not None:
        return list(summary.get("overrides") or [])
    recorded = job_dir / ".hydra" / "overrides.yaml"
    return list(yaml.safe_load(recorded.read_text()) or []) if recorded.is_file() else []


def job_record(job_dir: Path) -> dict[str, Any]:
    summary = read_summary(job_dir) if (job_dir / SUMMARY).is_file() else None
    ok = summary is not None and summary.get("status") != "failed"
    record: dict[str, Any] = {"job": job_dir.name, "status": "ok" if ok else "failed"}
    record.update(override_items(job_overrides(job_dir, summary)))
    for key in RESULT_KEYS:
        record[key] = summary.get(summary_key(key)) if summary else None
    for key, value in (summary or {}).items():  # every other loss part the job's method logged
        if is_loss_part(key) and key not in record and isinstance(value, int | float):
            record[key] = value
    return record


def is_result(key: str) -> bool:
    return key in RESULT_KEYS or is_loss_part(key)


def aggregate_sweep(sweep_dir: Path) -> list[dict[str, Any]]:
    """Write summary.csv and summary.md into `sweep_dir`; returns their rows, best first.

    A job without summary.json is listed as failed (a job still running looks the same).
    """
    sweep_dir = Path(sweep_dir)
    children = sweep_dir.iterdir() if sweep_dir.is_dir() else ()
    jobs = [d for d in children if d.is_dir() and not d.name.startswith(".")]
    if not jobs:
        raise KdlabError(f"{display_path(sweep_dir)} holds no job dirs: pass a Hydra sweep dir")
    jobs.sort(key=lambda d: natural_key(d.name))  # ties in val acc stay in job order
    records = sorted((job_record(d) for d in jobs), key=best_first("val_acc"))
    write_csv(records, sweep_dir / "summary.csv")  # every override, for machines
    write_text(
        f"# sweep {sweep_dir.name}\n\n{sweep_text(records, markdown=True)}",
        sweep_dir / "summary.md",
    )
    return records


def shared_overrides(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Overrides with one value in every job (the sweep's fixed settings), when there are
    two jobs or more: said once above the table instead of repeated in every row."""
    if len(records) < 2:
        return {}
    keys = dict.fromkeys(key for record in records for key in record)
    candidates = [key for key in keys if not is_result(key) and key not in ("job", "status")]
    first = records[0]
    return {k: first.get(k) for k in candidates if all(r.get(k) == first.get(k) for r in records)}


def sweep_text(records: list[dict[str, Any]], *, markdown: bool) -> str:
    """The fixed settings in one line, then the table of what varied and the results."""
    shared = shared_overrides(records)
    keys = dict.fromkeys(key for record in records for key in record)
    leading = [key for key in keys if not is_result(key) and key not in shared]
    parts = [key for key in keys if is_result(key) and key not in RESULT_KEYS]
    table = Table.from_records(records, [*leading, *RESULT_KEYS, *parts])
    fixed = ", ".join(f"{key}={value}" for key, value in shared.items())
    head = f"shared by every job: {fixed}\n\n" if fixed else ""
    return head + (table.markdown() if markdown else table.text()) + "\n"


class SweepSummary(Callback):
    """Hydra callback: the sweep's ledger at the end of a multirun where every job ended."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        print(sweep_text(aggregate_sweep(sweep_dir), markdown=False), end="")
        print(f"sweep summary: {display_path(sweep_dir / 'summary.md')} and summary.csv")
