"""Which samples, and which augmented view of each, every batch of an epoch holds on a rank.

Both loaders share these, so the batches of an epoch are a pure function of (seed, epoch) on
any device and with either loader: a resumed run replays them and DDP ranks agree on them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch

from kdlab.data.augment import Augmentation, PadCropFlip, view_ids
from kdlab.data.seeding import seeded_generator

# Keeps the epoch streams apart from the other uses of the training seed (splits, subsets).
_EPOCH_STREAM = 0x5EED_E90C

View = tuple[torch.Tensor, ...]  # one batch's drawn views (CropFlip, CropDraw)


@dataclass(frozen=True)
class EpochPlan:
    """Per-batch sample indices and, when augmenting, the view drawn for each sample."""

    indices: tuple[torch.Tensor, ...]
    views: tuple[View, ...] | None = None
    augmentation: Augmentation | None = None

    def to(self, device: torch.device) -> EpochPlan:
        """The same plan with its tensors on `device` (copied once per epoch, not per batch)."""
        indices = tuple(index.to(device) for index in self.indices)
        if self.views is None:
            return EpochPlan(indices)
        views = tuple(type(view)(*(t.to(device) for t in view)) for view in self.views)
        return EpochPlan(indices, views, self.augmentation)

    def augment(self, step: int, images: torch.Tensor) -> torch.Tensor:
        """Apply batch `step`'s drawn views to its uint8 images (identity when not augmenting)."""
        if self.views is None or self.augmentation is None:
            return images
        return self.augmentation.apply(images, self.views[step])

    @property
    def pad(self) -> int | None:
        """The pad of a pad-crop-flip augmentation (None for any other, or none)."""
        return self.augmentation.pad if isinstance(self.augmentation, PadCropFlip) else None

    @property
    def num_views(self) -> int | None:
        """Distinct views per image: 1 unaugmented, None for continuous augmentations."""
        return 1 if self.augmentation is None else self.augmentation.num_views

    def view_keys(self) -> torch.Tensor:
        """Every sample's (image, view) as one integer, image * num_views + view, in batch
        order as a (batches, batch size) tensor: what a teacher-logit cache is indexed by."""
        indices = torch.stack(self.indices)
        if self.views is None or self.augmentation is None:
            return indices
        if not isinstance(self.augmentation, PadCropFlip):
            raise ValueError(f"{self.augmentation} has no finite set of views to number")
        pad = self.augmentation.pad
        ids = torch.stack([view_ids(view, pad) for view in self.views])  # type: ignore[arg-type]
        return indices * self.augmentation.num_views + ids


class Schedule(Protocol):
    num_batches: int
    num_samples: int

    def plan(self, epoch: int) -> EpochPlan: ...


class TrainSchedule:
    """Shuffled, optionally augmented, last partial batch dropped.

    Every epoch draws one permutation (and one view per sample) for the global batch of
    `batch_size * world_size`; rank r takes the r-th slice of each global batch, so the ranks'
    shards are disjoint, equally long, and a step sees the same images for any world size.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        *,
        seed: int,
        augment_pad: int | None = None,
        flips: bool = True,
        augmentation: Augmentation | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        """`augmentation`, or else (a shorthand) CIFAR's pad-crop-flip with `augment_pad`
        (None: unaugmented) and `flips`."""
        self.num_items = num_items
        self.batch_size = batch_size
        self.seed = seed
        if augmentation is None and augment_pad is not None:
            augmentation = PadCropFlip(augment_pad, flips)
        self.augmentation = augmentation
        self.rank = rank
        self.world_size = world_size
        self.num_batches = num_items // (batch_size * world_size)
        self.num_samples = self.num_batches * batch_size
        # Left out of each epoch (a different few every epoch): equal full batches keep the
        # DDP shards equal, BatchNorm off 1-image batches and the logit cache rectangular.
        self.dropped = num_items - self.num_batches * batch_size * world_size

    def _mine(self, drawn: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """This rank's slice of per-sample values in global batch order, split into batches."""
        per_step = drawn.view(self.num_batches, self.world_size, self.batch_size, *drawn.shape[1:])
        return per_step[:, self.rank].unbind(0)

    def plan(self, epoch: int) -> EpochPlan:
        gen = seeded_generator(self.seed, _EPOCH_STREAM, epoch)
        used = self.num_batches * self.batch_size * self.world_size
        indices = self._mine(torch.randperm(self.num_items, generator=gen)[:used])
        if self.augmentation is None:
            return EpochPlan(indices)
        drawn = self.augmentation.draw(used, gen)
        kind = type(drawn)
        views = tuple(kind(*view) for view in zip(*(self._mine(t) for t in drawn), strict=True))
        return EpochPlan(indices, views, self.augmentation)


class EvalSchedule:
    """In order, unaugmented, nothing dropped.

    Rank r gets the strided shard r, r+W, ...; every rank splits its shard into the same
    number of batches (sizes differ by at most one), so collective ops stay in step.
    """

    def __init__(
        self, num_items: int, batch_size: int, *, rank: int = 0, world_size: int = 1
    ) -> None:
        self.num_items = num_items
        self.rank = rank
        self.world_size = world_size
        self.num_batches = math.ceil(math.ceil(num_items / world_size) / batch_size)
        self.num_samples = len(range(rank, num_items, world_size))

    def plan(self, epoch: int) -> EpochPlan:
        shard = torch.arange(self.rank, self.num_items, self.world_size)
        return EpochPlan(tuple(torch.tensor_split(shard, self.num_batches)))
