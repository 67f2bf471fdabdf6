"""CIFAR-10 and CIFAR-100 through torchvision, read once into uint8 NCHW tensors.

torchvision is imported only when CIFAR is loaded: importing it costs about 2 s on a CPU
machine, which every other command (and every one-line error) would otherwise pay.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from kdlab.data.download import download_or_fail
from kdlab.data.settings import DataConfig
from kdlab.data.source import ImageSet, Source
from kdlab.errors import KdlabError

if TYPE_CHECKING:
    from torchvision.datasets import CIFAR10


@dataclass
class CifarConfig(DataConfig):
    """`data=cifar10|cifar100`: torchvision's files under data.root."""

    download: bool = True  # fetch the archive when data.root holds neither it nor its files
    verify_md5: bool = True  # false accepts a home-made archive in the official format


@dataclass(frozen=True)
class CifarSpec:
    title: str
    class_name: str  # the data set's class in torchvision.datasets


CIFARS = {
    "cifar10": CifarSpec("CIFAR-10", "CIFAR10"),
    "cifar100": CifarSpec("CIFAR-100", "CIFAR100"),
}


def _without_md5(dataset: type[CIFAR10]) -> type[CIFAR10]:
    """A subclass whose integrity checks only require the files to exist.

    torchvision checks every file against the md5 of the official release; blanking the
    md5s makes it accept archives in the same format with other contents (generated ones).
    """
    return type(
        f"{dataset.__name__}AnyContent",
        (dataset,),
        {
            "tgz_md5": None,
            "train_list": [[name, None] for name, _ in dataset.train_list],
            "test_list": [[name, None] for name, _ in dataset.test_list],
            "meta": {**dataset.meta, "md5": None},
        },
    )


def _missing_files(dataset: type[CIFAR10], root: Path) -> list[Path]:
    folder = root / dataset.base_folder
    names = [name for name, _ in dataset.train_list + dataset.test_list]
    paths = [folder / name for name in [*names, dataset.meta["filename"]]]
    return [path for path in paths if not path.is_file()]


def _download(spec: CifarSpec, dataset: type[CIFAR10], root: Path) -> None:
    from torchvision.datasets.utils import download_url

    def fetch() -> None:
        try:
            download_url(dataset.url, str(root), dataset.filename, dataset.tgz_md5)
        except BaseException:
            (root / dataset.filename).unlink(missing_ok=True)  # no torn archive left behind
            raise

    failed = KdlabError(
        f"{spec.title} not found in {root} and download failed (no network?): "
        f"put {dataset.filename} in {root} or set data.root=DIR"
    )
    download_or_fail([dataset.url], root, failed, fetch)


def _extract(spec: CifarSpec, dataset: type[CIFAR10], root: Path) -> None:
    from torchvision.datasets.utils import check_integrity, extract_archive

    archive = root / dataset.filename
    fix = "delete it to download it again, or put an intact copy there"
    if not check_integrity(str(archive), dataset.tgz_md5):
        raise KdlabError(
            f"{archive} does not match the official {spec.title} md5: {fix} "
            "(or set data.verify_md5=false for a home-made archive)"
        )
    try:
        extract_archive(str(archive), str(root))
    except (tarfile.TarError, EOFError, OSError) as err:
        raise KdlabError(f"cannot extract {archive} ({err}): {fix}") from err
    missing = _missing_files(dataset, root)
    if missing:
        raise KdlabError(f"{archive} does not hold {spec.title} ({missing[0]} is missing): {fix}")


def _ensure_extracted(spec: CifarSpec, dataset: type[CIFAR10], root: Path, download: bool) -> None:
    """Make the batch files exist under `root`: extract the archive, downloading it first."""
    if not _missing_files(dataset, root):
        return
    if not (root / dataset.filename).is_file():
        if not download:
            raise KdlabError(
                f"{spec.title} not found in {root}: put {dataset.filename} there, "
                "set data.download=true, or set data.root=DIR"
            )
        _download(spec, dataset, root)
    _extract(spec, dataset, root)


def _image_set(split: CIFAR10) -> ImageSet:
    """torchvision's HWC uint8 array -> one NCHW uint8 tensor."""
    images = torch.from_numpy(split.data).permute(0, 3, 1, 2).contiguous()
    return ImageSet(images, torch.tensor(split.targets, dtype=torch.int64))


def load_cifar(name: str, root: Path, *, download: bool, verify_md5: bool) -> Source[ImageSet]:
    """Train and test splits of CIFAR-10/100 under `root` (torchvision's layout)."""
    from torchvision import datasets

    spec = CIFARS[name]
    official = getattr(datasets, spec.class_name)
    dataset = official if verify_md5 else _without_md5(official)
    root = root.expanduser().resolve()
    _ensure_extracted(spec, dataset, root, download)
    try:
        train = dataset(str(root), train=True)
        test = dataset(str(root), train=False)
    except Exception as err:  # unpickling damaged bytes raises any type: MemoryError for a
        # length flipped huge, AttributeError, IndexError, ... (the pickle docs say as much)
        folder = root / dataset.base_folder
        raise KdlabError(
            f"cannot read {spec.title} from {folder} ({type(err).__name__}: corrupt, or not "
            "the official files): delete that folder to extract "
            "or download it again (or set data.verify_md5=false for a home-made archive)"
        ) from err
    return Source(_image_set(train), _image_set(test), list(train.classes))


def load(settings: CifarConfig) -> Source[ImageSet]:
    """The registry's entry point: the data set `settings.name` under `settings.root`."""
    return load_cifar(
        settings.name,
        Path(settings.root),
        download=settings.download,
        verify_md5=settings.verify_md5,
    )
