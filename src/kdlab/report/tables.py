"""Records (one dict per row) rendered as aligned text, markdown and CSV.

Every table of the report is first a list of records with machine-readable values (what
the CSV holds); the text and markdown views are formatted from those same records, so
the printed numbers and the CSV cannot disagree.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdlab.errors import KdlabError
from kdlab.paths import write_text_atomic

ACC_KEYS = ("train_acc", "val_acc", "test_acc", "last_test_acc")
# The final training loss and its parts. summary.json's `loss` is called `train_loss` in
# the tables: the config key `loss` (loss=kd) may be a sweep column too.
LOSS_KEYS = ("train_loss", "loss_soft", "loss_hard", "loss_fit")
TITLES = {
    "train_acc": "train acc %",
    "val_acc": "val acc %",
    "test_acc": "test acc %",
    "d_val_acc": "Δval",
    "d_test_acc": "Δtest",
    "best_epoch": "best ep",
    "last_test_acc": "test@last",
    "train_images_per_s": "train img/s",
    "train_ce": "CE",
    "train_loss": "loss",
    "loss_soft": "soft",
    "loss_hard": "hard",
    "loss_fit": "fit",
    "wall_time_s": "time",
    "weights_mb": "MB",
    "macs": "MACs",
    "images_per_s_b1": "img/s b1",
    "images_per_s_b64": "img/s b64",
}
COUNT_KEYS = ("params", "macs")  # shown as 175K, 1.35M, 2.10G
MISSING = "-"


def is_loss_part(key: str) -> bool:
    """A loss part a run logged (`loss_<part>`: whatever its method names it)."""
    return key.startswith("loss_") and key != "loss_name"


# A number as formatted here: 93.05, +0.76, 1.35M, 2.10G, 12m03s, 33/47, 91.33±1.53.
_NUMBER = re.compile(r"^[-+]?[\d./]+(e[-+]?\d+)?([KMG]|s|m\d+s|h\d+m)?(±.+)?$")


def best_first(key: str) -> Callable[[dict[str, Any]], tuple[bool, float]]:
    """Sort key: records with the highest `key` first, those without it last."""
    return lambda record: (record[key] is None, -(record[key] or 0.0))


def summary_key(key: str) -> str:
    """The summary.json key a table column comes from."""
    return "loss" if key == "train_loss" else key


def format_count(count: int) -> str:
    """175K, 306K, 1.35M (as the notes write parameters), 2.10G."""
    if count >= 1_000_000_000:
        return f"{count / 1e9:.2f}G"
    if count >= 1_000_000:
        return f"{count / 1e6:.2f}M"
    if count >= 1_000:
        return f"{count / 1e3:.0f}K"
    return str(count)


def format_duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"


def format_value(key: str, value: Any, std: float | None = None) -> str:
    """One cell: accuracies and Δ with 2 decimals, losses with 3, ± std when given."""
    if value is None or value == "":
        return MISSING
    if key in COUNT_KEYS:
        return format_count(int(value))
    if key == "weights_mb":
        return f"{value:.2f}"
    if key.startswith("images_per_s"):
        return f"{value:.0f}"
    if key == "wall_time_s":
        text = format_duration(value)
        return text if std is None else f"{text}±{format_duration(std)}"
    if key == "train_images_per_s":
        return f"{value:.0f}" if std is None else f"{value:.0f}±{std:.0f}"
    if key.startswith("d_"):
        return f"{value:+.2f}"
    if key in ACC_KEYS or key in LOSS_KEYS or is_loss_part(key) or key == "train_ce":
        digits = 2 if key in ACC_KEYS else 3
        return f"{value:.{digits}f}" if std is None else f"{value:.{digits}f}±{std:.{digits}f}"
    return str(value)


@dataclass(frozen=True)
class Table:
    """Headers and rows of display strings; numeric columns are right-aligned."""

    headers: list[str]
    rows: list[list[str]]

    @classmethod
    def from_records(cls, records: Sequence[dict[str, Any]], keys: Sequence[str]) -> Table:
        """The `keys` columns (titled from TITLES); a `<key>_std` entry adds ± std to a cell.

        Columns empty in every row are left out (a table of plain runs needs no `fit`).
        """
        rows = [
            [format_value(key, record.get(key), record.get(f"{key}_std")) for key in keys]
            for record in records
        ]
        keep = [i for i in range(len(keys)) if any(row[i] != MISSING for row in rows)]
        headers = [TITLES.get(keys[i], keys[i].removeprefix("loss_")) for i in keep]
        return cls(headers, [[row[i] for i in keep] for row in rows])

    def _right_aligned(self) -> list[bool]:
        return [
            all(_NUMBER.match(row[i]) or row[i] == MISSING for row in self.rows)
            and any(row[i] != MISSING for row in self.rows)
            for i in range(len(self.headers))
        ]

    def text(self) -> str:
        """Fixed-width columns, two spaces apart, for the terminal."""
        widths = [
            max(len(cell) for cell in [header, *(row[i] for row in self.rows)])
            for i, header in enumerate(self.headers)
        ]
        right = self._right_aligned()

        def line(cells: Sequence[str]) -> str:
            return "  ".join(
                cell.rjust(w) if r else cell.ljust(w)
                for cell, w, r in zip(cells, widths, right, strict=True)
            ).rstrip()

        return "\n".join([line(self.headers), *(line(row) for row in self.rows)])

    def markdown(self) -> str:
        rule = ["---:" if r else "---" for r in self._right_aligned()]
        lines = [self.headers, rule, *self.rows]
        return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def write_csv(records: Sequence[dict[str, Any]], path: Path) -> None:
    """All records' keys as columns (first seen first); missing values are empty."""
    fields = list(dict.fromkeys(key for record in records for key in record))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in records)
    write_text(buffer.getvalue(), path)


def write_text(text: str, path: Path) -> None:
    write_text_atomic(path, text, "--out")


def cannot_write(path: Path, error: OSError) -> KdlabError:
    return KdlabError(f"cannot write {path} ({error.strerror}): make its dir writable")
