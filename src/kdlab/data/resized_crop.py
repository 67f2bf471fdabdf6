"""ImageNet-style augmentation: random-resized crop + flip for training, resize + centre crop
for evaluation, as torchvision defines them, batched on the training device.

The crop parameters are drawn per image in relative form (area fraction and log aspect ratio
for torchvision's 10 attempts, and the box position as fractions), so one draw applies to an
image of any size: the device loader crops its stored squares, the stream loader's workers
the full decoded files. `crop_boxes` turns a draw into pixel boxes exactly as
`torchvision.transforms.v2.RandomResizedCrop.make_params` does; `resized_crops` resamples the
boxes with the weights of torch's antialiased bilinear resize (what torchvision's
`resized_crop(antialias=True)` computes), one batched matmul per axis, no per-image loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

SCALE = (0.08, 1.0)  # area fraction of the image a crop covers
RATIO = (3 / 4, 4 / 3)  # its aspect ratio (width / height), drawn log-uniformly
ATTEMPTS = 10  # torchvision's tries before falling back to a centre crop
EVAL_CROP = 0.875  # evaluation: resize the shorter side to size / 0.875, centre-crop size


def eval_resize(size: int) -> int:
    """The shorter side evaluation images are resized to before the centre crop (256 for 224,
    timm's floor(size / crop_pct)); also the side image folders are stored at for training."""
    return math.floor(size / EVAL_CROP)


def resize_center_crop(images: torch.Tensor, resize: int, crop: int) -> torch.Tensor:
    """(..., C, H, W) uint8: shorter side resized to `resize` (antialiased bilinear), then the
    centre `crop` x `crop` square: torchvision's Resize(resize) + CenterCrop(crop)."""
    import torchvision.transforms.v2.functional as TF  # on first use: see kdlab.data.jpeg

    resized = TF.resize(images, [resize], antialias=True)
    return TF.center_crop(resized, [crop, crop])


class CropDraw(NamedTuple):
    """Per image: `ATTEMPTS` (area fraction, log aspect ratio) pairs, the box position as
    fractions of the free room (top, left) in [0, 1), and the flip flag."""

    scale: torch.Tensor  # float64 (B, ATTEMPTS)
    log_ratio: torch.Tensor  # float64 (B, ATTEMPTS)
    top: torch.Tensor  # float64 (B,)
    left: torch.Tensor  # float64 (B,)
    flip: torch.Tensor  # bool (B,)


def draw_crops(
    n: int,
    generator: torch.Generator,
    flips: bool = True,
    scale: tuple[float, float] = SCALE,
    ratio: tuple[float, float] = RATIO,
) -> CropDraw:
    """`n` draws from `generator`, with torchvision's distributions."""
    low, high = math.log(ratio[0]), math.log(ratio[1])
    options = {"generator": generator, "dtype": torch.float64}
    area = torch.rand(n, ATTEMPTS, **options) * (scale[1] - scale[0]) + scale[0]
    log_ratio = torch.rand(n, ATTEMPTS, **options) * (high - low) + low
    top, left = torch.rand(n, **options), torch.rand(n, **options)
    flip = torch.randint(0, 2, (n,), generator=generator).bool() & flips
    return CropDraw(area, log_ratio, top, left, flip)


def crop_boxes(
    draw: CropDraw,
    height: int | torch.Tensor,
    width: int | torch.Tensor,
    ratio: tuple[float, float] = RATIO,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(top, left, h, w) int64 per image of `height` x `width` pixels: the first attempt whose
    box fits, else the centre crop of the whole image with the ratio clamped (torchvision)."""
    dev = draw.scale.device
    height = torch.as_tensor(height, dtype=torch.float64, device=dev).expand(len(draw.top))
    width = torch.as_tensor(width, dtype=torch.float64, device=dev).expand(len(draw.top))
    area = (height * width).unsqueeze(1) * draw.scale
    aspect = draw.log_ratio.exp()
    w_try, h_try = (area * aspect).sqrt().round(), (area / aspect).sqrt().round()
    fits = (w_try > 0) & (w_try <= width[:, None]) & (h_try > 0) & (h_try <= height[:, None])
    first = fits.long().argmax(1, keepdim=True)
    found = fits.any(1)
    shape = width / height
    low, high = torch.full_like(shape, ratio[0]), torch.full_like(shape, ratio[1])
    w_fall = torch.where(
        shape < low, width, torch.where(shape > high, (height * high).round(), width)
    )
    h_fall = torch.where(shape < low, (width / low).round(), height)
    w = torch.where(found, w_try.gather(1, first).squeeze(1), w_fall)
    h = torch.where(found, h_try.gather(1, first).squeeze(1), h_fall)
    top = torch.where(found, (draw.top * (height - h + 1)).floor(), ((height - h) / 2).floor())
    left = torch.where(found, (draw.left * (width - w + 1)).floor(), ((width - w) / 2).floor())
    return top.long(), left.long(), h.long(), w.long()


def resample_weights(
    start: torch.Tensor, length: torch.Tensor, size: int, out: int
) -> torch.Tensor:
    """(B, out, size) float32: row i holds the weights output pixel i takes from the `size`
    input pixels when [start, start + length) is resized to `out` pixels by torch's
    antialiased bilinear interpolation (plain bilinear when enlarging). Computed over each
    row's window only (at most `taps` pixels, from the shapes alone: no host sync), then
    scattered into the dense rows."""
    taps = math.ceil(2 * max(size / out, 1.0)) + 1
    scale = (length.double() / out).view(-1, 1, 1)
    support = scale.clamp_min(1.0)
    steps = torch.arange(out, device=start.device, dtype=torch.float64).view(1, -1, 1)
    centre = scale * (steps + 0.5)
    first = (centre - support + 0.5).floor().clamp_min(0)
    last = torch.minimum((centre + support + 0.5).floor(), length.double().view(-1, 1, 1))
    rel = first + torch.arange(taps, device=start.device, dtype=torch.float64)  # (B, out, K)
    weight = (1 - ((rel - centre + 0.5) / support).abs()).clamp_min(0) * (rel < last)
    index = (rel + start.double().view(-1, 1, 1)).long().clamp_max(size - 1)
    dense = torch.zeros(len(start), out, size, device=start.device)
    return dense.scatter_add_(2, index, (weight / weight.sum(-1, keepdim=True)).float())


def resized_crops(
    images: torch.Tensor,
    boxes: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    flip: torch.Tensor,
    size: int,
) -> torch.Tensor:
    """Each (B,C,H,W) uint8 image's box resized to `size` x `size` (mirrored where `flip`),
    as uint8: torchvision's resized_crop(antialias=True) + hflip, batched as two bmm."""
    top, left, h, w = boxes
    b, c, height, width = images.shape
    rows = resample_weights(top, h, height, size)  # (B, size, H)
    cols = resample_weights(left, w, width, size)  # (B, size, W)
    cols = torch.where(flip.view(-1, 1, 1), cols.flip(1), cols)
    across = torch.bmm(images.float().view(b, c * height, width), cols.transpose(1, 2))
    across = across.view(b, c, height, size).transpose(1, 2).reshape(b, height, c * size)
    out = torch.bmm(rows, across).view(b, size, c, size).transpose(1, 2)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def resized_crops_each(
    images: torch.Tensor,
    boxes: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    flip: torch.Tensor,
    size: int,
) -> torch.Tensor:
    """`resized_crops` one image at a time with torchvision's own resized_crop (its uint8
    SIMD kernel): on a CPU, where no device waits, 12x the batched matmuls (2 cores, 224 px
    from 256 px squares); equal to them within 1 grey level."""
    import torchvision.transforms.v2.functional as TF  # on first use: see kdlab.data.jpeg

    out = torch.empty(
        (len(images), images.shape[1], size, size), dtype=torch.uint8, device=images.device
    )
    rows = zip(*(t.tolist() for t in (*boxes, flip)), strict=True)
    for i, (top, left, h, w, mirrored) in enumerate(rows):
        view = TF.resized_crop(images[i], top, left, h, w, [size, size], antialias=True)
        out[i] = view.flip(-1) if mirrored else view
    return out


@dataclass(frozen=True)
class ResizedCropFlip:
    """`data.augment=imagenet` for a loader: random-resized crops of `size`, flips unless
    `flips` is off. Continuous parameters: no finite set of views (so no logit cache)."""

    size: int
    flips: bool = True
    num_views = None

    def draw(self, n: int, generator: torch.Generator) -> CropDraw:
        return draw_crops(n, generator, self.flips)

    def apply(self, images: torch.Tensor, view: tuple[torch.Tensor, ...]) -> torch.Tensor:
        draw = CropDraw(*view)
        boxes = crop_boxes(draw, images.shape[-2], images.shape[-1])
        crops = resized_crops_each if images.device.type == "cpu" else resized_crops
        return crops(images, boxes, draw.flip, self.size)
