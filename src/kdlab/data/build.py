"""From the `data` config to train/val/test loaders: load, subset, split, normalise, place."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from kdlab.data.batch_loader import BatchLoader
from kdlab.data.choices import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    augment_mode,
    normalization,
    stored_sides,
    train_augmentation,
)
from kdlab.data.class_names import check_classes
from kdlab.data.device_decode import DeviceFinish, WholeFiles
from kdlab.data.device_loader import DeviceLoader
from kdlab.data.imagefolder import DecodingDataset, FolderFiles
from kdlab.data.normalize import Normalizer, channel_stats
from kdlab.data.registry import (
    DatasetSpec,
    channels_of,
    data_settings,
    dataset_spec,
    image_size_of,
)
from kdlab.data.resized_crop import resize_center_crop
from kdlab.data.schedule import EvalSchedule, Schedule, TrainSchedule
from kdlab.data.seeding import seeded_generator
from kdlab.data.settings import DataConfig, decodes_on_device, worker_count
from kdlab.data.source import ImageSet, Source
from kdlab.data.splits import balanced_subset, stratified_split
from kdlab.data.stream_loader import StreamLoader
from kdlab.data.strong_view import StrongView
from kdlab.errors import KdlabError

STATS_SAMPLE = 5000  # streamed train images decoded to estimate mean/std

# Streams of the training seed for each split decision, apart from the epoch streams.
_TRAIN_SUBSET, _TEST_SUBSET, _VAL_SPLIT = 1, 2, 3

Split = ImageSet | FolderFiles


@dataclass
class DataBundle:
    """Everything the engine needs from a data set."""

    name: str
    num_classes: int
    class_names: list[str]
    image_size: int
    train: BatchLoader  # augmented, shuffled, last partial batch dropped
    val: BatchLoader | None  # held out from train; None when data.val_split == 0
    test: BatchLoader  # the test split, unaugmented
    in_channels: int = 3  # of the images: every model is built for it
    train_images: int = 0  # the train split's size (all ranks)
    dropped: int = 0  # of them, left out of every epoch: the last partial batch
    augment: str = "cifar"  # data.augment resolved: cifar, imagenet or none
    normalization: str = "dataset"  # data.normalize resolved: dataset or imagenet
    mean: tuple[float, ...] = ()  # the normalisation: (x/255 - mean) / std per channel
    std: tuple[float, ...] = ()


def _balanced(
    split: Split, size: int | None, key: str, stream: int, source: Source, seed: int
) -> Split:
    """A class-balanced subset of `size` images (all of them for None)."""
    if size is None:
        return split
    gen = seeded_generator(seed, stream)
    return split.subset(balanced_subset(split.labels, size, source.class_names, gen, key))


def _hold_out(train: Split, fraction: float, num_classes: int, seed: int) -> tuple[Split, Split]:
    """(train, val): a stratified `fraction` of every class of train moves to val."""
    kept, held = stratified_split(
        train.labels, fraction, num_classes, seeded_generator(seed, _VAL_SPLIT)
    )
    if held.numel() == 0:
        raise KdlabError(
            f"data.val_split={fraction} holds out no image of the {train.labels.numel()} train "
            "images: raise it, or set data.val_split=0 to keep the last epoch's model"
        )
    return train.subset(kept), train.subset(held)


def _into_memory(splits: dict[str, Split | None], max_mb: int) -> dict[str, Split | None]:
    """Decode image files once if all splits fit in `max_mb` as uint8, else keep streaming."""
    files = [s for s in splits.values() if isinstance(s, FolderFiles)]
    if not files or sum(f.decoded_bytes for f in files) > max_mb * 2**20:
        return splits
    return {k: s.decode() if isinstance(s, FolderFiles) else s for k, s in splits.items()}


def _refit(split: Split | None, sides: tuple[int, int]) -> Split | None:
    """`split` as Resize(resize) + CenterCrop(crop) where that changes it (image folders are
    decoded so; images in memory are transformed once, here)."""
    resize, crop = sides
    if isinstance(split, FolderFiles):
        return split.refit(resize, crop)
    if split is None or split.images.shape[-1] == resize == crop:
        return split
    return ImageSet(resize_center_crop(split.images, resize, crop), split.labels)


def _given_mean_std(
    settings: DataConfig, spec: DatasetSpec
) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """Configured stats, else the data set's standard ones; None: computed from its images."""
    if settings.mean is not None and settings.std is not None:
        return tuple(settings.mean), tuple(settings.std)
    if spec.mean is not None and spec.std is not None:
        return spec.mean, spec.std
    return None


def _mean_std(
    settings: DataConfig, spec: DatasetSpec, train: Split, imagenet: bool
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """ImageNet's stats if asked, the given stats, else those of the images left after the
    val split (before train_size subsets them: the same for every run, so a teacher sees the
    inputs it trained on in any student's run)."""
    if imagenet:
        return IMAGENET_MEAN, IMAGENET_STD
    given = _given_mean_std(settings, spec)
    if given is not None:
        return given
    if isinstance(train, FolderFiles):  # estimate from an evenly spread sample
        count = train.labels.numel()
        step = -(-count // STATS_SAMPLE)
        train = train.subset(torch.arange(0, count, step)).decode()
    mean, std = channel_stats(train.images)
    return tuple(mean), tuple(std)


@dataclass(frozen=True)
class _Serving:
    """How a run's batches are made: device, workers, and the imagenet crop size (None: the
    views, if any, are applied on the device)."""

    normalize: Normalizer
    device: torch.device
    num_workers: int
    crop_in_workers: int | None
    decode_on_device: bool = False  # data.decode resolved: streamed files finished on device

    def loader(
        self,
        split: Split,
        schedule: Schedule,
        train: bool = False,
        strong: StrongView | None = None,
    ) -> BatchLoader:
        if isinstance(split, ImageSet):
            return DeviceLoader(
                split.images, split.labels, schedule, self.normalize, self.device, strong
            )
        if strong is not None:
            raise KdlabError(
                "data.views=weak_strong makes its strong views from images in memory: raise "
                "data.in_memory_max_mb so the training images fit"
            )
        crop = self.crop_in_workers if train else None
        workers, views = self.num_workers, crop is not None
        if self.decode_on_device:
            resize = split.resize or split.image_size
            finish = DeviceFinish(self.device, crop or split.image_size, resize, split.channels)
            return StreamLoader(
                WholeFiles(split), schedule, self.normalize, self.device, workers, views, finish
            )
        dataset = DecodingDataset(split, crop_size=crop)
        return StreamLoader(dataset, schedule, self.normalize, self.device, workers, views)


def _train_and_val(
    settings: DataConfig, source: Source, split_seed: int
) -> tuple[Split, Split | None]:
    """The full train split less the val images, and those (None without a val split)."""
    if settings.val_split <= 0:
        return source.train, None
    return _hold_out(source.train, settings.val_split, len(source.class_names), split_seed)


def run_mean_std(
    cfg: DataConfig | Mapping, seed: int, imagenet: bool
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The (mean, std) a run of this `data` config and seed normalised with, as build_data
    computes them (the data set is loaded only when its statistics are computed)."""
    settings = data_settings(cfg)
    spec = dataset_spec(settings.name)
    given = (IMAGENET_MEAN, IMAGENET_STD) if imagenet else _given_mean_std(settings, spec)
    if given is not None:
        return given
    split_seed = seed if settings.split_seed is None else settings.split_seed
    train, _ = _train_and_val(settings, spec.load(settings), split_seed)
    return _mean_std(settings, spec, train, imagenet)


def _run_splits(
    settings: DataConfig,
    spec: DatasetSpec,
    source: Source,
    split_seed: int,
    mode: str,
    imagenet_stats: bool,
) -> tuple[Split, Split | None, Split, tuple[tuple[float, ...], tuple[float, ...]]]:
    """(train, val, test) as a run uses them, and the normalisation (mean, std): val first,
    from the full train split, then the subsets, then the geometry the augmentation `mode`
    needs; decoded into memory where they fit."""
    train, val = _train_and_val(settings, source, split_seed)
    test = source.test
    stats = _mean_std(settings, spec, train, imagenet_stats)  # of all images a run may train on
    train = _balanced(
        train, settings.train_size, "data.train_size", _TRAIN_SUBSET, source, split_seed
    )
    test = _balanced(test, settings.test_size, "data.test_size", _TEST_SUBSET, source, split_seed)
    train_sides, eval_sides = stored_sides(mode, image_size_of(settings))
    splits = {
        "train": train if spec.image_size else _refit(train, train_sides),  # fixed: as they are
        "val": _refit(val, eval_sides),
        "test": _refit(test, eval_sides),
    }
    placed = _into_memory(splits, settings.in_memory_max_mb)
    return placed["train"], placed["val"], placed["test"], stats


def check_split_sizes(name: str, train_images: int, test_images: int, batch_size: int) -> None:
    """Before anything trains: one full batch to train on (the last partial batch is left out
    of every epoch, so a batch larger than the split would train on nothing), and a test split
    to measure the result on."""
    if train_images < batch_size:
        raise KdlabError(
            f"trainer.batch_size={batch_size} is larger than the training split "
            f"({train_images} images), so no full batch would train: set "
            f"trainer.batch_size={max(train_images, 1)} or lower, or train on more images"
        )
    if test_images == 0:
        raise KdlabError(
            f"data={name} has no test images: put its test split in data.root (for an image "
            "folder, test/<class>/ or val/<class>/ with images in it)"
        )


def build_data(
    cfg: DataConfig | Mapping,
    *,
    batch_size: int,
    eval_batch_size: int,
    device: torch.device,
    seed: int,
    channels_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
    pretrained: bool = False,
) -> DataBundle:
    """Load the data set named in the `data` config and serve its splits on `device`.

    The val split is a stratified `data.val_split` fraction of the FULL train split, drawn
    before `data.train_size` subsets the remaining images, so every run of a data set validates
    on the same images and trains on none of them (whatever its train_size). Subsets and the
    val split are deterministic in `data.split_seed` (fixed by default, so teachers and
    students of any seed share one split; null = follow `seed`); each epoch's
    batches in (`seed`, epoch). With `world_size` > 1 every rank gets a disjoint, equally
    long shard. `pretrained`: what `data.normalize=auto` follows (ImageNet statistics).
    """
    settings = data_settings(cfg)
    spec = dataset_spec(settings.name)
    split_seed = seed if settings.split_seed is None else settings.split_seed
    source = spec.load(settings)
    check_classes(settings.name, source.class_names)
    mode, norm = augment_mode(settings, spec), normalization(settings, pretrained)
    size = image_size_of(settings)
    imagenet = norm == "imagenet"
    train, val, test, (mean, std) = _run_splits(settings, spec, source, split_seed, mode, imagenet)
    normalize = Normalizer(mean, std, device, channels_last)
    workers = worker_count(settings.num_workers, world_size)
    crop = size if mode == "imagenet" else None
    serving = _Serving(normalize, device, workers, crop, decodes_on_device(settings.decode, device))
    shard = {"rank": rank, "world_size": world_size}
    views = train_augmentation(mode, spec, size)
    check_split_sizes(
        settings.name, train.labels.numel(), test.labels.numel(), batch_size * world_size
    )
    epochs = TrainSchedule(train.labels.numel(), batch_size, seed=seed, augmentation=views, **shard)
    fill = tuple(round(255 * m) for m in mean)
    strong = StrongView(views, fill) if settings.views == "weak_strong" else None

    def evaluated(split: Split) -> BatchLoader:
        return serving.loader(split, EvalSchedule(split.labels.numel(), eval_batch_size, **shard))

    return DataBundle(
        name=settings.name,
        num_classes=len(source.class_names),
        class_names=list(source.class_names),
        image_size=size,
        in_channels=channels_of(settings),
        train=serving.loader(train, epochs, train=True, strong=strong),
        val=None if val is None else evaluated(val),
        test=evaluated(test),
        train_images=epochs.num_items,
        dropped=epochs.dropped,
        augment=mode,
        normalization=norm,
        mean=mean,
        std=std,
    )
