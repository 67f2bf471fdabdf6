"""Losses and accuracies accumulated on the device, and the evaluation pass that uses them.

Nothing here syncs with the host until `Accumulator.read`, once per log interval or epoch.
Under torchrun every read sums over the ranks, so the figures always cover the whole split.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from kdlab.data import BatchLoader
from kdlab.engine.distributed import all_reduce_sum
from kdlab.engine.execution import autocast, eval_mode
from kdlab.engine.objective import Objective


class Accumulator:
    """Sums of per-batch losses and hit counts, kept on the device until read; with
    `num_classes`, also the confusion matrix of the same top-1 predictions as the accuracy."""

    def __init__(self, device: torch.device, num_classes: int | None = None) -> None:
        self.device = device
        self.sums: dict[str, Tensor] = {}
        self.count = 0
        self.num_classes = num_classes
        self.confusion: Tensor | None = None
        if num_classes is not None:
            self.confusion = torch.zeros(num_classes**2, dtype=torch.long, device=device)

    def add(self, losses: dict[str, Tensor], logits: Tensor | None, y: Tensor) -> None:
        n = y.shape[0]
        for key, value in losses.items():
            weighted = value.detach().float() * n
            self.sums[key] = self.sums[key] + weighted if key in self.sums else weighted
        if logits is not None:
            top = top_predictions(logits.detach())
            match = top == y[:, None]
            self.sums["correct"] = self.sums.get("correct", 0) + match[:, 0].sum()
            self.sums["correct5"] = self.sums.get("correct5", 0) + match.any(dim=1).sum()
            if self.confusion is not None and self.num_classes is not None:
                cells = y * self.num_classes + top[:, 0]
                self.confusion += torch.bincount(cells, minlength=self.confusion.numel())
        self.count += n

    def read(self) -> dict[str, float]:
        """Means over the samples seen on all ranks (one collective, one host sync); accuracies
        in percent."""
        if not self.sums:
            return {}
        keys = list(self.sums)
        count = torch.tensor(float(self.count), device=self.device)
        totals = all_reduce_sum(torch.stack([*(self.sums[k].float() for k in keys), count]))
        *values, total = totals.tolist()
        out = {}
        for key, value in zip(keys, values, strict=True):
            if key == "correct":
                out["acc"] = 100.0 * value / total
            elif key == "correct5":
                out["acc5"] = 100.0 * value / total
            else:
                out[key] = value / total
        return out

    def read_confusion(self) -> Tensor | None:
        """The confusion matrix over all ranks (rows: true class), on the host."""
        if self.confusion is None or self.num_classes is None:
            return None
        return all_reduce_sum(self.confusion).view(self.num_classes, self.num_classes).cpu()


def top_predictions(logits: Tensor) -> Tensor:
    """The k = min(5, C) likeliest classes, best first: top-1, top-5 and the confusion matrix
    all read this one call (argmax and topk may pick different classes among tied logits,
    which bf16 logits often have)."""
    return logits.topk(min(5, logits.shape[1]), dim=1).indices


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    objective: Objective,
    loader: BatchLoader,
    device: torch.device,
    precision: str,
    num_classes: int | None = None,
) -> dict[str, Any]:
    """Mean losses, top-1/top-5 accuracy; with `num_classes`, also the confusion matrix."""
    acc = Accumulator(device, num_classes)
    with eval_mode(model, objective):
        for x, y in loader:
            with autocast(device, precision):
                out = objective(model, x, y)
            acc.add(out.losses, out.logits, y)
    result: dict[str, Any] = acc.read()
    confusion = acc.read_confusion()
    if confusion is not None:
        result["confusion"] = confusion
    return result
