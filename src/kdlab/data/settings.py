"""The `data` settings every data set shares, and their checks (no files are touched).

Each data set extends `DataConfig` with its own fields (its module defines the subclass and
the registry names it), so `data.download` exists for CIFAR and not for an image folder.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING

from kdlab.data.names import DEFAULT_VIEWS, VIEWS
from kdlab.errors import KdlabError


@dataclass
class DataConfig:
    """`data=NAME`: which data set, where it lives and how much of it a run uses."""

    name: str = MISSING
    root: str = "data"
    train_size: int | None = None  # images trained on: class-balanced, after val; null = all
    test_size: int | None = None  # class-balanced subset of test; null = all
    val_split: float = 0.1  # stratified fraction of the FULL train split held out (any size)
    split_seed: int | None = 0  # fixes subsets and the val split across runs; null = `seed`
    augment: str = "auto"  # auto|cifar|imagenet|none (true = auto, false = none): docs/data.md
    # weak | weak_strong: a second, RandAugment view per image (loss=mlkd)
    views: str = DEFAULT_VIEWS
    normalize: str = "auto"  # auto|dataset|imagenet: ImageNet stats for pretrained models
    image_size: int = 32  # side length; only data sets without a fixed size resize
    num_workers: Any = "auto"  # DataLoader workers for streamed files: a count, or auto
    decode: str = "auto"  # auto|host|device: where streamed JPEGs decode (auto: CUDA = device)
    in_memory_max_mb: int = 4096  # decode image files into memory when they fit
    mean: list[float] | None = None  # per-channel; null = the data set's own (or computed)
    std: list[float] | None = None


AUGMENTS = ("auto", "cifar", "imagenet", "none")
NORMALIZATIONS = ("auto", "dataset", "imagenet")
_AUGMENT_ALIASES = {"true": "auto", "false": "none"}  # data.augment was a bool


def augment_choice(value: object) -> str:
    """data.augment as one of AUGMENTS (the old booleans: true = auto, false = none)."""
    choice = str(value).lower()
    choice = _AUGMENT_ALIASES.get(choice, choice)
    if choice not in AUGMENTS:
        raise KdlabError(f"data.augment must be one of {', '.join(AUGMENTS)}, got {value}")
    return choice


def worker_count(value: object, world_size: int = 1) -> int:
    """data.num_workers as a count; auto = the CPUs this process may use, shared among the
    ranks of the machine, less one for the training process, between 1 and 8."""
    if str(value).lower() == "auto":
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return max(1, min(8, (cpus or 1) // world_size - 1))
    if isinstance(value, bool) or not str(value).isdigit():
        raise KdlabError(f"data.num_workers must be auto or a count >= 0, got {value}")
    return int(str(value))


DECODES = ("auto", "host", "device")


def check_decode(value: str) -> None:
    if value not in DECODES:
        raise KdlabError(f"data.decode must be one of {', '.join(DECODES)}, got {value}")


def decodes_on_device(value: str, device: object) -> bool:
    """data.decode resolved: streamed JPEGs decode on the training device (nvJPEG) with
    `device` (a torch.device or its name: this module stays torch-free for the CLI's screen),
    or on CUDA under auto; else in the DataLoader workers (`host`)."""
    check_decode(value)
    return value == "device" or (value == "auto" and str(device).split(":")[0] == "cuda")


def check_common(data: DataConfig) -> None:
    """Range and consistency checks of the fields every data set has: val_split in [0, 1);
    train_size, test_size null or >= 1; image_size >= 1; in_memory_max_mb >= 0; num_workers
    auto or >= 0; augment, views, normalize and decode among their choices;
    split_seed any int or null; mean and std both null or 3 finite values each, std > 0
    (root: checked when read)."""
    if not 0.0 <= data.val_split < 1.0:
        raise KdlabError(f"data.val_split must be in [0, 1), got {data.val_split}")
    for key in ("train_size", "test_size"):
        value = getattr(data, key)
        if value is not None and value <= 0:
            raise KdlabError(f"data.{key} must be positive (or null for all), got {value}")
    if data.image_size <= 0:
        raise KdlabError(f"data.image_size must be positive, got {data.image_size}")
    if data.in_memory_max_mb < 0:
        raise KdlabError(f"data.in_memory_max_mb must be >= 0, got {data.in_memory_max_mb}")
    worker_count(data.num_workers)
    augment_choice(data.augment)
    if data.views not in VIEWS:
        raise KdlabError(f"data.views must be one of {', '.join(VIEWS)}, got {data.views}")
    check_decode(data.decode)
    if data.normalize not in NORMALIZATIONS:
        raise KdlabError(
            f"data.normalize must be one of {', '.join(NORMALIZATIONS)}, got {data.normalize}"
        )
    if (data.mean is None) != (data.std is None):
        raise KdlabError("set both data.mean and data.std (one value per channel) or neither")
    if data.mean is not None and data.std is not None:
        if not all(math.isfinite(v) for v in [*data.mean, *data.std]):
            raise KdlabError(
                f"data.mean and data.std must be finite, got {list(data.mean)}, {list(data.std)}"
            )
        if min(data.std) <= 0:
            raise KdlabError(f"data.std must be positive, got {list(data.std)}")


def check_fixed_size(name: str, fixed: int | None, image_size: int) -> None:
    """A data set whose images are all `fixed` px a side (None: any, resized) takes no other
    data.image_size."""
    if fixed is not None and image_size != fixed:
        raise KdlabError(
            f"{name} images are {fixed}x{fixed}: drop data.image_size (got {image_size}); "
            "only data sets without a fixed size resize"
        )


def channel_count(settings: DataConfig, fixed: int | None) -> int:
    """How many channels the data set's images have: its `fixed` count, else (an image
    folder) data.channels."""
    return int(fixed if fixed is not None else getattr(settings, "channels", 3))


def check_stats_channels(settings: DataConfig, channels: int) -> None:
    """data.mean and data.std give one value per channel."""
    for key in ("mean", "std"):
        values = getattr(settings, key)
        if values is not None and len(values) != channels:
            raise KdlabError(
                f"data.{key} needs {channels} value(s), one per channel of {settings.name}, "
                f"got {len(values)}"
            )


def physical_memory() -> int | None:
    """This machine's memory in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_batch_fits(side: int, channels: int, batch_size: int) -> None:
    """A batch of `batch_size` float32 images (the smallest tensor the data path allocates
    for one step; the model's activations are several times larger) must fit in memory,
    else data.image_size=40000 fails deep in an allocator after the run dir is made."""
    needed = batch_size * channels * side * side * 4
    memory = physical_memory()
    if memory is not None and needed > memory:
        raise KdlabError(
            f"data.image_size={side} makes one batch of {batch_size} images {needed:,} bytes "
            f"(float32), more than this machine's {memory:,} bytes of memory: lower "
            "data.image_size (or the batch size)"
        )
