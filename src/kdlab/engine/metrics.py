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
    """Sums of per-batch losses and hit counts, kept on the device until read."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.sums: dict[str, Tensor] = {}
        self.count = 0

    def add(self, losses: dict[str, Tensor], logits: Tensor | None, y: Tensor) -> None:
        n = y.shape[0]
        for key, value in losses.items():
            weighted = value.detach().float() * n
            self.sums[key] = self.sums[key] + weighted if key in self.sums else weighted
        if logits is not None:
            hits = topk_hits(logits.detach(), y)
            self.sums["correct"] = self.sums.get("correct", 0) + hits[0]
            self.sums["correct5"] = self.sums.get("correct5", 0) + hits[1]
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


def topk_hits(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Top-1 and top-5 hit counts as device tensors (top-5 = top-k for k = min(5, C))."""
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    match = top == y[:, None]
    return match[:, 0].sum(), match.any(dim=1).sum()


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
    acc = Accumulator(device)
    confusion = None
    if num_classes is not None:
        confusion = torch.zeros(num_classes * num_classes, dtype=torch.long, device=device)
    with eval_mode(model, objective):
        for x, y in loader:
            with autocast(device, precision):
                out = objective(model, x, y)
            acc.add(out.losses, out.logits, y)
            if confusion is not None and out.logits is not None:
                pred = out.logits.argmax(dim=1)
                confusion += torch.bincount(y * num_classes + pred, minlength=confusion.numel())
    result: dict[str, Any] = acc.read()
    if confusion is not None:
        result["confusion"] = all_reduce_sum(confusion).view(num_classes, num_classes).cpu()
    return result
