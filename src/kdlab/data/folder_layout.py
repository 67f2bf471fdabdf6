"""An image folder's settings (`data=imagefolder`) and what is checked of them before any
image is read (a directory listing at most): torch-free, so the CLI's first look at the
overrides runs the pre-flight's checks; kdlab.data.imagefolder lists and decodes the files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import MISSING

from kdlab.data.class_names import check_classes
from kdlab.data.settings import DataConfig
from kdlab.errors import KdlabError


@dataclass
class ImageFolderConfig(DataConfig):
    """`data=imagefolder`: your own images under data.root, resized to data.image_size."""

    root: str = MISSING
    channels: int = 3  # 3 = RGB, 1 = greyscale (luminance)


LAYOUT = "data.root=DIR must hold train/<class>/ and test/<class>/ (or val/<class>/)"


def check_root(root: Path) -> None:
    if root.exists() and not root.is_dir():
        raise KdlabError(f"image folder root {root} is a file, not a folder: {LAYOUT}")
    if not root.is_dir():
        raise KdlabError(f"image folder root {root} does not exist: {LAYOUT}")


def check(settings: ImageFolderConfig) -> None:
    """The one setting an image folder cannot do without, and (a directory listing, no image
    read) two classes at least, before the run dir gets anything."""
    if settings.root in ("", "???"):
        raise KdlabError("imagefolder needs data.root=DIR (with train/ and test/ or val/)")
    if settings.channels not in (1, 3):
        raise KdlabError(f"data.channels must be 1 (greyscale) or 3 (RGB), got {settings.channels}")
    root = Path(settings.root).expanduser()
    if root.is_file():
        check_root(root.resolve())
    classes = listed_classes(settings)
    if classes is not None:
        check_classes("imagefolder", classes)


def class_dirs(train_dir: Path) -> list[str]:
    """The class names: train/'s folders, sorted (a class's label is its index)."""
    return sorted(d.name for d in train_dir.iterdir() if d.is_dir())


def listed_classes(settings: ImageFolderConfig) -> list[str] | None:
    """The class names a listing of data.root/train gives (no image read); None while there
    is no such folder (loading says what is missing)."""
    train_dir = Path(settings.root).expanduser() / "train"
    return class_dirs(train_dir) if train_dir.is_dir() else None
