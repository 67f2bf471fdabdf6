"""What one call of `Trainer.fit` trains, and what it returns."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from kdlab.data import BatchLoader
from kdlab.engine.objective import Objective, StepOutput


@dataclass
class Stage:
    """One call of `fit`: what to minimise, what trains, for how long."""

    name: str
    objective: Objective
    param_groups: list[dict[str, Any]]
    epochs: int
    # Kept in eval mode (no BN statistics updates) and without gradients while this stage
    # trains, e.g. FitNets' pre-trained front in stage2=frozen.
    frozen: Sequence[nn.Module] = ()
    select: str = "val_acc"  # val_acc (higher is better) or val_loss (lower is better)
    # The training batches, when not the data set's own: e.g. (x, y, teacher logits) from the
    # logit cache. Every batch is (x, y, *extra); extra reaches the objective as arguments.
    train: BatchLoader | None = None


@dataclass
class StageResult:
    """The figures of a finished stage, as they go into summary.json."""

    name: str
    epochs: int
    best_epoch: int
    best: dict[str, Any]  # the epoch record of the selected checkpoint
    last: dict[str, Any]
    train_time_s: float
    train_images: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        return self.train_images / self.train_time_s if self.train_time_s > 0 else 0.0


def parameters_of(modules: Sequence[nn.Module]) -> list[nn.Parameter]:
    """The parameters of `modules`, for a stage's parameter groups."""
    return [p for m in modules for p in m.parameters()]


class StepModule(nn.Module):
    """A stage's training step as one module: the objective applied to the model.

    DDP wraps this rather than the model, so it averages the gradients of everything the
    stage trains (a FitNet regressor inside the objective too) whatever part of the model the
    objective runs (a hint stage runs only the student's prefix).
    """

    def __init__(self, model: nn.Module, objective: Objective) -> None:
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, x: Tensor, y: Tensor, *extra: Tensor, **named: Tensor) -> StepOutput:
        return self.objective(self.model, x, y, *extra, **named)


def buffer_snapshot(*modules: nn.Module) -> Callable[[], None]:
    """An undo for one forward pass: it restores the modules' buffers (BatchNorm statistics),
    so a skipped non-finite batch leaves no NaN in them."""
    buffers = [b for module in modules for b in module.buffers()]
    saved = [b.clone() for b in buffers]

    def undo() -> None:
        for buffer, value in zip(buffers, saved, strict=True):
            buffer.copy_(value)

    return undo
