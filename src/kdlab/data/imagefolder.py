"""Your own images: `root/train/<class>/*` and `root/test/<class>/*` (or `root/val/`).

Every image is converted to 8-bit RGB (JPEGs decoded by torchvision.io; other formats by
PIL, faithfully for 16-bit, float, palette and transparent images: see color.py), its
shorter side resized to `image_size` (antialiased bilinear, as torchvision's Resize) and the
centre square cropped (aspect ratio kept, so nothing is squashed); class names are the train
folders' names in sorted order. Under `data.augment=imagenet` build_data asks for other
geometry (`FolderFiles.refit`), and streamed training images are cropped from the full file.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from kdlab.data.color import to_rgb
from kdlab.data.folder_layout import LAYOUT, ImageFolderConfig, check_root, class_dirs
from kdlab.data.jpeg import decode_rgb, read_bytes
from kdlab.data.resized_crop import CropDraw, crop_boxes, resize_center_crop, resized_crops_each
from kdlab.data.source import ImageSet, Source
from kdlab.errors import KdlabError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def read_rgb(path: str) -> torch.Tensor:
    """One image file, whole, as uint8 (3, H, W): JPEGs by torchvision.io (libjpeg-turbo,
    no PIL round trip), anything else, or a JPEG it cannot read, by PIL via `to_rgb`."""
    if path.lower().endswith((".jpg", ".jpeg")):
        try:
            return decode_rgb(read_bytes(path))
        except RuntimeError:
            pass  # e.g. a CMYK or arithmetic-coded JPEG: PIL may read it
    return pil_rgb(path, path)


def pil_rgb(source: str | BinaryIO, path: str) -> torch.Tensor:
    """An image file (its path, or its bytes as a file) as uint8 (3, H, W) by PIL via
    `to_rgb`; a one-line KdlabError naming `path` if PIL cannot read it."""
    try:
        with Image.open(source) as image:
            pixels = np.array(to_rgb(image))
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise KdlabError(f"cannot read image {path} ({err}): fix or delete the file") from err
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()


def to_channels(rgb: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 (3, H, W) as `channels` channels: one is the luminance as PIL's "L" computes it
    (ITU-R 601-2, (19595 R + 38470 G + 7471 B + 2^15) >> 16)."""
    if channels == 3:
        return rgb
    weights = torch.tensor([19595, 38470, 7471], dtype=torch.int32, device=rgb.device).view(3, 1, 1)
    return ((rgb.int() * weights).sum(0, keepdim=True) + 0x8000).bitwise_right_shift(16).byte()


def decode_image(
    path: str, size: int, channels: int = 3, resize: int | None = None
) -> torch.Tensor:
    """One image file as a uint8 (channels, size, size) tensor: shorter side resized to
    `resize` (default `size`), then the centre `size` square."""
    return to_channels(resize_center_crop(read_rgb(path), resize or size, size), channels)


def decode_crop(path: str, draw: CropDraw, size: int, channels: int = 3) -> torch.Tensor:
    """A training view of one file: its random-resized crop (drawn relative to the whole
    image) resized to `size` and flipped as drawn, as torchvision's RandomResizedCrop."""
    rgb = read_rgb(path)
    boxes = crop_boxes(draw, rgb.shape[1], rgb.shape[2])
    return to_channels(resized_crops_each(rgb[None], boxes, draw.flip, size)[0], channels)


@dataclass(frozen=True)
class FolderFiles:
    """A split as image paths and int64 labels, decoded on demand to `image_size` (the
    shorter side resized to `resize`, default `image_size`, then the centre square)."""

    paths: tuple[str, ...]
    labels: torch.Tensor
    image_size: int
    channels: int = 3
    resize: int | None = None

    def subset(self, index: torch.Tensor) -> FolderFiles:
        paths = tuple(self.paths[i] for i in index.tolist())
        return replace(self, paths=paths, labels=self.labels[index])

    def refit(self, resize: int, crop: int) -> FolderFiles:
        """The same files decoded as Resize(resize) + CenterCrop(crop)."""
        return replace(self, image_size=crop, resize=resize)

    @property
    def decoded_bytes(self) -> int:
        return len(self.paths) * self.channels * self.image_size**2

    def decode(self) -> ImageSet:
        """Decode every image once, with a few threads (PIL releases the GIL while decoding)."""
        size, channels = self.image_size, self.channels
        images = torch.empty((len(self.paths), channels, size, size), dtype=torch.uint8)

        def decode_into(i: int) -> None:
            images[i] = decode_image(self.paths[i], size, channels, self.resize)

        with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
            list(pool.map(decode_into, range(len(self.paths))))
        return ImageSet(images, self.labels)


class DecodingDataset(Dataset):
    """`FolderFiles` for a DataLoader: item `i` -> (image, label, problem), see StreamLoader
    for `problem`; item `(i, view)`, `view` a `CropDraw` row as plain values, -> that
    training view of image i at `crop_size` (the random-resized crop, in the worker)."""

    def __init__(self, files: FolderFiles, crop_size: int | None = None) -> None:
        self.files = files
        self.crop_size = crop_size or files.image_size

    def __len__(self) -> int:
        return len(self.files.paths)

    def __getitem__(self, item: int | tuple[int, tuple]) -> tuple[torch.Tensor, int, str]:
        i, view = item if isinstance(item, tuple) else (item, None)
        files = self.files
        label = int(files.labels[i])
        try:
            if view is None:
                image = decode_image(files.paths[i], files.image_size, files.channels, files.resize)
            else:
                *fractions, flip = (torch.tensor([value], dtype=torch.float64) for value in view)
                draw = CropDraw(*fractions, flip.bool())
                image = decode_crop(files.paths[i], draw, self.crop_size, files.channels)
            return image, label, ""
        except KdlabError as err:
            size = self.crop_size if view is not None else files.image_size
            return torch.zeros((files.channels, size, size), dtype=torch.uint8), label, str(err)


def _split_files(
    split_dir: Path, classes: list[str], image_size: int, channels: int
) -> FolderFiles:
    paths: list[str] = []
    labels: list[int] = []
    for folder in sorted(d for d in split_dir.iterdir() if d.is_dir()):
        if folder.name not in classes:
            raise KdlabError(
                f"{folder} is not a class of {split_dir.parent / 'train'}: "
                "add that class to train/ or remove the folder"
            )
        images = sorted(
            str(p) for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
        if not images:
            raise KdlabError(
                f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)}): add some or remove it"
            )
        paths += images
        labels += [classes.index(folder.name)] * len(images)
    if not paths:
        raise KdlabError(f"{split_dir} has no class folders: put images in {split_dir}/<class>/")
    labels_t = torch.tensor(labels, dtype=torch.int64)
    return FolderFiles(tuple(paths), labels_t, image_size, channels)


def scan_image_folders(root: Path, image_size: int, channels: int = 3) -> Source[FolderFiles]:
    """List the train and test (or val) images under `root`; nothing is decoded yet."""
    root = root.expanduser().resolve()
    check_root(root)
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise KdlabError(f"{train_dir} not found: {LAYOUT}")
    test_dir = next((root / d for d in ("test", "val") if (root / d).is_dir()), None)
    if test_dir is None:
        raise KdlabError(f"neither {root / 'test'} nor {root / 'val'} found: {LAYOUT}")
    classes = class_dirs(train_dir)
    return Source(
        _split_files(train_dir, classes, image_size, channels),
        _split_files(test_dir, classes, image_size, channels),
        classes,
    )


def load(settings: ImageFolderConfig) -> Source[FolderFiles]:
    """The registry's entry point: the files are listed here and decoded later (or streamed)."""
    return scan_image_folders(Path(settings.root), settings.image_size, settings.channels)


def write_image_folder(
    root: Path,
    classes: tuple[str, ...],
    per_split: tuple[int, int] = (6, 2),
    shape: tuple[int, int] = (16, 16),
    suffixes: tuple[str, ...] = (".png",),
) -> Path:
    """train/ and test/ of random RGB images, `per_split` a class, of `shape` (height,
    width), saved in turn as each of `suffixes` (0.png, 1.jpg, ...)."""
    rng = np.random.default_rng(0)
    for split, count in zip(("train", "test"), per_split, strict=True):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}{suffixes[i % len(suffixes)]}")
    return root


def write_tiny(root: Path) -> dict[str, Any]:
    """A tiny image folder in `root` (3 classes, 5 train and 2 test images each, PNGs and
    JPEGs of 20x24 px), and the `data.*` settings that load it (resized to 16 px)."""
    shapes = ("disk", "ring", "square")
    write_image_folder(root, shapes, (5, 2), (20, 24), (".png", ".jpg"))
    return {"root": str(root), "image_size": 16}
