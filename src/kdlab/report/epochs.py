"""Figures of one epoch record that compare like with like across runs.

A KD run's `loss` is its objective, (1-α)·T²·soft + α·hard (~30 at T=4), a plain run's is
the cross-entropy (~2): the comparable figure is the hard-label cross-entropy, which is
the KD objective's hard part and a plain run's whole loss. A FitNet hint epoch has none.
"""

from __future__ import annotations

from typing import Any

from kdlab.report.runs import Run

PARTS = ("loss_soft", "loss_fit")  # a loss with one of these is not a plain cross-entropy


def cross_entropy(record: dict[str, Any], split: str) -> float | None:
    """The epoch's hard-label cross-entropy on `split` (train/val); None in a hint epoch."""
    hard = record.get(f"{split}/loss_hard")
    if hard is not None:
        return hard
    if any(record.get(f"{split}/{part}") is not None for part in PARTS):
        return None
    return record.get(f"{split}/loss")


def objective(record: dict[str, Any], split: str) -> float | None:
    """The epoch's distillation objective (a loss with a soft part); None for plain CE."""
    return record.get(f"{split}/loss") if record.get(f"{split}/loss_soft") is not None else None


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
