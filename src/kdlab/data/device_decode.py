"""Streamed JPEGs decoded on the training device (`data.decode=device`; auto on CUDA).

The DataLoader workers only read each file's bytes (`WholeFiles`); the main process decodes a
batch's JPEGs in one `torchvision.io.decode_jpeg(..., device=...)` call (nvJPEG on CUDA) and
cuts each image's view there: the random-resized crop drawn for it (`data.augment=imagenet`,
from the whole image, as the host path does) or the evaluation resize + centre crop. Files
that are not JPEGs are decoded by the workers as before and finished the same way. On a CPU
this path gives exactly the host path's pixels (the same libjpeg-turbo and resize kernels).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from kdlab.data.imagefolder import FolderFiles, pil_rgb, read_rgb, to_channels
from kdlab.data.jpeg import decode_rgb
from kdlab.data.resized_crop import CropDraw, crop_boxes, resize_center_crop, resized_crops_each
from kdlab.errors import KdlabError

JPEG_SUFFIXES = (".jpg", ".jpeg")


# A file as the workers hand it over: its JPEG bytes or, for any other format, the image
# decoded whole (uint8 (3, H, W) as a numpy array); with its path, for errors. Plain bytes
# and arrays travel by value: a batch of tensors would take a file descriptor each.
Payload = tuple[bytes | np.ndarray, str]


class WholeFiles(Dataset):
    """`FolderFiles` for a DataLoader whose images are finished on the device: item `i` ->
    (payload, label, problem), `problem` as in StreamLoader."""

    def __init__(self, files: FolderFiles) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files.paths)

    def __getitem__(self, i: int) -> tuple[Payload, int, str]:
        path, label = self.files.paths[i], int(self.files.labels[i])
        try:
            jpeg = path.lower().endswith(JPEG_SUFFIXES)
            data = Path(path).read_bytes() if jpeg else read_rgb(path).numpy()
        except (KdlabError, OSError) as err:
            return (b"", path), label, f"cannot read image {path} ({err})"
        return (data, path), label, ""


def collate_payloads(
    items: list[tuple[Payload, int, str]],
) -> tuple[list[Payload], torch.Tensor, list[str]]:
    """A batch of payloads of different sizes kept as a list (default collation stacks)."""
    payloads, labels, problems = zip(*items, strict=True)
    return list(payloads), torch.tensor(labels, dtype=torch.int64), list(problems)


def _decoded(payloads: list[Payload], device: torch.device) -> list[torch.Tensor]:
    """Every payload as uint8 (3, H, W) on `device`: the JPEGs in one decode_jpeg call (one
    by one, PIL for any it refuses, when the batch call fails)."""
    jpegs = [i for i, (data, _) in enumerate(payloads) if isinstance(data, bytes)]
    images = [
        torch.empty(0) if isinstance(data, bytes) else torch.from_numpy(data).to(device)
        for data, _ in payloads
    ]
    if not jpegs:
        return images
    encoded = [torch.frombuffer(bytearray(payloads[i][0]), dtype=torch.uint8) for i in jpegs]
    try:
        decoded = decode_rgb(encoded, device)
    except RuntimeError:
        paths = [payloads[i][1] for i in jpegs]
        decoded = [_one_jpeg(e, p, device) for e, p in zip(encoded, paths, strict=True)]
    for i, image in zip(jpegs, decoded, strict=True):
        images[i] = image
    return images


def _one_jpeg(data: torch.Tensor, path: str, device: torch.device) -> torch.Tensor:
    try:
        return decode_rgb(data, device)
    except RuntimeError:
        # a JPEG the device decoder refuses (CMYK, arithmetic coding): PIL
        return pil_rgb(io.BytesIO(data.numpy().tobytes()), path).to(device)


@dataclass(frozen=True)
class DeviceFinish:
    """Turns a batch of payloads into the uint8 (B, channels, size, size) batch on `device`:
    with a drawn `CropDraw`, each image's random-resized crop (and flip); without one,
    Resize(resize) + CenterCrop(size), the split's stored geometry."""

    device: torch.device
    size: int
    resize: int
    channels: int

    def __call__(self, payloads: list[Payload], draw: CropDraw | None) -> torch.Tensor:
        images = _decoded(payloads, self.device)
        if draw is None:
            views = [resize_center_crop(image, self.resize, self.size) for image in images]
        else:
            views = []
            for i, image in enumerate(images):
                row = CropDraw(*(t[i : i + 1].cpu() for t in draw))
                boxes = crop_boxes(row, image.shape[1], image.shape[2])
                views.append(resized_crops_each(image[None], boxes, row.flip, self.size)[0])
        return torch.stack([to_channels(view, self.channels) for view in views])
