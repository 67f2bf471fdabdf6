"""Every data set `data=NAME` can load, in one place: how it loads, what its images are, how
they train and which study preset fits it.

Adding a data set: a module with its settings class (a `DataConfig` subclass), a
`load(settings) -> Source` and a `write_tiny(root)` (a tiny generated copy for the tests),
one `DatasetSpec` entry below; code outside kdlab calls `register_dataset` (a plugin: see
kdlab.runs.plugins). The `data=` config group, the checks, `kdlab study`'s preset, the error
listing the valid names and the registry's tests (tests/test_registries.py) follow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from kdlab.data import cifar, cifar_archive, folder_layout, idx, imagefolder, synthetic
from kdlab.data.settings import (
    DataConfig,
    channel_count,
    check_batch_fits,
    check_common,
    check_fixed_size,
    check_stats_channels,
)
from kdlab.data.source import Source
from kdlab.errors import KdlabError, check_new_name

CROP_PAD = 4  # CIFAR-style augmentation: zero-pad 4, random 32x32 crop, horizontal flip


@dataclass(frozen=True)
class DatasetSpec:
    """One data set: its settings schema, its loader and the facts training needs."""

    settings: type[DataConfig]  # its `data` node: the common fields plus its own
    load: Callable[[Any], Source]  # settings -> train/test splits and class names
    description: str
    image_size: int | None = 32  # its fixed side length; None = resized to data.image_size
    channels: int | None = 3  # image channels; None = data.channels (image folders)
    augment_pad: int | None = CROP_PAD  # train-time pad-and-crop (+ flip); None = none
    flips: bool = True  # horizontal flips in the augmentation (not for digits, characters)
    mean: tuple[float, ...] | None = None  # normalisation; None = computed from train
    std: tuple[float, ...] | None = None
    preset: str = "cifar"  # the `experiment=` preset `kdlab study` picks for it
    check: Callable[[Any], None] | None = None  # its own checks (no files touched)
    # Its class names from the settings and at most a directory listing (no image read), what
    # a teacher is checked against before the run dir is made; None = known once loaded.
    class_names: Callable[[Any], list[str] | None] | None = None
    num_classes: int | None = None  # its class count when its names are known only once loaded
    # Writes a tiny generated copy under a root, in the real on-disk format, and returns the
    # `data.*` settings that load it (tests/test_registries.py loads every one).
    make_tiny: Callable[[Path], dict[str, Any]] | None = None


def named(class_names: Sequence[str]) -> Callable[[Any], list[str]]:
    """DatasetSpec.class_names of a data set whose classes are fixed."""
    return lambda _: list(class_names)


DATASETS: dict[str, DatasetSpec] = {
    "cifar10": DatasetSpec(
        cifar.CifarConfig,
        cifar.load,
        "CIFAR-10 (torchvision's files, downloaded into data.root)",
        make_tiny=partial(cifar_archive.write_tiny, "cifar10"),
        num_classes=10,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
    ),
    "cifar100": DatasetSpec(
        cifar.CifarConfig,
        cifar.load,
        "CIFAR-100 (torchvision's files, downloaded into data.root)",
        make_tiny=partial(cifar_archive.write_tiny, "cifar100"),
        num_classes=100,
        mean=(0.5071, 0.4865, 0.4409),
        std=(0.2673, 0.2564, 0.2762),
    ),
    "imagefolder": DatasetSpec(
        folder_layout.ImageFolderConfig,
        imagefolder.load,
        "your own images: data.root=DIR with train/<class>/* and test/ (or val/)",
        image_size=None,
        channels=None,
        check=folder_layout.check,
        class_names=folder_layout.listed_classes,
        make_tiny=imagefolder.write_tiny,
    ),
    **{
        name: DatasetSpec(
            idx.IdxConfig,
            idx.load,
            f"{spec.title}: 28x28 greyscale, 10 classes (idx files in data.root)",
            image_size=spec.image_size,
            channels=spec.channels,
            flips=spec.flip,
            mean=spec.mean,
            std=spec.std,
            preset="fashion",
            make_tiny=partial(idx.write_tiny, name),
            class_names=named(spec.class_names),
        )
        for name, spec in idx.IDX_SETS.items()
    },
    "synthetic": DatasetSpec(
        synthetic.SyntheticConfig,
        synthetic.load,
        "built-in procedural RGB shapes, 10 classes, rendered at 32x32 (data.image_size "
        "resizes them); generated, no files",
        image_size=None,
        preset="quick",
        make_tiny=synthetic.write_tiny,
        class_names=named(synthetic.CLASS_NAMES),
    ),
}


def register_dataset(name: str, spec: DatasetSpec) -> DatasetSpec:
    """Make `data=name` load a data set from outside kdlab, like a built-in one: the `data=`
    config group with `spec.settings`' fields, `--help`, the checks and `kdlab study`'s
    preset follow. `spec.load(settings)` returns a `Source` of `ImageSet`s (uint8 N,C,S,S
    images, int64 labels) and the class names. A taken name is an error."""
    check_new_name("data set", "data", name, DATASETS)
    if not (isinstance(spec.settings, type) and issubclass(spec.settings, DataConfig)):
        raise KdlabError(
            f"cannot register data set '{name}': its DatasetSpec.settings must be a DataConfig "
            f"subclass (a dataclass), got {spec.settings!r}"
        )
    size = next(f.default for f in fields(spec.settings) if f.name == "image_size")
    if spec.image_size is not None and size != spec.image_size:
        raise KdlabError(
            f"cannot register data set '{name}': its images are {spec.image_size} px but "
            f"{spec.settings.__name__}.image_size defaults to {size}: declare "
            f"image_size: int = {spec.image_size} in it"
        )
    DATASETS[name] = spec
    return spec


def dataset_names() -> list[str]:
    return list(DATASETS)


def dataset_spec(name: str) -> DatasetSpec:
    """The registered data set `name`; an unknown name lists the valid ones."""
    spec = DATASETS.get(name)
    if spec is None:
        raise KdlabError(
            f"unknown data set '{name}': choose one of {', '.join(DATASETS)} (data=NAME)"
        )
    return spec


def group_options() -> dict[str, DataConfig]:
    """The `data=` config group: each data set's settings with their defaults."""
    return {name: spec.settings(name=name) for name, spec in DATASETS.items()}


def data_settings(cfg: DataConfig | Mapping) -> DataConfig:
    """Typed, checked settings from a DataConfig, a DictConfig or a plain dict (missing keys
    take the data set's defaults)."""
    if isinstance(cfg, DataConfig):
        settings = cfg
    else:
        raw: dict[str, Any] = dict(
            OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
        )
        spec = dataset_spec(str(raw.get("name")))
        known = [f.name for f in fields(spec.settings)]
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise KdlabError(
                f"unknown data setting(s) {', '.join(unknown)}: valid ones are {', '.join(known)}"
            )
        settings = spec.settings(**raw)
    check_data_settings(settings)
    return settings


def channels_of(settings: DataConfig) -> int:
    """How many channels the data set's images have (an image folder: data.channels)."""
    return channel_count(settings, dataset_spec(settings.name).channels)


def known_class_names(settings: DataConfig) -> list[str] | None:
    """The data set's class names, in label order, as far as known before its images are
    read (None: known once it is loaded)."""
    listed = dataset_spec(settings.name).class_names
    return listed(settings) if listed is not None else None


def known_class_count(settings: DataConfig) -> int | None:
    """How many classes the data set has, as far as known before its images are read."""
    names = known_class_names(settings)
    return len(names) if names is not None else dataset_spec(settings.name).num_classes


def image_size_of(settings: DataConfig) -> int:
    """The side of the square images a run trains on: the data set's own or data.image_size."""
    return dataset_spec(settings.name).image_size or settings.image_size


def check_batch_memory(settings: DataConfig, batch_size: int) -> None:
    """A batch of the data set's images fits in this machine's memory (check_batch_fits)."""
    check_batch_fits(image_size_of(settings), channels_of(settings), batch_size)


def check_data_settings(settings: DataConfig) -> None:
    """Everything about the `data` node that can be checked without reading a file."""
    spec = dataset_spec(settings.name)
    check_common(settings)
    if spec.check is not None:
        spec.check(settings)
    check_stats_channels(settings, channels_of(settings))
    check_fixed_size(settings.name, spec.image_size, settings.image_size)
