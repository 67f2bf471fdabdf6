"""The references' published figures as data: what the CIFAR-100 grid compares against.

`<data set>.csv` holds one figure per row: `teacher` (empty for a model trained alone),
`student`, `method` (kdlab's name; `baseline` = the model trained alone, which is also a
teacher's own accuracy), `top1` (test accuracy, %) and `source`; `sources.csv` names each
source's repository, commit, file and protocol (`last` or `best` epoch) with a note on how
the figures were read. Transcribed from the READMEs; tests check cells against their text.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from pathlib import Path

HERE = Path(__file__).parent
BASELINE = "baseline"  # the model trained alone, without a teacher
PROTOCOLS = {"last": "last epoch", "best": "best epoch"}


@dataclass(frozen=True)
class Source:
    """Where figures come from, and which epoch they are."""

    name: str
    repo: str
    commit: str
    file: str
    protocol: str  # `last` | `best`
    note: str

    def cite(self) -> str:
        return f"{self.repo}@{self.commit[:7]} {self.file}"

    @property
    def epoch(self) -> str:
        """The protocol in words: `last epoch` or `best epoch`."""
        return PROTOCOLS[self.protocol]


@dataclass(frozen=True)
class Figure:
    """One published test accuracy (%) and its source."""

    top1: float
    source: Source


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@cache
def sources() -> dict[str, Source]:
    return {row["name"]: Source(**row) for row in _rows(HERE / "sources.csv")}


def data_sets() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.csv") if p.stem != "sources")


@cache
def published(data: str) -> dict[tuple[str, str, str], Figure]:
    """(teacher, student, method) -> figure for `data`; empty for a data set with none.
    A `baseline` row's teacher is empty."""
    path = HERE / f"{data}.csv"
    if not path.is_file():
        return {}
    known = sources()
    return {
        (row["teacher"], row["student"], row["method"]): Figure(
            float(row["top1"]), known[row["source"]]
        )
        for row in _rows(path)
    }


def published_figure(data: str, teacher: str, student: str, method: str) -> Figure | None:
    """The published figure of one grid cell; a baseline is the student's, whoever teaches."""
    return published(data).get(("" if method == BASELINE else teacher, student, method))


def published_accuracy(data: str, arch: str) -> Figure | None:
    """A model's own published accuracy trained alone (a teacher's, say) on `data`."""
    return published_figure(data, "", arch, BASELINE)
