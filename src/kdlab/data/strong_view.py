"""`data.views=weak_strong`: a second, strongly augmented view of every training image, for
methods that train on both (MLKD).

The view follows MLKD's CIFAR pipeline (Jin-Ying/Multi-Level-Logit-Distillation@5ee473f,
mdistiller/dataset/cifar100.py and randaugment: the weak view's crop and flip drawn afresh,
then RandAugment with 2 operations, then a Cutout square of side up to half the image), on the
device, batch by batch. Departures: torchvision's RandAugment (`transforms.v2`, the same 14
operations, drawn per image, at a fixed magnitude 10 of 31 where the official draws each
magnitude uniformly); the Cutout and the rotated/sheared corners are filled with the data
set's mean colour (the official's (125, 123, 114) is CIFAR's, rounded). Its randomness comes
from torch's global generator, which checkpoints save: a resumed run draws the same views.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kdlab.data.augment import Augmentation


@dataclass(frozen=True)
class StrongView:
    """Makes the strong view of a uint8 (B, C, H, W) batch on its device."""

    augmentation: Augmentation | None  # the weak view's geometry (crop, flip), drawn afresh
    fill: tuple[int, ...]  # the data set's mean colour, 0-255 per channel
    num_ops: int = 2
    magnitude: int = 10
    cutout: float = 0.5  # the Cutout square's side: uniform in [0, cutout) of the width

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        generator = torch.Generator().manual_seed(int(torch.randint(2**62, ())))
        if self.augmentation is not None:
            drawn = self.augmentation.draw(images.shape[0], generator)
            images = self.augmentation.apply(images, tuple(t.to(images.device) for t in drawn))
        images = self.rand_augment(images)
        return cutout(images, self.cutout, self.fill, generator)

    def rand_augment(self, images: torch.Tensor) -> torch.Tensor:
        """RandAugment's operations drawn for each image on its own (torchvision applies one
        draw to a whole batch)."""
        from torchvision.transforms import v2  # ~2.5 s to import: only when training on it

        operate = v2.RandAugment(self.num_ops, self.magnitude, fill=list(self.fill))
        return torch.stack([operate(image) for image in images])


def cutout(
    images: torch.Tensor, fraction: float, fill: tuple[int, ...], generator: torch.Generator
) -> torch.Tensor:
    """FixMatch's Cutout on a batch: a square of side v = U[0, fraction) * W about a uniform
    centre, clipped to the image (corners x0 = max(0, cx - v/2), x1 = min(W, x0 + v), both
    included as PIL draws them), filled with `fill`."""
    b, c, h, w = images.shape
    side = torch.rand(b, generator=generator, dtype=torch.float64) * fraction * w
    centre = torch.rand(2, b, generator=generator, dtype=torch.float64)
    y0 = (centre[0] * h - side / 2).clamp(min=0).floor()
    x0 = (centre[1] * w - side / 2).clamp(min=0).floor()
    y1, x1 = (y0 + side).clamp(max=h).floor(), (x0 + side).clamp(max=w).floor()
    rows = torch.arange(h, dtype=torch.float64).view(1, h, 1)
    cols = torch.arange(w, dtype=torch.float64).view(1, 1, w)
    inside = (rows >= y0.view(b, 1, 1)) & (rows <= y1.view(b, 1, 1))
    inside = inside & (cols >= x0.view(b, 1, 1)) & (cols <= x1.view(b, 1, 1))
    colour = torch.tensor(fill, dtype=images.dtype, device=images.device).view(1, c, 1, 1)
    return torch.where(inside.to(images.device).unsqueeze(1), colour, images)
