"""Figures of one epoch record that compare like with like across runs.

A KD run's `loss` is its objective, (1-α)·T²·soft + α·hard (~30 at T=4), a plain run's is
the cross-entropy (~2): the comparable figure is the hard-label cross-entropy, which is
the objective's `loss_hard` part (every distillation method logs it) and a plain run's
whole loss. A FitNet hint epoch has none. A loss with any `loss_*` part is an objective.
"""

from __future__ import annotations

from typing import Any

from kdlab.report.runs import Run


def parts(record: dict[str, Any], split: str) -> list[str]:
    """The `loss_*` parts the epoch logged on `split`, by name (`loss_hard`, `loss_dkd`)."""
    prefix = f"{split}/loss_"
    return [key.removeprefix(f"{split}/") for key in record if key.startswith(prefix)]


def cross_entropy(record: dict[str, Any], split: str) -> float | None:
    """The epoch's hard-label cross-entropy on `split` (train/val); None in a hint epoch."""
    hard = record.get(f"{split}/loss_hard")
    if hard is not None:
        return hard
    if parts(record, split):
        return None
    return record.get(f"{split}/loss")


def objective(record: dict[str, Any], split: str) -> float | None:
    """The epoch's distillation objective (a loss with a hard part and others); None for plain
    CE and for a FitNet hint epoch (its loss is the fit part alone)."""
    logged = parts(record, split)
    return record.get(f"{split}/loss") if "loss_hard" in logged and len(logged) > 1 else None


def best_epoch_record(run: Run) -> dict[str, Any]:
    """The tested (best) epoch's record; without metrics.jsonl, summary.json's figures, whose
    losses are the last epoch's: kept only when the last epoch is the best one."""
    record = run.best_record()
    if record is not None:
        return record
    fallback = {"train/acc": run.get("train_acc")}
    if run.get("best_epoch") == run.get("epochs"):
        fallback.update({f"train/{k}": run.get(k) for k in ("loss", "loss_soft", "loss_hard")})
    return fallback


def train_figures(run: Run) -> dict[str, float | None]:
    """Train accuracy, cross-entropy, objective and soft loss, all of the best epoch."""
    record = best_epoch_record(run)
    return {
        "train_acc": record.get("train/acc"),
        "train_ce": cross_entropy(record, "train"),
        "train_loss": record.get("train/loss"),
        "loss_soft": record.get("train/loss_soft"),
        "loss_hard": record.get("train/loss_hard"),
    }
