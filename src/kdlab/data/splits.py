"""Class-balanced subsets and stratified hold-out splits, as sorted index tensors.

Both group the samples by class in a seeded random order (one permutation and a stable sort,
no loop over samples) and keep the first k of each class, so they are deterministic in the
generator and exact in their per-class counts.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

import torch

from kdlab.errors import KdlabError

T = TypeVar("T", bound="Labelled")


class Labelled(Protocol):
    """A split that knows its labels and can be cut down to some of its samples."""

    labels: torch.Tensor

    def subset(self: T, index: torch.Tensor) -> T: ...


def _rank_within_class(
    labels: torch.Tensor, num_classes: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample indices grouped by class (random order inside a class) and each one's rank there."""
    shuffled = torch.randperm(labels.numel(), generator=generator)
    order = shuffled[torch.argsort(labels[shuffled], stable=True)]
    counts = torch.bincount(labels, minlength=num_classes)
    class_start = torch.cumsum(counts, 0) - counts
    return order, torch.arange(labels.numel()) - class_start[labels[order]]


def balanced_subset(
    labels: torch.Tensor, size: int, class_names: list[str], generator: torch.Generator, key: str
) -> torch.Tensor:
    """Indices of `size` samples, size // C of every class (+1 for size % C random classes).

    `key` names the config setting in error messages.
    """
    num_classes = len(class_names)
    if size > labels.numel():
        raise KdlabError(
            f"{key}={size} is larger than the split ({labels.numel()} images): lower {key} "
            "or set it to null for all"
        )
    quota = torch.full((num_classes,), size // num_classes, dtype=torch.long)
    quota[torch.randperm(num_classes, generator=generator)[: size % num_classes]] += 1
    counts = torch.bincount(labels, minlength=num_classes)
    short = (counts < quota).nonzero().flatten()
    if short.numel():
        c = int(short[0])
        raise KdlabError(
            f"{key}={size} needs {int(quota[c])} images of class '{class_names[c]}' for a "
            f"class-balanced subset, but it has only {int(counts[c])}: lower {key}"
        )
    order, rank = _rank_within_class(labels, num_classes, generator)
    return order[rank < quota[labels[order]]].sort().values


def stratified_split(
    labels: torch.Tensor, fraction: float, num_classes: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept, held_out) indices; round(fraction * n_c) samples of each class c are held out."""
    counts = torch.bincount(labels, minlength=num_classes)
    held_per_class = torch.floor(counts.double() * fraction + 0.5).long()
    order, rank = _rank_within_class(labels, num_classes, generator)
    held = rank < held_per_class[labels[order]]
    return order[~held].sort().values, order[held].sort().values
