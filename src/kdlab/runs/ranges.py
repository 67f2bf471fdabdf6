"""The range checks every setting shares (one-line KdlabErrors), and `trainer.*`'s, which
need nothing but the values: torch-free, so the CLI's first look at the overrides
(kdlab.runs.screen) runs them before torch is imported. kdlab.runs.validation runs them
on the whole config."""

from __future__ import annotations

import math

from kdlab.engine.settings import TrainerConfig
from kdlab.errors import KdlabError

PRECISIONS = ("32", "bf16", "fp16", "auto")
PROGRESS = ("auto", "on", "off")


def require(ok: bool, message: str) -> None:
    if not ok:
        raise KdlabError(message)


def choice(value: str, valid: tuple[str, ...] | list[str], key: str) -> None:
    require(
        value in valid, f"unknown {key} '{value}': choose one of {', '.join(valid)} ({key}=NAME)"
    )


def finite(value: float, key: str) -> None:
    require(math.isfinite(value), f"{key} must be a finite number, got {value}")


def positive(value: float, key: str) -> None:
    finite(value, key)
    require(value > 0, f"{key} must be positive, got {value} (set {key}=N with N > 0)")


def within(value: float, low: float, high: float, key: str, closed: str = "[)") -> None:
    """low <= value < high (`closed` says which ends belong: "[)", "[]", "()")."""
    finite(value, key)
    above = value >= low if closed[0] == "[" else value > low
    below = value <= high if closed[1] == "]" else value < high
    require(above and below, f"{key} must be in {closed[0]}{low}, {high}{closed[1]}, got {value}")


def at_least_zero(value: float, key: str) -> None:
    finite(value, key)
    require(value >= 0, f"{key} must be >= 0, got {value}")


def check_trainer_values(t: TrainerConfig) -> None:
    """trainer.*'s ranges (the batch's split over torchrun processes is validation's)."""
    positive(t.epochs, "trainer.epochs")
    positive(t.batch_size, "trainer.batch_size")
    positive(t.eval_batch_size, "trainer.eval_batch_size")
    positive(t.log_every, "trainer.log_every")
    choice(str(t.precision), PRECISIONS, "trainer.precision")
    choice(t.progress, PROGRESS, "trainer.progress")
    within(t.label_smoothing, 0, 1, "trainer.label_smoothing")
    if t.grad_clip is not None:
        positive(t.grad_clip, "trainer.grad_clip")
    if t.num_threads is not None:
        positive(t.num_threads, "trainer.num_threads")
