"""Your own images: `root/train/<class>/*` and `root/test/<class>/*` (or `root/val/`).

Every image is converted to RGB, its shorter side resized to `image_size` and the centre
square cropped (aspect ratio kept, so nothing is squashed); class names are the train
folders' names in sorted order.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import MISSING
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from kdlab.data.settings import DataConfig
from kdlab.data.source import ImageSet, Source, check_classes
from kdlab.errors import KdlabError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def decode_image(path: str, size: int) -> torch.Tensor:
    """One image file as a uint8 (3, size, size) tensor (shorter side resized, centre crop)."""
    try:
        with Image.open(path) as image:
            fitted = ImageOps.fit(image.convert("RGB"), (size, size), Image.Resampling.BILINEAR)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise KdlabError(f"cannot read image {path} ({err}): fix or delete the file") from err
    return torch.from_numpy(np.array(fitted)).permute(2, 0, 1).contiguous()


@dataclass(frozen=True)
class FolderFiles:
    """A split as image paths and int64 labels, decoded on demand to `image_size`."""

    paths: tuple[str, ...]
    labels: torch.Tensor
    image_size: int

    def subset(self, index: torch.Tensor) -> FolderFiles:
        return FolderFiles(
            tuple(self.paths[i] for i in index.tolist()), self.labels[index], self.image_size
        )

    @property
    def decoded_bytes(self) -> int:
        return len(self.paths) * 3 * self.image_size**2

    def decode(self) -> ImageSet:
        """Decode every image once, with a few threads (PIL releases the GIL while decoding)."""
        size = self.image_size
        images = torch.empty((len(self.paths), 3, size, size), dtype=torch.uint8)

        def decode_into(i: int) -> None:
            images[i] = decode_image(self.paths[i], size)

        with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
            list(pool.map(decode_into, range(len(self.paths))))
        return ImageSet(images, self.labels)


class DecodingDataset(Dataset):
    """`FolderFiles` for a DataLoader: (image, label, problem); see StreamLoader for `problem`."""

    def __init__(self, files: FolderFiles) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, str]:
        label = int(self.files.labels[i])
        try:
            return decode_image(self.files.paths[i], self.files.image_size), label, ""
        except KdlabError as err:
            size = self.files.image_size
            return torch.zeros((3, size, size), dtype=torch.uint8), label, str(err)


def _split_files(split_dir: Path, classes: list[str], image_size: int) -> FolderFiles:
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
    return FolderFiles(tuple(paths), torch.tensor(labels, dtype=torch.int64), image_size)


def scan_image_folders(root: Path, image_size: int) -> Source[FolderFiles]:
    """List the train and test (or val) images under `root`; nothing is decoded yet."""
    root = root.expanduser().resolve()
    layout = "data.root=DIR must hold train/<class>/ and test/<class>/ (or val/<class>/)"
    if not root.is_dir():
        raise KdlabError(f"image folder root {root} does not exist: {layout}")
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise KdlabError(f"{train_dir} not found: {layout}")
    test_dir = next((root / d for d in ("test", "val") if (root / d).is_dir()), None)
    if test_dir is None:
        raise KdlabError(f"neither {root / 'test'} nor {root / 'val'} found: {layout}")
    classes = sorted(d.name for d in train_dir.iterdir() if d.is_dir())
    return Source(
        _split_files(train_dir, classes, image_size),
        _split_files(test_dir, classes, image_size),
        classes,
    )


@dataclass
class ImageFolderConfig(DataConfig):
    """`data=imagefolder`: your own images under data.root, resized to data.image_size."""

    root: str = MISSING


def load(settings: ImageFolderConfig) -> Source[FolderFiles]:
    """The registry's entry point: the files are listed here and decoded later (or streamed)."""
    return scan_image_folders(Path(settings.root), settings.image_size)


def check(settings: ImageFolderConfig) -> None:
    """The one setting an image folder cannot do without, and (a directory listing, no image
    read) two classes at least, before the run dir gets anything."""
    if settings.root in ("", "???"):
        raise KdlabError("imagefolder needs data.root=DIR (with train/ and test/ or val/)")
    train_dir = Path(settings.root).expanduser() / "train"
    if train_dir.is_dir():
        check_classes("imagefolder", sorted(d.name for d in train_dir.iterdir() if d.is_dir()))
