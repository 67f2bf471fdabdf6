"""The exact teacher-logit cache: a KD step at the cost of a student step, across a sweep.

CIFAR's augmentation (pad-4 crop and flip) gives each training image only 162 distinct
views, so the teacher's logits for a view can be computed once, stored beside the teacher
checkpoint and reused by every later run that trains on the same images with the same
teacher, normalisation, precision and device kind. The stored logits are the teacher's own
output values for that exact input (no interpolation, no stale epochs), so training on them
is the same computation as running the teacher online. It applies to logit distillation
(`kdlab distill loss=kd`, FitNets stage two); FitNets stage one needs features and always
runs the teacher.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import torch

from kdlab.data.batch_loader import BatchLoader
from kdlab.data.device_loader import DeviceLoader
from kdlab.execution import autocast
from kdlab.logit_cache.loader import CachedLogitLoader
from kdlab.logit_cache.store import FORMAT, LogitStore, dtype_name
from kdlab.objectives import FrozenTeacher

log = logging.getLogger("kdlab")

__all__ = ["CachedLogitLoader", "LogitStore", "cached_logit_loader"]


def cached_logit_loader(
    train: BatchLoader,
    teacher: FrozenTeacher,
    teacher_path: Path,
    *,
    cache_dir: str | None,
    num_classes: int,
    precision: str,
) -> CachedLogitLoader | None:
    """The training loader with the teacher's logits from the store beside `teacher_path`
    (or under `cache_dir`); None, with the reason logged, where the cache cannot serve."""
    if not isinstance(train, DeviceLoader):
        log.info(
            "teacher logits: computed every step (the logit cache needs the training images "
            "in memory; raise data.in_memory_max_mb if they fit)"
        )
        return None
    root = Path(cache_dir) if cache_dir else teacher_path.with_name(f"{teacher_path.stem}.logits")
    try:
        dtype = logits_dtype(teacher, train, precision)
        meta = store_meta(teacher_path, train, num_classes, precision, dtype)
        rows = train.images.shape[0] * meta["views"]
        store = LogitStore.open(root, meta, rows, num_classes, dtype)
    except (OSError, ValueError, TypeError) as error:
        log.warning("teacher logits: computed every step, the cache is unusable (%s)", error)
        return None
    log.info(
        "teacher logits: cached in %s (%d views per image, %.1f%% stored)",
        store.directory,
        meta["views"],
        100.0 * float(store.filled.mean()),
    )
    return CachedLogitLoader(train, store, teacher, precision)


def logits_dtype(teacher: FrozenTeacher, train: DeviceLoader, precision: str) -> torch.dtype:
    """The dtype the teacher's logits have in this precision (one image's forward pass)."""
    with autocast(train.device, precision):
        return teacher.logits(train.normalize(train.images[:1])).dtype


def store_meta(
    teacher_path: Path,
    train: DeviceLoader,
    num_classes: int,
    precision: str,
    dtype: torch.dtype,
) -> dict[str, Any]:
    """Everything the stored logits depend on; its hash names the store."""
    plan = train.epoch_plan()
    return {
        "format": FORMAT,
        "teacher_sha256": file_sha256(teacher_path),
        "images_sha256": tensor_sha256(train.images),
        "images": list(train.images.shape),
        "normalize_scale": train.normalize.scale.flatten().tolist(),
        "normalize_shift": train.normalize.shift.flatten().tolist(),
        "channels_last": train.normalize.memory_format == torch.channels_last,
        "pad": plan.pad if plan.views is not None else None,
        "views": plan.num_views,
        "num_classes": num_classes,
        "precision": precision,
        "dtype": dtype_name(dtype),
        "device": device_kind(train.device),
        "torch": torch.__version__,
    }


def device_kind(device: torch.device) -> str:
    """Kernels (and so the last bits of a result) differ between GPU models and CPU ISAs."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    if device.type == "cpu":
        return f"cpu:{torch.backends.cpu.get_cpu_capability()}"
    return device.type


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tensor_sha256(tensor: torch.Tensor) -> str:
    array = tensor.detach().cpu().contiguous().numpy()
    return hashlib.sha256(memoryview(array).cast("B")).hexdigest()
