"""Batched train-time augmentation as tensor ops: pad-and-random-crop plus horizontal flip
(`data.augment=cifar`), and what every augmentation offers a loader (`Augmentation`).

The view of each image (its crop offsets and flip) can be drawn separately from applying it,
so a caller that needs to know which view an image got (e.g. a teacher-logit cache) can.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

import torch
import torch.nn.functional as F


class CropFlip(NamedTuple):
    """Per-image view: crop offsets into the padded image in [0, 2*pad], and flip flags."""

    dy: torch.Tensor  # int64 (B,)
    dx: torch.Tensor  # int64 (B,)
    flip: torch.Tensor  # bool (B,)


def draw_crop_flip(
    n: int,
    pad: int,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    flips: bool = True,
) -> CropFlip:
    """Draw `n` views: offsets uniform in [0, 2*pad], flip with probability 1/2 (never with
    `flips=False`: digits and characters change meaning when mirrored)."""
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    flip = torch.randint(0, 2, (n,), generator=generator).bool() & flips
    return CropFlip(dy.to(device), dx.to(device), flip.to(device))


def crop_flip(
    images: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, pad: int
) -> torch.Tensor:
    """Zero-pad (B,C,H,W) `images` by `pad`, crop HxW at (dy, dx) and mirror where `flip`.

    One gather for the whole batch: no per-image loop and no host-device sync.
    """
    b, c, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    rows = dy.view(b, 1) + torch.arange(h, device=images.device)  # (B,H)
    cols = torch.arange(w, device=images.device).expand(b, w)
    cols = dx.view(b, 1) + torch.where(flip.view(b, 1), w - 1 - cols, cols)  # (B,W)
    batch = torch.arange(b, device=images.device).view(b, 1, 1, 1)
    channel = torch.arange(c, device=images.device).view(1, c, 1, 1)
    return padded[batch, channel, rows.view(b, 1, h, 1), cols.view(b, 1, 1, w)]


def view_count(pad: int | None) -> int:
    """Distinct views of one image: (2*pad+1)^2 crops times 2 flips (162 for CIFAR's pad 4);
    one without augmentation."""
    return 1 if pad is None else (2 * pad + 1) ** 2 * 2


def view_ids(view: CropFlip, pad: int) -> torch.Tensor:
    """Each view as one integer in [0, view_count(pad)): (dy * (2*pad+1) + dx) * 2 + flip."""
    return (view.dy * (2 * pad + 1) + view.dx) * 2 + view.flip.long()


def views_of(ids: torch.Tensor, pad: int) -> CropFlip:
    """The views that `view_ids` numbered `ids` (its inverse)."""
    crop, flip = ids.div(2, rounding_mode="floor"), ids.remainder(2).bool()
    return CropFlip(crop.div(2 * pad + 1, rounding_mode="floor"), crop.remainder(2 * pad + 1), flip)


def random_crop_flip(images: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Draw a view per image from `generator` (a CPU generator) and apply it."""
    dy, dx, flip = draw_crop_flip(images.shape[0], pad, generator, images.device)
    return crop_flip(images, dy, dx, flip, pad)


class Augmentation(Protocol):
    """A train-time augmentation as the schedule draws it and the loaders apply it."""

    # distinct views of one image (what a teacher-logit cache needs: finitely many);
    # None for continuous parameters
    num_views: int | None

    def draw(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """`n` views, one per image, as tensors whose first dimension is the image."""
        ...

    def apply(self, images: torch.Tensor, view: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """uint8 (B,C,H,W) images seen through their drawn views, batched on their device."""
        ...


@dataclass(frozen=True)
class PadCropFlip:
    """`data.augment=cifar`: zero-pad `pad`, random crop back to the image size, and flip
    (unless `flips` is off)."""

    pad: int
    flips: bool = True

    @property
    def num_views(self) -> int:
        return view_count(self.pad)

    def draw(self, n: int, generator: torch.Generator) -> CropFlip:
        return draw_crop_flip(n, self.pad, generator, flips=self.flips)

    def apply(self, images: torch.Tensor, view: tuple[torch.Tensor, ...]) -> torch.Tensor:
        dy, dx, flip = view
        return crop_flip(images, dy, dx, flip, self.pad)
