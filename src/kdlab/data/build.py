"""From the `data` config to train/val/test loaders: load, subset, split, normalise, place."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from kdlab.data.batch_loader import BatchLoader
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
from kdlab.data.schedule import EvalSchedule, Schedule, TrainSchedule
from kdlab.data.seeding import seeded_generator
from kdlab.data.settings import DataConfig
from kdlab.data.source import ImageSet, Source, check_classes
from kdlab.data.splits import balanced_subset, stratified_split
from kdlab.data.stream_loader import StreamLoader
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
    settings: DataConfig, spec: DatasetSpec, train: Split
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The given stats, else those of the images left after the val split (before
    train_size subsets them: the same for every run, so a teacher sees the inputs it trained
    on in any student's run)."""
    given = _given_mean_std(settings, spec)
    if given is not None:
        return given
    if isinstance(train, FolderFiles):  # estimate from an evenly spread sample
        count = train.labels.numel()
        step = -(-count // STATS_SAMPLE)
        train = train.subset(torch.arange(0, count, step)).decode()
    mean, std = channel_stats(train.images)
    return tuple(mean), tuple(std)


def _loader(
    split: Split, schedule: Schedule, normalize: Normalizer, device: torch.device, num_workers: int
) -> BatchLoader:
    if isinstance(split, ImageSet):
        return DeviceLoader(split.images, split.labels, schedule, normalize, device)
    return StreamLoader(DecodingDataset(split), schedule, normalize, device, num_workers)


def _train_and_val(
    settings: DataConfig, source: Source, split_seed: int
) -> tuple[Split, Split | None]:
    """The full train split less the val images, and those (None without a val split)."""
    if settings.val_split <= 0:
        return source.train, None
    return _hold_out(source.train, settings.val_split, len(source.class_names), split_seed)


def run_normalization(
    cfg: DataConfig | Mapping, seed: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The (mean, std) a run of this `data` config and seed normalised with, as build_data
    computes them (the data set is loaded only when its statistics are computed)."""
    settings = data_settings(cfg)
    spec = dataset_spec(settings.name)
    given = _given_mean_std(settings, spec)
    if given is not None:
        return given
    split_seed = seed if settings.split_seed is None else settings.split_seed
    train, _ = _train_and_val(settings, spec.load(settings), split_seed)
    return _mean_std(settings, spec, train)


def _run_splits(
    settings: DataConfig, spec: DatasetSpec, source: Source, split_seed: int
) -> tuple[Split, Split | None, Split, tuple[tuple[float, ...], tuple[float, ...]]]:
    """(train, val, test) as a run uses them, and the normalisation (mean, std): val first,
    from the full train split, then the subsets; decoded into memory where they fit."""
    train, val = _train_and_val(settings, source, split_seed)
    test = source.test
    stats = _mean_std(settings, spec, train)  # of all images a run may train on
    train = _balanced(
        train, settings.train_size, "data.train_size", _TRAIN_SUBSET, source, split_seed
    )
    test = _balanced(test, settings.test_size, "data.test_size", _TEST_SUBSET, source, split_seed)
    placed = _into_memory({"train": train, "val": val, "test": test}, settings.in_memory_max_mb)
    return placed["train"], placed["val"], placed["test"], stats


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
) -> DataBundle:
    """Load the data set named in the `data` config and serve its splits on `device`.

    The val split is a stratified `data.val_split` fraction of the FULL train split, drawn
    before `data.train_size` subsets the remaining images, so every run of a data set validates
    on the same images and trains on none of them (whatever its train_size). Subsets and the
    val split are deterministic in `data.split_seed` (fixed by default, so teachers and
    students of any seed share one split; null = follow `seed`); each epoch's
    batches in (`seed`, epoch). With `world_size` > 1 every rank gets a disjoint, equally
    long shard.
    """
    settings = data_settings(cfg)
    spec = dataset_spec(settings.name)
    split_seed = seed if settings.split_seed is None else settings.split_seed
    source = spec.load(settings)
    check_classes(settings.name, source.class_names)
    num_classes = len(source.class_names)
    train, val, test, (mean, std) = _run_splits(settings, spec, source, split_seed)
    normalize = Normalizer(mean, std, device, channels_last)
    shard = {"rank": rank, "world_size": world_size}
    pad = spec.augment_pad if settings.augment else None

    def serve(split: Split, schedule: Schedule) -> BatchLoader:
        return _loader(split, schedule, normalize, device, settings.num_workers)

    epochs = TrainSchedule(
        train.labels.numel(), batch_size, seed=seed, augment_pad=pad, flips=spec.flips, **shard
    )

    return DataBundle(
        name=settings.name,
        num_classes=num_classes,
        class_names=list(source.class_names),
        image_size=image_size_of(settings),
        in_channels=channels_of(settings),
        train=serve(train, epochs),
        val=None
        if val is None
        else serve(val, EvalSchedule(val.labels.numel(), eval_batch_size, **shard)),
        test=serve(test, EvalSchedule(test.labels.numel(), eval_batch_size, **shard)),
        train_images=epochs.num_items,
        dropped=epochs.dropped,
        mean=mean,
        std=std,
    )
