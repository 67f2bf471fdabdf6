"""Runs of one config that differ only by seed, reported as mean ± std.

Two runs share a config when command, model and data agree and their overrides agree
once `seed=` (and the bookkeeping keys that do not change what is trained) are left out.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from kdlab.report.runs import Run

# Override keys that do not change the experiment (as in hydra.job.config.override_dirname).
IGNORED_KEYS = frozenset({"seed", "resume", "debug", "trainer.progress"})


@dataclass(frozen=True)
class Stat:
    """Mean and sample std of one figure over a group's runs that report it."""

    mean: float | None
    std: float | None  # None for a single value

    @classmethod
    def of(cls, values: Sequence[float | None]) -> Stat:
        present = [float(v) for v in values if v is not None]
        if not present:
            return cls(None, None)
        std = statistics.stdev(present) if len(present) > 1 else None
        return cls(statistics.fmean(present), std)


@dataclass(frozen=True)
class RunGroup:
    """Runs of one config (one or more seeds); a single run is a group of one."""

    runs: tuple[Run, ...]

    @property
    def first(self) -> Run:
        return self.runs[0]

    @property
    def seeds(self) -> list[str]:
        return [str(run.get("seed")) for run in self.runs]

    @property
    def name(self) -> str:
        if len(self.runs) == 1:
            return self.first.label
        return f"{self.first.label} (seeds {','.join(self.seeds)})"

    def stat(self, key: str) -> Stat:
        return Stat.of([run.get(key) for run in self.runs])


def override_key(override: str) -> str:
    """`+trainer.x=1` -> `trainer.x`."""
    return override.split("=", 1)[0].lstrip("+~")


def override_items(overrides: Sequence[str]) -> dict[str, str]:
    """`["T=4", "+x.y=1", "~z"]` -> `{"T": "4", "x.y": "1", "z": ""}`."""
    return {override_key(o): o.split("=", 1)[1] if "=" in o else "" for o in overrides}


def config_key(run: Run) -> tuple[object, ...]:
    """What must agree for two runs to be seeds of one config."""
    overrides = run.get("overrides") or []
    kept = sorted(o for o in overrides if override_key(o) not in IGNORED_KEYS)
    return (run.get("command"), run.get("model"), run.get("data"), tuple(kept))


def group_by_seed(runs: Sequence[Run]) -> list[RunGroup]:
    """Groups in the order their first run appears."""
    groups: dict[tuple[object, ...], list[Run]] = {}
    for run in runs:
        groups.setdefault(config_key(run), []).append(run)
    return [RunGroup(tuple(members)) for members in groups.values()]
