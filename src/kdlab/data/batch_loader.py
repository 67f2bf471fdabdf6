"""The loader interface the engine trains and evaluates on."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import torch


class BatchLoader(Protocol):
    """Yields normalised (x, y) batches on the device; one pass is one epoch on this rank.

    (A loader may add tensors after y, e.g. the teacher's logits of the logit cache: the
    engine passes them on to the objective.)

    x: float32 (B,3,S,S), channels_last if requested; y: int64 (B,). `num_samples` counts the
    images of one epoch on this rank; `set_epoch` makes the order and augmentation of the next
    pass a pure function of (seed, epoch).
    """

    num_samples: int

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    def __len__(self) -> int: ...

    def set_epoch(self, epoch: int) -> None: ...

    def batch_indices(self) -> tuple[torch.Tensor, ...]:
        """Each batch of the current epoch as int64 indices into the split, on the device, in
        the order the batches are served (for objectives that keep per-sample state)."""
        ...
