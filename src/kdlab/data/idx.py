"""Fashion-MNIST, MNIST and KMNIST: four idx files each, read straight into uint8 tensors.

The three share LeCun's idx format (a big-endian header, then raw bytes) and one shape:
28x28 greyscale, 10 classes. The files are looked for, gzipped or not, in `data.root` and in
torchvision's layout `data.root/<Class>/raw/`; Fashion-MNIST also in the copy the Debian
package dataset-fashion-mnist installs. torchvision is imported only to download.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdlab.data.download import download_or_fail
from kdlab.data.settings import DataConfig
from kdlab.data.source import ImageSet, Source
from kdlab.errors import KdlabError

IMAGE_SIZE = 28
CHANNELS = 1
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049  # 0x0803: ubyte, 3 dims; 0x0801: ubyte, 1 dim
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FILE_NAMES = tuple(name for pair in SPLIT_FILES.values() for name in pair)
REPLACE = "replace it with an intact copy"


@dataclass(frozen=True)
class IdxSpec:
    """One idx data set: what a data-set registry needs besides the loader."""

    title: str
    class_name: str  # its class in torchvision.datasets, also its folder under data.root
    class_names: tuple[str, ...]
    mean: tuple[float]  # of the train split, in [0, 1] units
    std: tuple[float]
    flip: bool  # whether a horizontal flip keeps the label (not for digits or characters)
    system_dir: Path | None = None  # a system-wide copy, used when data.root holds none
    package: str | None = None  # the system package that installs `system_dir`
    channels: int = CHANNELS
    image_size: int = IMAGE_SIZE


IDX_SETS = {
    # mean/std computed from the train files of dataset-fashion-mnist: 0.28604, 0.35302.
    "fashion_mnist": IdxSpec(
        "Fashion-MNIST",
        "FashionMNIST",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        (0.2860,),
        (0.3530,),
        flip=True,
        system_dir=FASHION_MNIST_DIR,
        package="dataset-fashion-mnist",
    ),
    "mnist": IdxSpec(
        "MNIST", "MNIST", tuple(str(d) for d in range(10)), (0.1307,), (0.3081,), flip=False
    ),
    "kmnist": IdxSpec(
        "KMNIST",
        "KMNIST",
        ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        (0.1918,),
        (0.3483,),
        flip=False,
    ),
}  # fmt: skip


def _files_in(directory: Path) -> dict[str, Path]:
    """The data set's files present in `directory`, uncompressed preferred over `.gz`."""
    found = {}
    for name in FILE_NAMES:
        for path in (directory / name, directory / f"{name}.gz"):
            if path.is_file():
                found[name] = path
                break
    return found


def _where(spec: IdxSpec, root: Path) -> str:
    """How to provide the files, for the end of a not-found message."""
    files = ", ".join(FILE_NAMES)
    hint = f"put {files} (gzipped or not) in {root} or {root / spec.class_name / 'raw'}"
    if spec.package is not None:
        hint += f" (apt-get install {spec.package} provides them in {spec.system_dir})"
    return hint


def _download(spec: IdxSpec, root: Path) -> None:
    """torchvision's download into `root/<Class>/raw`, failing fast when offline."""
    from torchvision import datasets

    dataset = getattr(datasets, spec.class_name)
    failed = KdlabError(
        f"{spec.title} not found in {root} and download failed (no network?): "
        f"{_where(spec, root)}, or set data.root=DIR"
    )
    download_or_fail(
        dataset.mirrors, root, failed, lambda: dataset(str(root), train=False, download=True)
    )


def _locate(spec: IdxSpec, root: Path, download: bool) -> dict[str, Path]:
    """All four files: from data.root, its torchvision layout, the system copy, or a download.

    A folder holding only some of them is an error rather than skipped, so a user's own
    files are never silently replaced; only torchvision's folder is re-downloaded.
    """
    raw = root / spec.class_name / "raw"
    for directory in (root, raw):
        found = _files_in(directory)
        if len(found) == len(FILE_NAMES):
            return found
        if found and not (directory == raw and download):
            missing = ", ".join(name for name in FILE_NAMES if name not in found)
            raise KdlabError(
                f"{directory} holds only some of the {spec.title} files ({missing} missing, "
                "gzipped or not): add them, or remove the others"
            )
    if spec.system_dir is not None:
        found = _files_in(spec.system_dir)
        if len(found) == len(FILE_NAMES):
            return found
    if not download:
        raise KdlabError(
            f"{spec.title} not found in {root}: {_where(spec, root)}, set data.download=true, "
            "or set data.root=DIR"
        )
    _download(spec, root)
    found = _files_in(raw)
    if len(found) != len(FILE_NAMES):
        raise KdlabError(
            f"the {spec.title} download left files missing in {raw}: {_where(spec, root)}"
        )
    return found


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path) as file:
                return file.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError
        raise KdlabError(f"cannot read {path} ({err}): {REPLACE}") from err


def read_idx(path: Path, magic: int) -> np.ndarray:
    """An idx file as a uint8 array of the shape its header declares, the header checked."""
    data = _read_bytes(path)
    dims = magic & 0xFF
    header = 4 + 4 * dims
    if len(data) < header or int.from_bytes(data[:4], "big") != magic:
        found = int.from_bytes(data[:4], "big") if len(data) >= 4 else "none"
        raise KdlabError(
            f"{path} is not an idx file of this kind (magic number {found}, expected {magic}): "
            f"{REPLACE}"
        )
    shape = tuple(int(n) for n in np.frombuffer(data, ">i4", dims, offset=4))
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise KdlabError(
            f"{path} is damaged: {len(data)} bytes, its header {shape} needs {expected}: {REPLACE}"
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def _read_split(spec: IdxSpec, images_path: Path, labels_path: Path) -> ImageSet:
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    size = spec.image_size
    if images.shape[1:] != (size, size):
        rows, cols = images.shape[1:]
        raise KdlabError(
            f"{images_path} holds {rows}x{cols} images, not {spec.title}'s {size}x{size}: {REPLACE}"
        )
    if len(images) != len(labels):
        raise KdlabError(
            f"{images_path} holds {len(images)} images but {labels_path} {len(labels)} labels: "
            f"{REPLACE}"
        )
    if len(labels) and int(labels.max()) >= len(spec.class_names):
        raise KdlabError(
            f"{labels_path} has label {int(labels.max())} but {spec.title} has "
            f"{len(spec.class_names)} classes: {REPLACE}"
        )
    return ImageSet(
        torch.from_numpy(images.reshape(-1, spec.channels, size, size).copy()),
        torch.from_numpy(labels.astype(np.int64)),
    )


def load_idx(name: str, root: Path, *, download: bool) -> Source[ImageSet]:
    """Train and test splits of idx data set `name` (a key of IDX_SETS): uint8 (N,1,28,28)."""
    spec = IDX_SETS[name]
    files = _locate(spec, root.expanduser().resolve(), download)
    train, test = (
        _read_split(spec, files[images], files[labels]) for images, labels in SPLIT_FILES.values()
    )
    return Source(train, test, list(spec.class_names))


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """An idx file's content: the big-endian magic number and dimensions, then the bytes."""
    dims = np.array(array.shape, dtype=">i4").tobytes()
    return magic.to_bytes(4, "big") + dims + array.astype(np.uint8).tobytes()


def write_tiny(name: str, root: Path) -> dict[str, Any]:
    """A tiny copy of idx data set `name` in `root`, its four files gzipped as released (5
    train and 2 test images a class, random pixels), and the `data.*` settings loading it."""
    spec = IDX_SETS[name]
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    classes = len(spec.class_names)
    for (images_name, labels_name), per_class in zip(SPLIT_FILES.values(), (5, 2), strict=True):
        labels = np.arange(per_class * classes) % classes
        shape = (len(labels), spec.image_size, spec.image_size)
        images = rng.integers(0, 256, shape, dtype=np.uint8)
        (root / f"{images_name}.gz").write_bytes(gzip.compress(idx_bytes(images, IMAGES_MAGIC)))
        (root / f"{labels_name}.gz").write_bytes(gzip.compress(idx_bytes(labels, LABELS_MAGIC)))
    return {"root": str(root), "download": False}


@dataclass
class IdxConfig(DataConfig):
    """`data=fashion_mnist|mnist|kmnist`: the four idx files under data.root."""

    image_size: int = IMAGE_SIZE
    download: bool = True  # through torchvision, when data.root holds none of the files


def load(settings: IdxConfig) -> Source[ImageSet]:
    """The registry's entry point."""
    return load_idx(settings.name, Path(settings.root), download=settings.download)
